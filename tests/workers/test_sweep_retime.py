"""A sweep's answer step where its pass over the candidates cannot be made: the
candidates' own readings stand and the report and the sweep's events say why (real
PostgreSQL and S3; the pass itself runs in tests/faults/test_sweep_workers.py and
tests/engine/test_retime.py)."""

from __future__ import annotations

from pathlib import Path

from app.sweeps.policy import CandidateResult
from app.sweeps.state import SweepPlan
from tests.apiclient import job_body
from tests.lifecycle import finished_job

RESULT = CandidateResult(0, 1.5, 1.42, 0.991, 0.8, 10.0, 1_000)


def _retime(client, model_id, dataset_id, tmp_path: Path, *, runtime: str, results):
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.settings import get_settings
    from app.storage import get_storage
    from workers.callback import JobCallback
    from workers.sweep_retime import retimed_results

    # A candidate that succeeded with "model" and "report" artifacts (random bytes).
    kid = finished_job(client, model_id, dataset_id, tmp_path)
    parent = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    with session_scope() as s:
        attempt = jobs.claim(session=s, job_id=parent, worker="w", lease_seconds=60)
    plan = SweepPlan("min_retention", 0.99, runtime, 1, 1.3, 4.0, 1, 2, None)
    out, timing = retimed_results(
        parent_id=parent,
        attempt=attempt,
        plan=plan,
        results=results,
        kids={0: kid},
        storage=get_storage(),
        settings=get_settings(),
        workdir=tmp_path / "work",
        callback=JobCallback(parent, attempt),
    )
    events = client.get(f"/v1/jobs/{parent}/events", params={"limit": 100}).json()["data"]
    warnings = [e["data"]["message"] for e in events if e["type"] == "warning"]
    return out, timing, warnings


def test_without_the_runtimes_artifact_the_own_readings_stand(
    client, model_id, dataset_id, tmp_path
):
    out, timing, warnings = _retime(
        client, model_id, dataset_id, tmp_path, runtime="onnxruntime-int8", results=[RESULT]
    )
    assert out == [RESULT] and timing.retimed is False
    assert "'model-onnx-int8'" in timing.reason and "export.formats" in timing.reason
    assert timing.to_json() == {"retimed": False, "reason": timing.reason}
    assert len(warnings) == 1 and timing.reason in warnings[0]


def test_a_pass_that_fails_leaves_the_own_readings(client, model_id, dataset_id, tmp_path):
    # The model artifact is random bytes, which no archive reader takes.
    out, timing, warnings = _retime(
        client, model_id, dataset_id, tmp_path, runtime="pytorch", results=[RESULT]
    )
    assert out == [RESULT] and timing.retimed is False
    assert timing.reason.startswith("the pass failed (") and len(warnings) == 1
    # It got as far as the candidate's archive: the inputs were fetched.
    assert "neither a .tar.gz nor a .zip" in timing.reason


def test_nothing_is_timed_when_no_candidate_succeeded(client, model_id, dataset_id, tmp_path):
    failed = CandidateResult(0, 1.5, None, None, None, None, None, ok=False)
    out, timing, warnings = _retime(
        client, model_id, dataset_id, tmp_path, runtime="pytorch", results=[failed]
    )
    assert out == [failed] and timing.reason == "no candidate succeeded" and not warnings
