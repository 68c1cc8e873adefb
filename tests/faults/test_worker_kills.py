"""kill -9 of workers mid-job: the job is claimed again, resumes from its checkpoint, and
ends exactly once."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest

from tests.apiclient import ARTIFACT_NAMES, job_body
from tests.e2e.conftest import wait_for
from tests.faults.conftest import KILLABLE_TRAINING, job_worker

pytestmark = pytest.mark.faults


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


def _events(client, jid: str) -> list[dict]:
    return client.get(f"/v1/jobs/{jid}/events", params={"limit": 1000}).json()["data"]


def test_kill_during_distillation_resumes_from_checkpoint_on_another_worker(
    client, model_id, dataset_id, workers
):
    from app.storage import get_storage

    workers.start("a", "b")
    jid = client.post(
        "/v1/jobs", json=job_body(model_id, dataset_id, training=KILLABLE_TRAINING)
    ).json()["id"]

    def distilling_checkpoint() -> dict | None:
        return next(
            (
                e["data"]
                for e in _events(client, jid)
                if e["type"] == "checkpoint" and e["data"]["stage"] == "distilling"
            ),
            None,
        )

    saved = wait_for(distilling_checkpoint, 180, "a checkpoint in distillation")
    victim = job_worker(client, jid)
    workers.kill(victim)
    job = _terminal(client, jid)
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 2
    survivor = job_worker(client, jid)
    assert survivor != victim
    arts = client.get(f"/v1/jobs/{jid}/artifacts").json()["data"]
    assert sorted(a["name"] for a in arts) == ARTIFACT_NAMES  # one set
    # One set of objects, and no checkpoint left behind.
    keys = get_storage().list(f"jobs/{jid}/")
    assert keys and all(k.startswith(f"jobs/{jid}/2/") for k in keys), keys
    events = _events(client, jid)
    statuses = [
        (e["attempt"], e["data"]["status"], e["data"].get("reason"))
        for e in events
        if e["type"] == "status"
    ]
    assert statuses == [
        (0, "queued", None),
        (1, "running", None),
        (1, "queued", "worker_lost"),
        (2, "running", None),
        (2, "succeeded", None),
    ]
    # Attempt 2 went on from a checkpoint of attempt 1's distillation: it did not
    # fine-tune the teacher again, and its progress did not start again from zero.
    second = [e for e in events if e["attempt"] == 2]
    resumed = [e for e in second if "resumes from the checkpoint" in e["data"].get("message", "")]
    assert resumed, [e["data"] for e in second if e["type"] == "log"]
    checkpoint = resumed[0]["data"]["data"]["checkpoint"]
    assert checkpoint["attempt"] == 1 and checkpoint["stage"] == "distilling"
    assert checkpoint["step"] >= saved["step"]
    assert "teacher_finetune" not in [e["data"]["phase"] for e in second if e["type"] == "phase"]
    progress = [e["data"]["progress"] for e in second if e["type"] == "progress"]
    assert progress and min(progress) >= checkpoint["progress"] - 1e-3


def test_kill_during_artifact_upload_leaves_one_set(client, model_id, dataset_id, workers):
    from app.storage import get_storage
    from tests import services
    from tests.faults.proxy import Proxy

    s3 = urlparse(services.S3_ENDPOINT)
    proxy = Proxy((s3.hostname, s3.port)).start()
    rate = 10_000  # bytes/s once the upload starts: seconds for even a tiny model
    try:
        slow = {**workers.env, "MODELPRESS_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
        fast = workers.env
        workers.env = slow
        workers.start("a")
        workers.env = fast
        training = {**KILLABLE_TRAINING, "epochs": 2}
        jid = client.post(
            "/v1/jobs", json=job_body(model_id, dataset_id, training=training)
        ).json()["id"]
        # Slow from attempt 1's first artifact request on: waiting for the "exporting"
        # phase and then throttling raced a fast machine's whole upload.
        proxy.throttle_on(f"/jobs/{jid}/1/".encode(), rate)
        # The worker that takes the job over boots while "a" works: once "a" holds the
        # job, "b" finds nothing to take until the lease runs out.
        wait_for(lambda: _phase(client, jid)[0::2] == ("running", 1), 120, "a to claim the job")
        workers.launch("b")

        def uploading() -> bool:
            return any(
                e["data"].get("data", {}).get("stage") == "uploading"
                for e in _events(client, jid)
                if e["type"] == "log"
            )

        wait_for(uploading, 120, "the upload to start", interval=0.2)
        time.sleep(1.0)
        assert _phase(client, jid)[0::2] == ("running", 1)  # still uploading
        workers.kill("a")
        workers.ready("b")
        job = _terminal(client, jid)
    finally:
        proxy.cut()
    assert job["status"] == "succeeded", job
    assert job["attempt"] == 2
    arts = client.get(f"/v1/jobs/{jid}/artifacts").json()["data"]
    assert sorted(a["name"] for a in arts) == ARTIFACT_NAMES
    # The kill really fell inside the upload: the model alone takes longer than 1 s.
    model = next(a for a in arts if a["name"] == "model")
    assert model["size_bytes"] / rate > 3

    # The killed worker's request was in flight (the proxy still held it): it may land
    # after attempt 2 cleaned up; the reaper's sweep removes it.
    def one_set() -> bool:
        keys = get_storage().list(f"jobs/{jid}/")
        return bool(keys) and all(k.startswith(f"jobs/{jid}/2/") for k in keys)

    wait_for(one_set, 60, "attempt 1's objects to be gone")


def test_killed_past_max_attempts_fails_with_its_reason(client, model_id, dataset_id, workers):
    # Two workers: the other one takes the job back while the killed one restarts (as a
    # supervisor would restart it), so no attempt waits for a worker's start-up.
    workers.start("a", "b")
    jid = client.post(
        "/v1/jobs", json=job_body(model_id, dataset_id, training=KILLABLE_TRAINING)
    ).json()["id"]
    for attempt in (1, 2, 3):
        _wait_distilling(client, jid, attempt)
        victim = job_worker(client, jid)
        workers.kill(victim)
        workers.launch(victim)
    job = _terminal(client, jid, timeout=60)
    assert job["status"] == "failed" and job["attempt"] == 3
    assert job["error"]["code"] == "max_attempts_exceeded"
    assert "3 times" in job["error"]["message"]
    assert client.get(f"/v1/jobs/{jid}/artifacts").json()["data"] == []
    from app.storage import get_storage

    assert get_storage().list(f"jobs/{jid}/") == []
