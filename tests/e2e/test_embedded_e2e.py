"""`modelpress serve` with no configuration: SQLite, a filesystem broker, local files and
a real worker process started by the same command."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Proc, free_port, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Proc:
    home = tmp_path_factory.mktemp("embedded-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPRESS_")}
    env["MODELPRESS_HOME"] = str(home)
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env,
        home.parent / "serve.log",
    )
    proc.base = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    proc.home = home  # type: ignore[attr-defined]

    def ready() -> bool:
        assert proc.p.poll() is None, proc.text()
        try:
            return httpx.get(f"{proc.base}/readyz", timeout=2).status_code == 200  # type: ignore[attr-defined]
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, 90, "embedded service")
        wait_for(lambda: "ready." in proc.text(), 60, "embedded worker")
        # Auth is on in embedded mode too: the first key comes from the CLI.
        out = subprocess.run(
            [sys.executable, "-m", "app.cli", "keys", "create", "--tenant", "demo"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        proc.key = out.split()[-1]  # type: ignore[attr-defined]
        yield proc
    finally:
        proc.stop()


def test_embedded_job_end_to_end(
    embedded, tiny_teacher_tar: Path, tiny_dataset: Path, tmp_path: Path
):
    base = embedded.base
    with httpx.Client(
        base_url=base, timeout=30, headers={"Authorization": f"Bearer {embedded.key}"}
    ) as http:
        assert httpx.get(f"{base}/v1/jobs").status_code == 401
        with open(tiny_teacher_tar, "rb") as f:
            model = http.post("/v1/models", files={"file": ("tiny.tar.gz", f)}).json()
        with open(tiny_dataset, "rb") as f:
            ds = http.post(
                "/v1/datasets", files={"file": ("tiny.jsonl", f)}, data={"format": "jsonl"}
            ).json()
        r = http.post(
            "/v1/jobs",
            json={
                "task": "sequence-classification",
                "teacher": {"model_id": model["id"]},
                "dataset": {"dataset_id": ds["id"]},
                "target": {"params_ratio": 0.5},
                "training": {
                    "epochs": 1,
                    "teacher_epochs": 2,
                    "batch_size": 16,
                    "max_seq_length": 32,
                },
            },
        )
        assert r.status_code == 202, r.text
        jid = r.json()["id"]

        def finished():
            job = http.get(f"/v1/jobs/{jid}").json()
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        job = wait_for(finished, 300, "embedded job")
        assert job["status"] == "succeeded", (job, embedded.text()[-3000:])
        content = http.get(f"/v1/jobs/{jid}/artifacts/model").content

    home: Path = embedded.home
    assert (home / "modelpress.db").is_file()  # SQLite
    assert (home / "broker" / "queue").is_dir()  # the filesystem broker
    assert list((home / "artifacts" / "jobs" / jid).rglob("model.tar.gz"))  # local files

    out = tmp_path / "student"
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tf:
        tf.extractall(out, filter="data")
    from transformers import AutoModelForSequenceClassification

    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == job["metrics"]["student"]["num_layers"]


def test_sigterm_stops_the_worker_too(embedded):
    import re
    import signal

    # serve logs "worker pids <jobs>, <webhooks>"; both must go.
    match = re.search(r"worker pids (\d+), (\d+)", embedded.text())
    assert match, embedded.text()[-2000:]
    os.kill(embedded.p.pid, signal.SIGTERM)  # the serve process only, as systemd would
    embedded.p.wait(timeout=60)

    def worker_gone(worker_pid: int) -> bool:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return True
        # a zombie has exited; only its parent's wait is missing
        with open(f"/proc/{worker_pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"

    for pid in match.groups():
        wait_for(lambda pid=int(pid): worker_gone(pid), 60, f"worker {pid} to exit")
