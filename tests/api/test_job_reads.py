"""What a job reads as while it runs and once it ended: progress rounded where it is
written, no phase once ended, events newest first with a cursor, metrics typed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from tests.apiclient import job_body

REPORT = {
    "teacher": {
        "accuracy": 0.683,
        "macro_f1": 0.68,
        "num_parameters": 22_713_216,
        "non_embedding_parameters": 10_000_000,
        "size_bytes": 90_900_000,
        "latency_ms_cpu_bs1": 20.4,
        "latency_ms_cpu_bs32": 376.0,
        "num_layers": 6,
        "intermediate_size": 1536,
        "flops_per_token": 21_000_000,
    },
    "student": {
        "accuracy": 0.667,
        "macro_f1": 0.66,
        "num_parameters": 17_400_000,
        "non_embedding_parameters": 5_000_000,
        "size_bytes": 69_600_000,
        "latency_ms_cpu_bs1": 11.0,
        "latency_ms_cpu_bs32": 189.0,
        "num_layers": 3,
        "intermediate_size": 1536,
        "flops_per_token": 10_500_000,
    },
    "main_metric": "accuracy",
    "retention": 0.976,
    "compression_ratio": 1.3,
    "params_ratio_non_embedding": 0.5,
    "speedup_cpu_bs1": 1.85,
    "speedup_cpu_bs32": 1.99,
    "flops_ratio": 2.0,
    "teacher_finetuned": True,
    "layer_map": [1, 3, 5],
    "pruning_plan": {"importance": None},
    "latency_threads": 2,
    "latency_seq_len": 64,
    "device": "cpu",
    # A key this schema does not know (a later engine's) comes back as it was stored.
    "energy_joules": {"teacher": 3.5},
}


def _session():
    from app.db import session_scope

    return session_scope()


def _running(client, model_id, dataset_id) -> tuple[str, int]:
    from app.jobs import service as jobs

    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    with _session() as s:
        attempt = jobs.claim(session=s, job_id=jid, worker="w", lease_seconds=60)
    return jid, attempt


def test_progress_is_rounded_where_it_is_written(client, model_id, dataset_id):
    from app.jobs import service as jobs

    jid, attempt = _running(client, model_id, dataset_id)
    unrounded = 0.1 * 0.1  # 0.010000000000000002, as the engine's sums give
    assert repr(unrounded) != "0.01"
    with _session() as s:
        assert jobs.set_progress(session=s, job_id=jid, attempt=attempt, progress=unrounded)
        assert jobs.set_progress(session=s, job_id=jid, attempt=attempt, progress=2 / 3)
    r = client.get(f"/v1/jobs/{jid}")
    assert r.json()["progress"] == 0.6667
    assert "0.66666" not in r.text
    events = client.get(f"/v1/jobs/{jid}/events").text
    assert '"progress":0.01}' in events.replace(" ", "") and "0.0100000" not in events
    with _session() as s:
        jobs.finish(session=s, job_id=jid, attempt=attempt, status="cancelled")


def test_phase_is_null_once_the_job_has_ended(client, model_id, dataset_id):
    from app.db import utcnow
    from app.jobs import service as jobs
    from app.jobs.tables import Job
    from app.settings import get_settings

    def phase(jid: str) -> tuple[str, str | None]:
        job = client.get(f"/v1/jobs/{jid}").json()
        return job["status"], job["phase"]

    # Ended by its worker.
    jid, attempt = _running(client, model_id, dataset_id)
    with _session() as s:
        jobs.set_phase(session=s, job_id=jid, attempt=attempt, phase="distilling")
    assert phase(jid) == ("running", "distilling")
    with _session() as s:
        jobs.finish(
            session=s, job_id=jid, attempt=attempt, status="failed", error_code="engine_error"
        )
    assert phase(jid) == ("failed", None)

    # Requeued, then ended, by the reaper.
    settings = get_settings().model_copy(update={"max_attempts": 2})
    jid, attempt = _running(client, model_id, dataset_id)
    for expected in ("queued", "failed"):
        with _session() as s:
            jobs.set_phase(session=s, job_id=jid, attempt=attempt, phase="distilling")
            s.execute(
                update(Job)
                .where(Job.id == jid)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
            s.commit()
            jobs.reap(session=s, settings=settings)
        assert phase(jid) == (expected, None)
        if expected == "queued":
            with _session() as s:
                attempt = jobs.claim(session=s, job_id=jid, worker="w", lease_seconds=60)
            assert phase(jid) == ("running", "preparing")

    # Cancelled while queued (after a worker was lost, so it had had a phase).
    jid, attempt = _running(client, model_id, dataset_id)
    with _session() as s:
        s.execute(update(Job).where(Job.id == jid).values(status="queued", phase="pruning"))
        s.commit()
    assert client.post(f"/v1/jobs/{jid}/cancel").json()["phase"] is None
    assert phase(jid) == ("cancelled", None)


def test_events_newest_first_with_a_cursor_both_ways(client, model_id, dataset_id):
    from app.jobs import service as jobs

    jid, attempt = _running(client, model_id, dataset_id)
    with _session() as s:
        for i in range(5):
            jobs.add_event(
                session=s, job_id=jid, attempt=attempt, type="log", data={"message": str(i)}
            )

    def walk(**params) -> list[int]:
        ids, after = [], None
        while True:
            query = {**params, "limit": 2, **({"after": after} if after else {})}
            page = client.get(f"/v1/jobs/{jid}/events", params=query).json()
            ids += [e["id"] for e in page["data"]]
            if not page["has_more"]:
                assert page["next_cursor"] is None
                return ids
            after = page["next_cursor"]

    oldest_first = walk()
    assert len(oldest_first) == 7  # queued, running, five log lines
    assert oldest_first == sorted(oldest_first)
    assert walk(order="asc") == oldest_first
    assert walk(order="desc") == oldest_first[::-1]
    newest = client.get(f"/v1/jobs/{jid}/events", params={"order": "desc", "limit": 1}).json()
    assert newest["data"][0]["data"] == {"message": "4"}
    r = client.get(f"/v1/jobs/{jid}/events", params={"order": "newest"})
    assert r.status_code == 422 and r.json()["param"] == "order"
    with _session() as s:
        jobs.finish(session=s, job_id=jid, attempt=attempt, status="cancelled")


def test_metrics_read_as_stored_and_are_typed_in_openapi(client, app, model_id, dataset_id):
    from app.jobs import service as jobs

    jid, attempt = _running(client, model_id, dataset_id)
    with _session() as s:
        assert jobs.finish(
            session=s, job_id=jid, attempt=attempt, status="succeeded", metrics=REPORT
        )
    r = client.get(f"/v1/jobs/{jid}")
    assert r.headers["content-type"] == "application/json"
    job = r.json()
    assert job["metrics"] == REPORT  # no key added, none dropped, numbers as they were
    assert job["phase"] is None and job["progress"] == 1.0
    listed = client.get("/v1/jobs", params={"status": "succeeded"}).json()["data"]
    # The route serializes the job itself (app/jobs/router.py); FastAPI serializes the
    # list's: the same fields, the same values.
    assert next(j for j in listed if j["id"] == jid) == job

    schemas = app.openapi()["components"]["schemas"]
    metrics = schemas["JobRead"]["properties"]["metrics"]
    refs = [m.get("$ref", "") for m in metrics["anyOf"]]
    assert any(r.endswith("/JobMetrics") for r in refs), metrics
    props = schemas["JobMetrics"]["properties"]
    for key in ("teacher", "student", "retention", "speedup_cpu_bs1", "speedup_cpu_bs32"):
        assert key in props, key
    assert schemas["JobMetrics"]["additionalProperties"] is True
    student = schemas["ModelScores"]["properties"]
    assert {"accuracy", "f1", "latency_ms_cpu_bs1", "num_parameters"} <= set(student)


def test_metrics_that_do_not_fit_the_schema_still_read(client, model_id, dataset_id):
    from app.jobs import service as jobs

    jid, attempt = _running(client, model_id, dataset_id)
    odd = {"teacher": "n/a", "retention": "high"}  # as some other release might write
    with _session() as s:
        jobs.finish(session=s, job_id=jid, attempt=attempt, status="succeeded", metrics=odd)
    r = client.get(f"/v1/jobs/{jid}")
    assert r.status_code == 200, r.text
    assert r.json()["metrics"] == odd
