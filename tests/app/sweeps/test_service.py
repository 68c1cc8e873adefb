"""A sweep's rows against the real database (app/sweeps/service.py): the first round,
advances that wait, start the next round or hand over the answer, the time budget,
cancellation, the quota and the listing. The children's ends are written as a worker
writes them (claim, then finish with a report); no engine runs here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from tests.apiclient import job_body

TEACHER_MS = 20.0


@pytest.fixture
def settings():
    from app.settings import get_settings

    return get_settings().model_copy(update={"requeue_after_seconds": 60})


def _sweep(client, model_id, dataset_id, **target) -> str:
    body = job_body(model_id, dataset_id, target={"min_retention": 0.99, **target})
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _plan(**changes):
    from app.sweeps.state import SweepPlan

    fields = dict(
        kind="min_retention",
        value=0.99,
        runtime="pytorch",
        batch_size=1,
        lo=1.3,
        hi=5.2,
        parallel=2,
        candidates=6,
        max_seconds=None,
    )
    return SweepPlan(**{**fields, **changes})


def _begin(parent_id: str, plan) -> list[tuple[str, str]]:
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.sweeps import service as sweeps

    with session_scope() as s:
        attempt = jobs.claim(session=s, job_id=parent_id, worker="w0", lease_seconds=60)
        assert attempt == 1
    with session_scope() as s:
        return sweeps.begin(session=s, parent_id=parent_id, attempt=1, plan=plan).to_send


def child_metrics(speedup: float, retention: float | None) -> dict:
    """A child's report whose numbers follow its speed-up."""
    return {
        "main_metric": "accuracy",
        "retention": retention,
        "speedup_target": {"target": speedup, "measured": speedup, "met": True},
        "pruning_plan": {"speed_plan": {"target_speedup": speedup, "shape": {"num_layers": 3}}},
        "student": {
            "accuracy": 0.9 * (retention or 0),
            "latency_ms_cpu_bs1": TEACHER_MS / speedup,
            "size_bytes": int(1e6 / speedup),
        },
    }


def _end_child(child_id: str, retention: float | None) -> None:
    """Claim and finish a child as its worker would: succeeded with a report whose
    numbers follow its speed-up, or failed (retention None)."""
    from app.db import session_scope
    from app.jobs import service as jobs
    from app.jobs.tables import Job
    from app.sweeps.state import ChildPlace

    with session_scope() as s:
        attempt = jobs.claim(session=s, job_id=child_id, worker="w1", lease_seconds=60)
        speedup = ChildPlace.of(s.get(Job, child_id).sweep).speedup
    metrics = child_metrics(speedup, retention)
    with session_scope() as s:
        if retention is None:
            jobs.finish(
                session=s,
                job_id=child_id,
                attempt=attempt,
                status="failed",
                error_code="engine_error",
                error_message="boom",
            )
        else:
            jobs.finish(
                session=s, job_id=child_id, attempt=attempt, status="succeeded", metrics=metrics
            )


def _advance(parent_id: str, settings):
    from app.db import session_scope
    from app.sweeps import service as sweeps

    with session_scope() as s:
        return sweeps.advance(session=s, parent_id=parent_id, worker="w2", settings=settings)


def _job(client, job_id: str) -> dict:
    return client.get(f"/v1/jobs/{job_id}").json()


def test_rounds_follow_the_results_until_the_answer_is_handed_over(
    client, model_id, dataset_id, settings
):
    parent = _sweep(client, model_id, dataset_id)
    first = _begin(parent, _plan())
    # Two workers: the axis in three parts first (1.3 x 4^(i/3)), its ends left out.
    assert len(first) == 2 and {q for _, q in first} == {"cpu"}
    p = _job(client, parent)
    assert (p["status"], p["phase"]) == ("running", "sweeping")
    kids = client.get("/v1/jobs", params={"parent_id": parent}).json()["data"]
    assert sorted(k["request"]["target"]["speedup"] for k in kids) == [2.064, 3.276]
    assert all(k["parent_id"] == parent and k["status"] == "queued" for k in kids)
    assert all(k["request"]["training"]["teacher_cache"] for k in kids)
    # Children are not listed among the tenant's jobs.
    top = {j["id"] for j in client.get("/v1/jobs").json()["data"]}
    assert parent in top and not top & {k["id"] for k in kids}

    by_speed = {k["request"]["target"]["speedup"]: k["id"] for k in kids}
    _end_child(by_speed[2.064], 0.995)
    step = _advance(parent, settings)
    assert step.to_send == [] and step.answer is None  # the 3.276x child still runs
    _end_child(by_speed[3.276], 0.95)
    step = _advance(parent, settings)
    # The bracket 2.064..3.276 is k-sected: two new candidates between them.
    assert len(step.to_send) == 2
    assert _advance(parent, settings).to_send == []  # a second advance starts nothing
    speeds = sorted(
        k["request"]["target"]["speedup"]
        for k in client.get("/v1/jobs", params={"parent_id": parent}).json()["data"]
        if k["status"] == "queued"
    )
    assert 2.064 < speeds[0] < speeds[1] < 3.276
    for child_id, _ in step.to_send:
        _end_child(child_id, None)  # failed candidates say nothing about the curve
    # One event on the parent per finished candidate, each once.
    events = client.get(f"/v1/jobs/{parent}/events", params={"limit": 200}).json()["data"]
    ended = [e for e in events if "status" in e["data"].get("data", {})]
    assert sorted(e["data"]["data"]["candidate"] for e in ended) == [0, 1]
    assert _job(client, parent)["progress"] == round(0.99 * 2 / 6, 4)
    # Budget 6: the last round of two, in the same bracket, then the answer.
    step = _advance(parent, settings)
    assert len(step.to_send) == 2
    for child_id, _ in step.to_send:
        _end_child(child_id, 0.992)
    step = _advance(parent, settings)
    assert step.to_send == [] and step.answer is not None
    assert len(step.answer) == 6 and sum(not r.ok for r in step.answer) == 2
    p = _job(client, parent)
    assert (p["status"], p["phase"]) == ("running", "answering")
    # Answering holds a lease: another advance leaves it to that worker.
    assert _advance(parent, settings).answer is None
    events = client.get(f"/v1/jobs/{parent}/events", params={"limit": 200}).json()["data"]
    ended = [e for e in events if "status" in e["data"].get("data", {})]
    assert sorted(e["data"]["data"]["candidate"] for e in ended) == list(range(6))
    failed = [e for e in ended if e["data"]["data"]["status"] == "failed"]
    assert len(failed) == 2 and all(e["data"]["level"] == "warning" for e in failed)


def test_the_time_budget_stops_new_rounds(client, model_id, dataset_id, settings):
    from app.db import utcnow

    parent = _sweep(client, model_id, dataset_id, budget={"max_seconds": 60})
    first = _begin(parent, _plan(max_seconds=60))
    # The slow end keeps the floor, the fast end misses it: a bracket to narrow.
    for (child_id, _), retention in zip(first, (0.995, 0.95), strict=True):
        _end_child(child_id, retention)
    # 45 s of worker time each, whatever the time the test took to get here.
    now = utcnow()
    _set_all_children(parent, started_at=now - timedelta(seconds=45), finished_at=now)
    step = _advance(parent, settings)
    assert step.answer is not None and step.to_send == []
    assert "max_seconds" in step.stopped_by and "90 s" in step.stopped_by


def _set_all_children(parent_id: str, **values) -> None:
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:
        s.execute(update(Job).where(Job.parent_id == parent_id).values(**values))
        s.commit()


def test_cancel_cascades_and_the_sweep_ends_once_its_children_have(
    client, model_id, dataset_id, settings
):
    from app.db import session_scope
    from app.jobs import service as jobs

    parent = _sweep(client, model_id, dataset_id)
    (a, _), (b, _) = _begin(parent, _plan())
    with session_scope() as s:
        jobs.claim(session=s, job_id=a, worker="w1", lease_seconds=60)
    r = client.post(f"/v1/jobs/{parent}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "cancelling"
    assert _job(client, a)["status"] == "cancelling"  # its worker stops it
    assert _job(client, b)["status"] == "cancelled"  # never started
    assert _advance(parent, settings).ended is None  # a still runs
    with session_scope() as s:
        jobs.finish(session=s, job_id=a, attempt=1, status="cancelled")
    assert _advance(parent, settings).ended == "cancelled"
    assert _job(client, parent)["status"] == "cancelled"


def test_a_sweep_counts_once_in_the_quota(client, model_id, dataset_id, settings, monkeypatch):
    from app.settings import get_settings

    parent = _sweep(client, model_id, dataset_id)
    _begin(parent, _plan(parallel=4))  # four children, queued
    monkeypatch.setattr(get_settings(), "tenant_max_active_jobs", 2)
    # The sweep is one active job: one more fits, the next does not.
    assert client.post("/v1/jobs", json=job_body(model_id, dataset_id)).status_code == 202
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id))
    assert r.status_code == 429 and "2 queued or running" in r.json()["detail"]


def test_a_sweep_whose_advance_was_lost_is_found(client, model_id, dataset_id, settings):
    from app.db import session_scope, utcnow
    from app.jobs.tables import Job
    from app.sweeps import service as sweeps

    parent = _sweep(client, model_id, dataset_id)
    for child_id, _ in _begin(parent, _plan()):
        _end_child(child_id, 0.995)

    def stalled() -> list[str]:
        with session_scope() as s:
            return [p for p, _ in sweeps.stalled(session=s, settings=settings)]

    assert parent not in stalled()  # just ended: its advance may be on its way
    with session_scope() as s:
        s.execute(
            update(Job).where(Job.id == parent).values(updated_at=utcnow() - timedelta(seconds=61))
        )
        s.commit()
    assert parent in stalled()
    with session_scope() as s:
        assert sweeps.parents_of(session=s, job_ids=[c["id"] for c in _kids(client, parent)]) == [
            (parent, "cpu")
        ]


def _kids(client, parent_id: str) -> list[dict]:
    return client.get("/v1/jobs", params={"parent_id": parent_id}).json()["data"]


def test_candidates_near_the_floor_are_trained_again_on_the_next_student_seed(
    client, model_id, dataset_id, settings
):
    from app.sweeps import policy

    parent = _sweep(client, model_id, dataset_id)
    first = _begin(parent, _plan(hi=1.5))
    by_speed = {k["request"]["target"]["speedup"]: k["id"] for k in _kids(client, parent)}
    slow, fast = sorted(by_speed)
    assert len(first) == 2 and fast / slow < policy.BRACKET_RATIO
    _end_child(by_speed[slow], 0.995)
    _end_child(by_speed[fast], 0.985)
    # The bracket is narrow and both ends lie within a point of the floor: each is
    # trained again, its student on seed 1, its teacher the same (the cache key's seed).
    step = _advance(parent, settings)
    assert len(step.to_send) == 2
    again = [k for k in _kids(client, parent) if k["status"] == "queued"]
    assert sorted(k["request"]["target"]["speedup"] for k in again) == [slow, fast]
    for k in again:
        assert k["request"]["training"]["student_seed"] == 1
        assert k["request"]["training"]["seed"] == 0 and k["request"]["training"]["teacher_cache"]
    # ... at the shape its first training had, not one planned again from the speed-up.
    for k in again:
        plan = _place(k["id"]).speed_plan
        assert plan == {
            "target_speedup": k["request"]["target"]["speedup"],
            "shape": {"num_layers": 3},
        }
    events = client.get(f"/v1/jobs/{parent}/events", params={"limit": 200}).json()["data"]
    started = [e["data"] for e in events if "trained again" in e["data"].get("message", "")]
    assert sorted(e["data"]["repeat"] for e in started) == [1, 1]
    ids = {k["request"]["target"]["speedup"]: k["id"] for k in again}
    _end_child(ids[fast], 0.997)  # 99.10% on average: the near miss holds the floor
    _end_child(ids[slow], 0.999)
    step = _advance(parent, settings)
    assert step.to_send == [] and step.answer is not None and len(step.answer) == 4
    answer = policy.pick(step.plan.goal, step.answer)
    picked = next(r for r in step.answer if r.index == answer.pick_index)
    assert answer.met and (picked.speedup_target, picked.repeat) == (fast, 1)
    assert "99.10% retention over 2 trainings: 98.50% and 99.70%" in answer.message


def _place(job_id: str):
    from app.db import session_scope
    from app.jobs.tables import Job
    from app.sweeps.state import ChildPlace

    with session_scope() as s:
        return ChildPlace.of(s.get(Job, job_id).sweep)
