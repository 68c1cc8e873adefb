"""`modelpress serve`: a last start-up line with the URL and the next step, no ERROR on
Ctrl-C, and a job that Ctrl-C stops resumes at the next start. Real processes in a fresh
MODELPRESS_HOME (embedded mode); timed, so in a timing lane (tests/conftest.py)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.test_cli_output import ROOT, _embedded_env, _errors, _free_port, _kill, _serve


@pytest.mark.e2e
@pytest.mark.timing
def test_serve_says_where_and_what_next_and_ctrl_c_logs_no_error(tmp_path):
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _serve(tmp_path / "home", port, log)
    try:
        text = log.read_text(errors="replace")
        worker_pids = [int(p) for p in re.findall(r"worker pids (\d+), (\d+)", text)[0]]
        last = text.strip().splitlines()[-1]
        assert f"modelpress is ready at http://127.0.0.1:{port}" in last, text
        assert "modelpress keys create --tenant NAME" in last
        assert "SecurityWarning" not in text and "superuser privileges" not in text
        assert "No hostname was supplied" not in text and "alembic.runtime.plugins" not in text

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        code = proc.wait(timeout=40)
    finally:
        _kill(proc, log.read_text(errors="replace"))
    text = log.read_text(errors="replace")
    assert code in (0, 130), text
    assert "Warm shutdown" in text and "still running a job" not in text
    assert _errors(text) == [], text
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.e2e
@pytest.mark.timing
def test_ctrl_c_during_a_job_logs_no_error_and_the_job_resumes(
    tmp_path, tiny_teacher_tar, tiny_dataset
):
    """A worker busy with a job does not hold Ctrl-C up: after the grace period (10 s by
    default, 2 s here) it is stopped (cold shutdown), without an ERROR line; the next
    start claims the job again."""
    import httpx

    home, port, log = tmp_path / "home", _free_port(), tmp_path / "serve.log"
    fast = {"lease_seconds": "4", "reaper_interval_seconds": "1", "shutdown_grace_seconds": "2"}
    base = f"http://127.0.0.1:{port}"
    proc = _serve(home, port, log, **fast)
    try:
        key = subprocess.run(
            [sys.executable, "-m", "app.cli", "keys", "create", "--tenant", "t"],
            cwd=ROOT,
            env=_embedded_env(home),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        with open(tiny_teacher_tar, "rb") as f:
            model = http.post("/v1/models", files={"file": ("t.tar.gz", f)}).json()
        with open(tiny_dataset, "rb") as f:
            data = http.post("/v1/datasets", files={"file": ("d.jsonl", f)}).json()
        job = http.post(
            "/v1/jobs",
            json={
                "task": "sequence-classification",
                "teacher": {"model_id": model["id"]},
                "dataset": {"dataset_id": data["id"]},
                "target": {"params_ratio": 0.5},
                # Long enough to be running whatever the machine's load.
                "training": {"epochs": 100, "teacher_epochs": 1, "checkpoint_every_steps": 5},
            },
        ).json()
        deadline = time.monotonic() + 120
        while http.get(f"/v1/jobs/{job['id']}").json()["phase"] != "distilling":
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)

        os.killpg(proc.pid, signal.SIGINT)
        started = time.monotonic()
        assert proc.wait(timeout=60) in (0, 130)
        took = time.monotonic() - started
        text = log.read_text(errors="replace")
        assert "still running a job" in text, text
        assert _errors(text) == [], text
        assert took < 20, took  # 2 s of grace, then cold shutdown; SIGKILL after 5 s more

        # The next start: the lease runs out, the reaper queues the job, a worker claims it.
        proc = _serve(home, port, log, **fast)
        deadline = time.monotonic() + 120
        while (now := http.get(f"/v1/jobs/{job['id']}").json())["attempt"] < 2:
            assert time.monotonic() < deadline, now
            time.sleep(0.5)
        assert http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
        deadline = time.monotonic() + 120
        while http.get(f"/v1/jobs/{job['id']}").json()["status"] != "cancelled":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) in (0, 130)
    finally:
        _kill(proc, log.read_text(errors="replace"))
    assert _errors(log.read_text(errors="replace")) == []
