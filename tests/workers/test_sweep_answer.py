"""A sweep's answer step on the worker (workers/sweep_answer.py) against the real
database and S3: the pick's artifacts become the sweep's, with the sweep's report and
plot; with export.keep_candidates the other candidates' become the sweep's too, under
``candidate-<index>-<name>``, byte for byte. The children's ends are written as their
worker writes them; no engine trains here (the artifacts are not models, so the pass
that times the candidates again falls back to their own readings, which it says)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.apiclient import job_body
from tests.app.sweeps.test_service import _advance, _begin, _plan, child_metrics
from tests.lifecycle import artifact_row


@pytest.fixture
def settings():
    from app.settings import get_settings

    return get_settings().model_copy(update={"requeue_after_seconds": 60})


def _sweep(client, model_id, dataset_id, *, keep: bool) -> str:
    body = job_body(model_id, dataset_id, target={"min_retention": 0.98})
    body["export"] = {"formats": ["safetensors"], **({"keep_candidates": True} if keep else {})}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _succeed(child_id: str, retention: float, tmp_path: Path) -> dict[str, bytes]:
    """The child claimed and succeeded with a model and a report in the store."""
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.tables import Job
    from app.sweeps.state import ChildPlace
    from workers.runner import attempt_prefix

    with session_scope() as s:
        attempt = jobs.claim(session=s, job_id=child_id, worker="w1", lease_seconds=60)
        speedup = ChildPlace.of(s.get(Job, child_id).sweep).speedup
    metrics = child_metrics(speedup, retention)
    contents = {
        "model": os.urandom(5_000),
        "report": json.dumps({"metrics": metrics, "child": child_id}).encode(),
    }
    prefix = attempt_prefix(child_id, attempt)
    artifacts = [
        artifact_row("model", "model.tar.gz", f"{prefix}model.tar.gz", contents["model"], tmp_path),
        artifact_row("report", "report.json", f"{prefix}report.json", contents["report"], tmp_path),
    ]
    with session_scope() as s:
        jobs.finish(
            session=s,
            job_id=child_id,
            attempt=attempt,
            status="succeeded",
            metrics=metrics,
            artifacts=artifacts,
        )
    return contents


def _answered(client, parent: str, settings, tmp_path: Path) -> tuple[dict, dict, dict]:
    """Both candidates succeed (the faster keeps less than the floor), then the answer
    runs; returns the sweep's row, its artifacts by name and each child's contents."""
    from app.storage import get_storage
    from workers import sweep_answer

    kids = [cid for cid, _ in _begin(parent, _plan(value=0.98, candidates=2))]
    contents = {cid: _succeed(cid, 0.99 - 0.02 * i, tmp_path) for i, cid in enumerate(kids)}
    step = _advance(parent, settings)
    assert step.answer is not None and len(step.answer) == 2
    status = sweep_answer.answer(
        parent_id=parent, step=step, settings=settings, storage=get_storage()
    )
    assert status == "succeeded"
    job = client.get(f"/v1/jobs/{parent}").json()
    arts = {a["name"]: a for a in client.get(f"/v1/jobs/{parent}/artifacts").json()["data"]}
    return job, arts, contents


def _download(client, parent: str, name: str) -> bytes:
    r = client.get(f"/v1/jobs/{parent}/artifacts/{name}", follow_redirects=True)
    assert r.status_code == 200, r.text
    return r.content


def test_the_pick_becomes_the_sweeps_model(client, model_id, dataset_id, settings, tmp_path):
    parent = _sweep(client, model_id, dataset_id, keep=False)
    job, arts, contents = _answered(client, parent, settings, tmp_path)
    sweep = job["metrics"]["sweep"]
    picked = sweep["candidates"][sweep["pick"]]
    assert picked["retention"] >= 0.98 and sweep["met"] is True
    assert set(arts) == {"model", "report", "sweep-plot"}
    assert _download(client, parent, "model") == contents[picked["job_id"]]["model"]
    report = json.loads(_download(client, parent, "report"))
    assert report["child"] == picked["job_id"] and report["metrics"]["sweep"] == sweep
    assert picked["artifacts"] == ["model", "report"]
    other = sweep["candidates"][1 - sweep["pick"]]
    assert other["artifacts"] == []
    # The candidates' own readings stand, and the report says why they were not re-timed.
    assert sweep["timing"]["retimed"] is False
    assert "neither a .tar.gz nor a .zip" in sweep["timing"]["reason"]


def test_kept_candidates_become_the_sweeps_own_artifacts(
    client,
    model_id,
    dataset_id,
    settings,
    tmp_path,
):
    parent = _sweep(client, model_id, dataset_id, keep=True)
    job, arts, contents = _answered(client, parent, settings, tmp_path)
    sweep = job["metrics"]["sweep"]
    other = sweep["candidates"][1 - sweep["pick"]]
    i = other["index"]
    assert other["artifacts"] == [f"candidate-{i}-model", f"candidate-{i}-report"]
    assert set(arts) == {"model", "report", "sweep-plot", *other["artifacts"]}
    assert arts[f"candidate-{i}-model"]["filename"] == f"candidate-{i}-model.tar.gz"
    own = contents[other["job_id"]]
    assert _download(client, parent, f"candidate-{i}-model") == own["model"]
    # A kept candidate's report is its own, unchanged.
    assert _download(client, parent, f"candidate-{i}-report") == own["report"]
    assert arts[f"candidate-{i}-model"]["size_bytes"] == len(own["model"])
    # The candidates' own requests do not carry the sweep's choice.
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:
        assert s.get(Job, parent).request["export"]["keep_candidates"] is True
        assert "keep_candidates" not in s.get(Job, other["job_id"]).request["export"]


def test_keep_candidates_is_refused_without_a_sweep(client, model_id, dataset_id):
    body = job_body(model_id, dataset_id)
    body["export"] = {"formats": ["safetensors"], "keep_candidates": True}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert "export.keep_candidates applies only to a sweep" in problem["detail"]
