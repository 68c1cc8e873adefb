from __future__ import annotations

import pytest
import redis
from sqlalchemy import func, select

from tests import services
from tests.apiclient import assert_problem, job_body


def _job_count(tenant: str) -> int:
    from app.db import session_scope
    from app.jobs.tables import Job

    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job).where(Job.tenant == tenant))


def _queued_messages() -> int:
    return redis.Redis.from_url(services.REDIS_URL).llen("cpu")


def test_create_fills_defaults_and_enqueues(client, model_id, dataset_id):
    before = _queued_messages()
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id, name="half"))
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["id"].startswith("job_")
    assert job["status"] == "queued" and job["progress"] == 0.0 and job["attempt"] == 0
    assert job["queue"] == "cpu" and job["error"] is None and job["metrics"] is None
    req = job["request"]
    assert req["strategy"] == "prune_then_distill"
    assert req["training"] == {
        "epochs": 3,
        "batch_size": 32,
        "learning_rate": None,  # by the depth of the cut (spec.student_learning_rate)
        "max_seq_length": 128,
        "seed": 0,
        "student_seed": None,  # the student's draws: seed's
        "teacher_epochs": 3,
        "teacher_learning_rate": 5e-5,
        "checkpoint_every_steps": 200,
        "cache_teacher_logits": False,
        "devices": None,  # every GPU of the worker that runs it
        "gradient_accumulation_steps": 1,
        "teacher_cache": True,
    }
    assert req["distillation"] == {
        "temperature": 2.0,
        "alpha": 0.5,
        "hidden_states": True,
        "attention": False,
    }
    assert req["pruning"] == {
        "structured": ["layers", "ffn"],
        "unstructured_sparsity": 0.0,
        "importance": "taylor",
    }
    assert req["dataset"] == {
        "dataset_id": dataset_id,
        "train_split": "train",
        "eval_split": "validation",
        "allow_unseen_labels": False,
    }
    # The creation response adds what was said at creation (nothing, for this request).
    assert job.pop("warnings") == []
    assert client.get(f"/v1/jobs/{job['id']}").json() == job
    # committed, then handed to the real broker
    assert _queued_messages() == before + 1
    events = client.get(f"/v1/jobs/{job['id']}/events").json()["data"]
    assert [e["data"] for e in events] == [{"status": "queued"}]


def test_idempotency_key_replay_and_conflict(client, tenant, model_id, dataset_id):
    body = job_body(model_id, dataset_id)
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert _job_count(tenant) == 1
    other = client.post(
        "/v1/jobs", json={**body, "name": "other"}, headers={"Idempotency-Key": "k1"}
    )
    assert_problem(other, 409, "idempotency_key_reused", "Idempotency-Key")
    assert _job_count(tenant) == 1
    # a new key is a new job
    assert (
        client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k2"}).json()["id"]
        != first.json()["id"]
    )


def test_list_paginates_and_filters_before_the_limit(client, model_id, dataset_id):
    ids = [
        client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"] for _ in range(5)
    ]
    for jid in (ids[0], ids[2]):
        assert client.post(f"/v1/jobs/{jid}/cancel").json()["status"] == "cancelled"

    page = client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["data"]] == [ids[4], ids[3]] and page["has_more"]
    page2 = client.get("/v1/jobs", params={"limit": 2, "after": page["next_cursor"]}).json()
    assert [j["id"] for j in page2["data"]] == [ids[2], ids[1]] and page2["has_more"]
    page3 = client.get("/v1/jobs", params={"limit": 2, "after": page2["next_cursor"]}).json()
    assert [j["id"] for j in page3["data"]] == [ids[0]] and not page3["has_more"]

    # The newest two jobs are queued: a filter applied after the limit would find none.
    c1 = client.get("/v1/jobs", params={"status": "cancelled", "limit": 1}).json()
    assert [j["id"] for j in c1["data"]] == [ids[2]] and c1["has_more"]
    c2 = client.get(
        "/v1/jobs", params={"status": "cancelled", "limit": 1, "after": c1["next_cursor"]}
    ).json()
    assert [j["id"] for j in c2["data"]] == [ids[0]] and not c2["has_more"]
    queued = client.get("/v1/jobs", params={"status": "queued"}).json()["data"]
    assert {j["id"] for j in queued} == {ids[1], ids[3], ids[4]}
    assert_problem(
        client.get("/v1/jobs", params={"status": "bogus"}), 422, "validation_error", "status"
    )


def test_cancel_queued_job_at_once(client, model_id, dataset_id):
    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    r = client.post(f"/v1/jobs/{jid}/cancel")
    assert r.status_code == 202
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"] is not None
    assert client.post(f"/v1/jobs/{jid}/cancel").status_code == 202  # idempotent
    events = client.get(f"/v1/jobs/{jid}/events").json()["data"]
    assert [e["data"]["status"] for e in events] == ["queued", "cancelled"]
    # the worker that later receives it does nothing
    from workers.runner import run_job

    assert run_job(job_id=jid, worker="test") == "skipped"


def test_unknown_job_everywhere(client):
    for r in (
        client.get("/v1/jobs/job_unknown"),
        client.post("/v1/jobs/job_unknown/cancel"),
        client.get("/v1/jobs/job_unknown/events"),
        client.get("/v1/jobs/job_unknown/artifacts"),
        client.get("/v1/jobs/job_unknown/artifacts/model"),
    ):
        assert_problem(r, 404, "job_not_found")


def test_queued_job_has_no_artifacts(client, model_id, dataset_id):
    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    assert client.get(f"/v1/jobs/{jid}/artifacts").json() == {"data": []}
    assert_problem(client.get(f"/v1/jobs/{jid}/artifacts/model"), 404, "artifact_not_found")


def test_malformed_json(client, tenant):
    r = client.post("/v1/jobs", content=b'{"task": ', headers={"content-type": "application/json"})
    assert_problem(r, 400, "invalid_json")
    assert _job_count(tenant) == 0


@pytest.mark.parametrize(
    ("patch", "status", "code", "param"),
    [
        ({"colour": "red"}, 422, "validation_error", "colour"),
        ({"training": {"epochs": 1, "speed": 3}}, 422, "validation_error", "training.speed"),
        ({"target": None}, 422, "validation_error", "target"),
        ({"target": {"params_ratio": 0.5, "sparsity": 0.5}}, 422, "validation_error", "target"),
        ({"target": {"params_ratio": 1.5}}, 422, "validation_error", "target.params_ratio"),
        ({"target": {"speedup": 1.0}}, 422, "validation_error", "target.speedup"),
        ({"target": {"speedup": 2.0, "pattern": "2:4"}}, 422, "validation_error", "target"),
        ({"task": "summarization"}, 422, "validation_error", "task"),
        # not in the schema until the engine does it (vocabulary.TASKS)
        ({"task": "causal-lm"}, 422, "validation_error", "task"),
        ({"strategy": "greedy"}, 422, "validation_error", "strategy"),
        (
            {"strategy": "distill_then_prune", "training": {"epochs": 1}},
            422,
            "too_few_epochs",
            "training.epochs",
        ),
        ({"target": {"sparsity": 0.6, "pattern": "2:4"}}, 422, "validation_error", "target"),
        ({"target": {"params_ratio": 0.1}}, 422, "target_unreachable", "target.params_ratio"),
        ({"teacher": {"model_id": "mdl_nope"}}, 422, "model_not_found", "teacher.model_id"),
        ({"dataset": {"dataset_id": "ds_nope"}}, 422, "dataset_not_found", "dataset.dataset_id"),
        (
            {"dataset": {"dataset_id": "DS", "eval_split": "test"}},
            422,
            "split_not_found",
            "dataset.eval_split",
        ),
        ({"accelerator": "gpu"}, 422, "no_gpu_workers", "accelerator"),
        (
            {"pruning": {"structured": ["layers", "heads"]}},  # a BERT teacher
            422,
            "pruning_not_possible",
            "pruning.structured",
        ),
        (
            {"pruning": {"unstructured_sparsity": 1.0}},
            422,
            "validation_error",
            "pruning.unstructured_sparsity",
        ),
        (
            {"training": {"cache_teacher_logits": True}},  # hidden_states is on by default
            422,
            "cache_needs_logits_only",
            "training.cache_teacher_logits",
        ),
    ],
)
def test_bad_requests_write_nothing(
    client, tenant, model_id, dataset_id, patch, status, code, param
):
    body = job_body(model_id, dataset_id)
    for key, value in patch.items():
        if isinstance(value, dict) and value.get("dataset_id") == "DS":
            value = {**value, "dataset_id": dataset_id}
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    before = _queued_messages()
    problem = assert_problem(client.post("/v1/jobs", json=body), status, code, param)
    assert param in problem["detail"] or code != "validation_error"
    assert _job_count(tenant) == 0
    assert _queued_messages() == before


def test_missing_body(client):
    assert_problem(client.post("/v1/jobs"), 422, "validation_error")


def test_ffn_pruning_reaches_smaller_targets(client, model_id, dataset_id):
    # 4 layers: whole layers alone keep at least about a quarter of the encoder
    layers_only = job_body(
        model_id, dataset_id, target={"params_ratio": 0.2}, pruning={"structured": ["layers"]}
    )
    body = assert_problem(
        client.post("/v1/jobs", json=layers_only), 422, "target_unreachable", "target.params_ratio"
    )
    assert '"ffn"' in body["detail"]
    with_ffn = {**layers_only, "pruning": {"structured": ["layers", "ffn"]}}
    r = client.post("/v1/jobs", json=with_ffn)
    assert r.status_code == 202, r.text
    assert r.json()["request"]["pruning"]["structured"] == ["layers", "ffn"]
