"""What a job is told when it is created, on a task no benchmark uses (six support
intents, one rare): the defaults a job naming only a target gets, and a speed target
that the allowed structures can only overshoot, said in the response and as an event."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.apiclient import job_body, upload_dataset

INTENTS = ("billing", "shipping", "returns", "account", "technical", "refund")
WORDS = ("please", "my", "the", "order", "today", "help", "again", "now")


@pytest.fixture
def intents_id(client, tmp_path: Path) -> str:
    rng = random.Random(0)
    rows = [{"text": f"refund {rng.choice(WORDS)} money", "label": "refund"} for _ in range(12)]
    for _ in range(288):
        intent = rng.choice(INTENTS[:-1])
        rows.append({"text": f"{intent} {rng.choice(WORDS)} {rng.choice(WORDS)}", "label": intent})
    rng.shuffle(rows)
    path = tmp_path / "intents.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    r = upload_dataset(client, path, name="intents")
    assert r.status_code == 201, r.text
    assert sorted(r.json()["label_names"]) == sorted(INTENTS)
    return r.json()["id"]


def _created(client, body: dict, **headers: str) -> dict:
    r = client.post("/v1/jobs", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()


def _warning_events(client, job_id: str) -> list[dict]:
    events = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
    return [e for e in events if e["type"] == "warning"]


def test_a_job_naming_only_a_target_gets_the_benchmarked_defaults(client, model_id, intents_id):
    job = _created(client, job_body(model_id, intents_id, target={"speedup": 1.9}))
    assert job["request"]["pruning"]["structured"] == ["layers", "ffn"]
    # null: the engine picks it by how deep the cut is (docs/engine.md, Defaults).
    assert job["request"]["training"]["learning_rate"] is None
    assert job["warnings"] == []
    assert _warning_events(client, job["id"]) == []


def test_a_speed_target_layers_alone_overshoot_is_said_at_creation(client, model_id, intents_id):
    # The tiny teacher has 4 layers; priced by the estimate, 2 of them are about 1.5x
    # and 1 is about 2x: 1.5 lands on the one layer, a third above what was asked.
    body = job_body(
        model_id, intents_id, target={"speedup": 1.5}, pruning={"structured": ["layers"]}
    )
    job = _created(client, body, **{"Idempotency-Key": "overshoot"})
    (warning,) = job["warnings"]
    assert (warning["code"], warning["param"]) == ("speedup_overshoot", "target.speedup")
    message = warning["message"]
    assert "between 1.50x (2 of 4 layers) and 2.01x (1 of 4 layers)" in message
    assert "about 2.01x (34% more than asked)" in message
    assert "add 'ffn' to pruning.structured" in message and "at most 1.50x" in message
    assert "Estimated" in message

    # The same words are a warning event of the job, written with it (attempt 0)...
    (event,) = _warning_events(client, job["id"])
    assert event["attempt"] == 0 and event["data"]["message"] == message
    assert event["data"]["data"]["code"] == "speedup_overshoot"
    assert event["data"]["data"]["step_below_shape"] == "2 of 4 layers"
    # ...and an idempotent replay of the request says them again.
    again = _created(client, body, **{"Idempotency-Key": "overshoot"})
    assert again["id"] == job["id"] and again["warnings"] == job["warnings"]
    # A read of the job is the job; what was said at creation stays in its events.
    assert "warnings" not in client.get(f"/v1/jobs/{job['id']}").json()


def test_a_speed_target_near_a_step_gets_no_warning(client, model_id, intents_id):
    body = job_body(
        model_id, intents_id, target={"speedup": 1.9}, pruning={"structured": ["layers"]}
    )
    job = _created(client, body)
    assert job["warnings"] == [] and _warning_events(client, job["id"]) == []


def test_a_speed_target_past_the_estimate_is_accepted_with_a_warning(client, model_id, intents_id):
    # Within the FLOPs bound (4x for 4 layers), so not refused; past the estimate.
    job = _created(client, job_body(model_id, intents_id, target={"speedup": 2.5}))
    (warning,) = job["warnings"]
    assert warning["code"] == "speedup_may_be_unreachable"
    assert "estimated at 2.01x" in warning["message"]
    assert "target_unreachable" in warning["message"]
