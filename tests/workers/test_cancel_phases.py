"""A cancel that arrives in any phase, or during the upload, ends the job cancelled, with
no artifacts and no objects left behind."""

from __future__ import annotations

import pytest

from tests.apiclient import job_body

TRAINING = {"epochs": 2, "teacher_epochs": 2, "batch_size": 16, "max_seq_length": 32}
PHASES = ["preparing", "teacher_finetune", "pruning", "distilling", "evaluating", "exporting"]


@pytest.mark.parametrize("moment", [*PHASES, "uploading"])
def test_cancel_at_every_moment(client, model_id, dataset_id, monkeypatch, moment):
    from app.storage import get_storage
    from workers import callback as callback_module
    from workers import runner

    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id, training=TRAINING)).json()[
        "id"
    ]

    def cancel() -> None:
        r = client.post(f"/v1/jobs/{jid}/cancel")
        assert r.json()["status"] == "cancelling"

    if moment == "uploading":
        real_upload = runner._upload
        calls = []

        def upload_then_cancel(**kwargs):
            record = real_upload(**kwargs)
            calls.append(record)
            if len(calls) == 1:
                cancel()  # after the first artifact is in the store
            return record

        monkeypatch.setattr(runner, "_upload", upload_then_cancel)
    else:
        real_on_phase = callback_module.JobCallback.on_phase

        def on_phase(self, phase: str) -> None:
            real_on_phase(self, phase)
            if phase == moment:
                cancel()

        monkeypatch.setattr(callback_module.JobCallback, "on_phase", on_phase)

    assert runner.run_job(job_id=jid, worker="w") == "cancelled"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["status"] == "cancelled" and job["finished_at"]
    assert client.get(f"/v1/jobs/{jid}/artifacts").json()["data"] == []
    assert get_storage().list(f"jobs/{jid}/") == []
    statuses = [
        e["data"]["status"]
        for e in client.get(f"/v1/jobs/{jid}/events").json()["data"]
        if e["type"] == "status"
    ]
    assert statuses == ["queued", "running", "cancelling", "cancelled"]
