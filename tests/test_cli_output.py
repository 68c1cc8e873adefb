"""What a newcomer's commands print: `keys create` one line, `modelpress serve` a last
start-up line with the URL and the next step and no ERROR on Ctrl-C, `serve.sh` pip's
output in a file. Real processes in a fresh MODELPRESS_HOME (embedded mode)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _embedded_env(home: Path) -> dict[str, str]:
    # No MODELPRESS_* from the test session: embedded mode, as on a fresh clone.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPRESS_")}
    env.update(MODELPRESS_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(home: Path, port: int, log: Path, **settings: str) -> subprocess.Popen:
    """`modelpress serve` in its own process group (as a terminal's job), its output
    appended to ``log``; returns once it has said it is ready."""
    env = {**_embedded_env(home), **{f"MODELPRESS_{k.upper()}": v for k, v in settings.items()}}
    start = len(log.read_text(errors="replace")) if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while f"modelpress is ready at http://127.0.0.1:{port}" not in log.read_text()[start:]:
        if proc.poll() is not None or time.monotonic() > deadline:
            _kill(proc, log.read_text(errors="replace"))
            raise AssertionError(log.read_text(errors="replace"))
        time.sleep(0.2)
    return proc


def _kill(proc: subprocess.Popen, text: str) -> None:
    """The serve process and its workers (which run in sessions of their own), if any
    is left: for a test that failed half-way."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pids in re.findall(r"worker pids (\d+), (\d+)", text):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(pid), signal.SIGKILL)


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if "ERROR" in line or "Traceback" in line]


def test_keys_create_prints_exactly_the_key_line(tmp_path):
    env = _embedded_env(tmp_path / "home")
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "create", "--tenant", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr  # no alembic INFO lines: the migrations ran silently
    lines = r.stdout.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("created key_") and "tenant demo, scope write" in lines[0]
    assert lines[0].split()[-1].startswith("mp_")
    # The migrations did run (embedded mode): a second key finds the schema there.
    again = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and again.stderr == ""
    assert again.stdout.count("demo") == 1


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


def test_serve_sh_keeps_pip_quiet_and_points_to_its_log(tmp_path):
    """pip fails at once here (a wheel path that does not exist: no download): its
    output is in the log file, the terminal shows one line per step, the end of the log
    and where the log is."""
    venv = tmp_path / "venv"
    env = {
        **_embedded_env(tmp_path / "home"),
        "MODELPRESS_VENV": str(venv),
        "MODELPRESS_TORCH_SPEC": str(tmp_path / "no-such-torch.whl"),
    }
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "serve.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = venv / "pip-install.log"
    assert r.returncode != 0
    assert log.is_file() and "no-such-torch.whl" in log.read_text()
    assert f"pip failed installing {tmp_path / 'no-such-torch.whl'}; its whole log: {log}" in (
        r.stderr
    )
    assert "[venv]   pip install" in r.stderr
    assert r.stdout == ""
    assert not list(venv.glob(".modelpress-installed-*"))  # no stamp: the next run retries
