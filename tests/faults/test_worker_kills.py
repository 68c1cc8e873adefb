"""kill -9 of workers mid-job: the job is claimed again and ends exactly once."""

from __future__ import annotations

import pytest

from tests.apiclient import job_body
from tests.e2e.conftest import wait_for
from tests.faults.conftest import job_worker

pytestmark = pytest.mark.faults

# Long enough to be killed in the middle of distillation on a tiny model.
TRAINING = {"epochs": 20, "teacher_epochs": 2, "batch_size": 16, "max_seq_length": 32}


def _phase(client, jid: str) -> tuple[str, str | None, int]:
    job = client.get(f"/v1/jobs/{jid}").json()
    return job["status"], job["phase"], job["attempt"]


def _terminal(client, jid: str, timeout: float = 240) -> dict:
    def done():
        job = client.get(f"/v1/jobs/{jid}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(done, timeout, f"job {jid} to end")


def _wait_distilling(client, jid: str, attempt: int) -> None:
    wait_for(
        lambda: _phase(client, jid) == ("running", "distilling", attempt),
        120,
        f"attempt {attempt} distilling",
    )


def test_kill_during_distillation_then_another_worker_finishes(
    client, model_id, dataset_id, workers
):
    from app.storage import get_storage

    workers.start("a")
    workers.start("b")
    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id, training=TRAINING)).json()[
        "id"
    ]
    _wait_distilling(client, jid, 1)
    victim = job_worker(client, jid)
    workers.kill(victim)
    job = _terminal(client, jid)
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 2
    survivor = job_worker(client, jid)
    assert survivor != victim
    arts = client.get(f"/v1/jobs/{jid}/artifacts").json()["data"]
    assert sorted(a["name"] for a in arts) == ["model", "model-card", "report"]  # one set
    keys = get_storage().list(f"jobs/{jid}/")
    assert keys and all(k.startswith(f"jobs/{jid}/2/") for k in keys)
    statuses = [
        (e["attempt"], e["data"]["status"], e["data"].get("reason"))
        for e in client.get(f"/v1/jobs/{jid}/events", params={"limit": 1000}).json()["data"]
        if e["type"] == "status"
    ]
    assert statuses == [
        (0, "queued", None),
        (1, "running", None),
        (1, "queued", "worker_lost"),
        (2, "running", None),
        (2, "succeeded", None),
    ]


def test_killed_past_max_attempts_fails_with_its_reason(client, model_id, dataset_id, workers):
    workers.start("a")
    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id, training=TRAINING)).json()[
        "id"
    ]
    for attempt in (1, 2, 3):
        _wait_distilling(client, jid, attempt)
        workers.kill("a")
        workers.start("a")  # a supervisor would restart it
    job = _terminal(client, jid, timeout=60)
    assert job["status"] == "failed" and job["attempt"] == 3
    assert job["error"]["code"] == "max_attempts_exceeded"
    assert "3 times" in job["error"]["message"]
    assert client.get(f"/v1/jobs/{jid}/artifacts").json()["data"] == []
    from app.storage import get_storage

    assert get_storage().list(f"jobs/{jid}/") == []
