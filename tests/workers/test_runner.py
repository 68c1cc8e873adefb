"""The job runner against the real database and S3, without a broker."""

from __future__ import annotations

import io
import tarfile

from sqlalchemy import select

from tests.apiclient import job_body
from tests.workers.test_inputs import unpacked_modes

TINY_TRAINING = {"epochs": 1, "teacher_epochs": 1, "batch_size": 16, "max_seq_length": 32}


def _events(client, jid):
    return client.get(f"/v1/jobs/{jid}/events").json()["data"]


def test_run_once_then_duplicate_delivery_does_nothing(client, model_id, dataset_id, tmp_path):
    from workers.runner import run_job

    jid = client.post(
        "/v1/jobs", json=job_body(model_id, dataset_id, training=TINY_TRAINING)
    ).json()["id"]
    assert run_job(job_id=jid, worker="w1") == "succeeded"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["attempt"] == 1
    assert job["metrics"]["student"]["num_parameters"] < job["metrics"]["teacher"]["num_parameters"]
    arts = client.get(f"/v1/jobs/{jid}/artifacts").json()["data"]
    assert {a["name"] for a in arts} >= {"model", "report", "model-card"}
    n_events = len(_events(client, jid))

    # At-least-once delivery: the same id again claims nothing and changes nothing.
    assert run_job(job_id=jid, worker="w2") == "skipped"
    assert client.get(f"/v1/jobs/{jid}").json() == job
    assert client.get(f"/v1/jobs/{jid}/artifacts").json()["data"] == arts
    assert len(_events(client, jid)) == n_events

    phases = [e["data"]["phase"] for e in _events(client, jid) if e["type"] == "phase"]
    assert phases[0] == "preparing" and phases[-1] == "exporting"
    statuses = [e["data"]["status"] for e in _events(client, jid) if e["type"] == "status"]
    assert statuses == ["queued", "running", "succeeded"]

    model = client.get(f"/v1/jobs/{jid}/artifacts/model")
    assert model.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(model.content), mode="r:gz") as tf:
        names = set(tf.getnames())
    assert {"config.json", "model.safetensors"} <= names
    _unpacks_whole(model.content, tmp_path)


def _unpacks_whole(archive: bytes, tmp_path) -> None:
    """As a user unpacks the student: ordinary permissions, its card inside with the plots
    it shows, and every link of the card pointing at a file in the archive."""
    import re
    import stat

    (tmp_path / "m.tar.gz").write_bytes(archive)
    modes = unpacked_modes(tmp_path / "m.tar.gz", tmp_path / "student")
    files = {n: m for n, m in modes.items() if (tmp_path / "student" / n).is_file()}
    assert files["model.safetensors"] == 0o644, oct(files["model.safetensors"])
    assert set(files.values()) == {0o644}, {n: oct(m) for n, m in files.items()}
    assert {m for n, m in modes.items() if n not in files} <= {0o755}
    assert "README.md" in files and len([n for n in files if n.endswith(".png")]) == 2
    card = (tmp_path / "student" / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", card)
    assert links, card
    for link in links:
        target = tmp_path / "student" / link
        assert target.is_file() and stat.S_ISREG(target.stat().st_mode), link


def test_broken_teacher_fails_with_an_actionable_message(
    client, tmp_path, tiny_teacher_dir, dataset_id
):
    import json

    from tests.apiclient import upload_model
    from tests.conftest import pack_tar
    from workers.runner import run_job

    # config.json that does not describe the weights: the API cannot tell without torch
    folder = tmp_path / "broken"
    folder.mkdir()
    for p in tiny_teacher_dir.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 3 * config["intermediate_size"]
    (folder / "config.json").write_text(json.dumps(config))
    mid = upload_model(client, pack_tar(folder, tmp_path / "broken.tar.gz")).json()["id"]

    jid = client.post("/v1/jobs", json=job_body(mid, dataset_id, training=TINY_TRAINING)).json()[
        "id"
    ]
    assert run_job(job_id=jid, worker="w1") == "failed"
    job = client.get(f"/v1/jobs/{jid}").json()
    assert job["status"] == "failed" and job["finished_at"]
    assert job["error"]["code"] == "teacher_config_mismatch"
    assert "size" in job["error"]["message"] or "shape" in job["error"]["message"]
    assert client.get(f"/v1/jobs/{jid}/artifacts").json()["data"] == []
    from app.storage import get_storage

    assert get_storage().list(f"jobs/{jid}/") == []


def test_stale_attempt_cannot_write(client, model_id, dataset_id):
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.tables import Job

    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    with session_scope() as s:
        attempt = jobs.claim(session=s, job_id=jid, worker="w1", lease_seconds=60)
        assert attempt == 1
        assert jobs.claim(session=s, job_id=jid, worker="w2", lease_seconds=60) is None
        # pretend the job was handed to a second attempt
        s.execute(Job.__table__.update().where(Job.id == jid).values(attempt=2))
        s.commit()
        assert not jobs.set_progress(session=s, job_id=jid, attempt=1, progress=0.5)
        assert not jobs.finish(session=s, job_id=jid, attempt=1, status="succeeded")
        assert jobs.owner_state(session=s, job_id=jid, attempt=1) is None  # stale: must stop
        assert s.scalar(select(Job.status).where(Job.id == jid)) == "running"
        assert jobs.finish(
            session=s, job_id=jid, attempt=2, status="failed", error_code="x", error_message="y"
        )


def test_cancel_running_job_stops_it(client, model_id, dataset_id):
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.storage import get_storage
    from workers.callback import JobCallback

    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    with session_scope() as s:
        attempt = jobs.claim(session=s, job_id=jid, worker="w1", lease_seconds=60)
    cb = JobCallback(jid, attempt)
    assert cb.should_stop() is False
    r = client.post(f"/v1/jobs/{jid}/cancel")
    assert r.json()["status"] == "cancelling"
    cb._last_stop_check = 0.0
    assert cb.should_stop() is True
    with session_scope() as s:
        assert jobs.finish(session=s, job_id=jid, attempt=attempt, status="cancelled")
    assert client.get(f"/v1/jobs/{jid}").json()["status"] == "cancelled"
    assert get_storage().list(f"jobs/{jid}/") == []


def test_ffn_pruning_job(client, model_id, dataset_id):
    from workers.runner import run_job

    body = job_body(
        model_id, dataset_id, training=TINY_TRAINING, pruning={"structured": ["layers", "ffn"]}
    )
    jid = client.post("/v1/jobs", json=body).json()["id"]
    assert run_job(job_id=jid, worker="w1") == "succeeded"
    m = client.get(f"/v1/jobs/{jid}").json()["metrics"]
    assert m["student"]["intermediate_size"] < m["teacher"]["intermediate_size"]
    assert m["pruning_plan"]["importance"] == "taylor"
    assert 0.5 <= m["params_ratio_non_embedding"] < 0.6
