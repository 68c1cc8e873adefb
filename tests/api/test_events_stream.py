from __future__ import annotations

import json
import threading
import time

from tests.apiclient import assert_problem, job_body


def _messages(lines):
    msg: dict = {}
    for line in lines:
        if not line:
            if msg:
                yield msg
            msg = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            msg[key] = value


def test_stream_follows_the_job_to_its_end(client, model_id, dataset_id):
    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    cancel = threading.Timer(1.5, lambda: client.post(f"/v1/jobs/{jid}/cancel"))
    cancel.start()
    started = time.monotonic()
    with client.stream(
        "GET", f"/v1/jobs/{jid}/events", headers={"Accept": "text/event-stream"}
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        messages = list(_messages(r.iter_lines()))
    cancel.join()
    assert time.monotonic() - started >= 1.0  # it waited for the cancel, live
    assert messages[0] == {"retry": "2000"}
    events = [m for m in messages if "id" in m]
    assert [json.loads(m["data"])["data"]["status"] for m in events] == ["queued", "cancelled"]
    assert [m["event"] for m in events] == ["status", "status"]
    assert messages[-1]["event"] == "end"

    # resuming from Last-Event-ID sends only what came after
    with client.stream(
        "GET",
        f"/v1/jobs/{jid}/events",
        headers={"Accept": "text/event-stream", "Last-Event-ID": events[0]["id"]},
    ) as r:
        again = [m for m in _messages(r.iter_lines()) if "id" in m]
    assert [m["id"] for m in again] == [events[1]["id"]]


def test_stream_of_unknown_job_is_404(client):
    r = client.get("/v1/jobs/job_nope/events", headers={"Accept": "text/event-stream"})
    assert_problem(r, 404, "job_not_found")
