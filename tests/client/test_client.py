"""The Python client against the real API over HTTP (no worker: jobs stay queued)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from modelpress_client import Client

from tests.apiclient import job_body
from tests.faults.proxy import Proxy


@pytest.fixture
def model(mp, tiny_teacher_tar: Path):
    return mp.upload_model(tiny_teacher_tar, name="tiny")


@pytest.fixture
def dataset(mp, tiny_dataset: Path):
    return mp.upload_dataset(tiny_dataset, format="jsonl", name="tiny")


@pytest.fixture
def settings(monkeypatch):
    from app.settings import get_settings

    return get_settings()  # the one object the server in this process reads


def test_importing_the_client_loads_none_of_the_service_stack():
    heavy = ["fastapi", "sqlalchemy", "torch", "pydantic", "celery", "transformers", "app"]
    code = (
        "import json, sys, modelpress_client; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_missing_url_and_key_name_the_variables(monkeypatch):
    from modelpress_client import Client, ConfigurationError

    monkeypatch.delenv("MODELPRESS_URL", raising=False)
    monkeypatch.delenv("MODELPRESS_API_KEY", raising=False)
    with pytest.raises(ConfigurationError) as e:
        Client()
    assert "MODELPRESS_URL" in str(e.value) and "MODELPRESS_API_KEY" in str(e.value)
    monkeypatch.setenv("MODELPRESS_URL", "http://127.0.0.1:1")
    with pytest.raises(ConfigurationError) as e:
        Client()
    assert "MODELPRESS_API_KEY" in str(e.value) and "MODELPRESS_URL" not in str(e.value)


def test_url_and_key_from_the_environment(server_url, api_key, monkeypatch):
    from modelpress_client import Client

    monkeypatch.setenv("MODELPRESS_URL", server_url)
    monkeypatch.setenv("MODELPRESS_API_KEY", api_key)
    with Client() as c:
        assert c.list_models().data == []
        assert c.health() == {"status": "ok"}
        assert c.ready()["status"] == "ok"


def test_upload_model_and_dataset_report_progress(
    mp, tiny_teacher_tar, tiny_teacher_dir, tiny_dataset, tmp_path
):
    seen: list[tuple[int, int]] = []
    model = mp.upload_model(tiny_teacher_tar, name="tiny", on_progress=lambda *a: seen.append(a))
    size = tiny_teacher_tar.stat().st_size
    assert seen == [(0, size), (size, size)]  # one chunk: the tiny archive is < 1 MiB
    assert model.id.startswith("mdl_") and model.name == "tiny" and model.size_bytes == size
    assert model.architecture == "BertModel" and model.num_parameters > 0
    assert mp.get_model(model.id) == model

    # A save_pretrained folder is packed on the way, then streamed a chunk at a time.
    folder = tmp_path / "teacher"
    shutil.copytree(tiny_teacher_dir, folder)
    (folder / "notes.bin").write_bytes(os.urandom(3_500_000))  # incompressible
    seen.clear()
    packed = mp.upload_model(folder, on_progress=lambda *a: seen.append(a))
    total = seen[-1][1]
    assert packed.filename == "teacher.tar.gz" and packed.size_bytes == total > 3_500_000
    assert [s for s, _ in seen] == sorted(s for s, _ in seen) and len(seen) == 5  # 0 + 4 MiB
    assert seen[-1] == (total, total) and {t for _, t in seen} == {total}
    assert packed.num_parameters == model.num_parameters

    seen.clear()
    ds = mp.upload_dataset(
        tiny_dataset, format="jsonl", on_progress=lambda s, t: seen.append((s, t))
    )
    assert seen[-1] == (tiny_dataset.stat().st_size,) * 2
    assert ds.num_rows == 200 and ds.status == "ready" and ds.ingest is not None
    assert ds.task_hint == "sequence-classification"
    assert mp.get_dataset(ds.id).ingest is None
    assert [d.id for d in mp.iter_datasets()] == [ds.id]
    assert [m.id for m in mp.iter_models(page_size=1)] == [packed.id, model.id]

    mp.delete_model(packed.id)
    mp.delete_dataset(ds.id)
    assert [m.id for m in mp.iter_models()] == [model.id]
    assert mp.list_datasets().data == []


def test_errors_carry_status_code_and_param(mp, model, dataset, server_url):
    from modelpress_client import Client, Conflict, NotFound, Unauthorized, ValidationFailed

    with pytest.raises(NotFound) as e:
        mp.get_job("job_nope")
    assert (e.value.status, e.value.code) == (404, "job_not_found")

    bad = job_body(model.id, dataset.id, target={"params_ratio": 1.5})
    with pytest.raises(ValidationFailed) as e:
        mp.create_job(bad)
    assert e.value.status == 422 and e.value.code == "validation_error"
    assert e.value.param == "target.params_ratio" and "params_ratio" in e.value.detail
    assert e.value.errors and e.value.errors[0]["param"] == "target.params_ratio"

    with pytest.raises(ValidationFailed) as e:
        mp.upload_dataset(Path(__file__), format="nope")
    assert e.value.param == "format"

    key = "key-1"
    job = mp.create_job(job_body(model.id, dataset.id), idempotency_key=key)
    with pytest.raises(Conflict) as e:
        mp.create_job(job_body(model.id, dataset.id, name="other"), idempotency_key=key)
    assert (e.value.code, e.value.param) == ("idempotency_key_reused", "Idempotency-Key")
    mp.cancel_job(job.id)

    with Client(server_url, api_key="mp_wrong") as stranger, pytest.raises(Unauthorized) as e:
        stranger.list_jobs()
    assert e.value.status == 401 and e.value.code


def test_same_idempotency_key_same_job(mp, model, dataset):
    body = job_body(model.id, dataset.id)
    first = mp.create_job(body, idempotency_key="same")
    again = mp.create_job(body, idempotency_key="same")
    other = mp.create_job(body)  # a fresh key per call: a new job
    assert again.id == first.id and other.id != first.id
    assert {j.id for j in mp.iter_jobs()} == {first.id, other.id}
    for jid in (first.id, other.id):
        assert mp.cancel_job(jid).status == "cancelled"


def _from_server(proxy: Proxy, sock: socket.socket) -> bool:
    try:
        return sock.getpeername()[1] == proxy.upstream[1]
    except OSError:  # already shut down by the other direction: nothing left to pass
        return True


class AnswerDropper(Proxy):
    """Passes requests on, but drops the first answer: the request was served and the
    client never heard back, as when a connection breaks at the wrong moment."""

    dropped = 0

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        if _from_server(self, src) and self.dropped == 0 and src.recv(65536):
            self.dropped += 1
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            return
        super()._pump(src, dst)


def test_a_create_retried_after_a_lost_answer_reuses_its_key(
    server_url, api_key, mp, model, dataset
):
    from modelpress_client import Client

    port = int(server_url.rsplit(":", 1)[1])
    proxy = AnswerDropper(("127.0.0.1", port)).start()
    retries = []
    try:
        with Client(
            f"http://127.0.0.1:{proxy.port}",
            api_key=api_key,
            max_retry_wait=0.2,
            on_retry=retries.append,
        ) as flaky:
            job = flaky.create_job(job_body(model.id, dataset.id))
    finally:
        proxy.cut()
    assert proxy.dropped == 1 and len(retries) == 1 and retries[0].status is None
    # the first try created the job; the retry, with the same key, got that job back
    assert [j.id for j in mp.iter_jobs()] == [job.id]
    mp.cancel_job(job.id)


def test_pagination_iterator_follows_next_cursor(mp, model, dataset):
    ids = [mp.create_job(job_body(model.id, dataset.id, name=f"j{i}")).id for i in range(5)]
    page = mp.list_jobs(limit=2)
    assert len(page.data) == 2 and page.has_more and page.next_cursor
    assert [j.id for j in page.data] == ids[::-1][:2]  # newest first
    second = mp.list_jobs(limit=2, after=page.next_cursor)
    assert [j.id for j in second.data] == ids[::-1][2:4]
    assert [j.id for j in mp.iter_jobs(page_size=2)] == ids[::-1]
    for jid in ids[:3]:
        mp.cancel_job(jid)
    assert [j.id for j in mp.iter_jobs(status="queued", page_size=1)] == ids[:2:-1]
    for jid in ids[3:]:
        mp.cancel_job(jid)
    events = list(mp.iter_events(ids[0]))
    assert [e.data["status"] for e in events] == ["queued", "cancelled"]
    assert mp.list_events(ids[0], limit=1).next_cursor == str(events[0].id)


def test_429_is_retried_after_retry_after(
    mp, model, dataset, settings, monkeypatch, server_url, api_key
):
    from modelpress_client import Client, RateLimited

    monkeypatch.setattr(settings, "tenant_max_active_jobs", 1)
    blocker = mp.create_job(job_body(model.id, dataset.id))
    with (
        Client(server_url, api_key=api_key, max_retries=0) as impatient,
        pytest.raises(RateLimited) as e,
    ):
        impatient.create_job(job_body(model.id, dataset.id))
    assert (e.value.status, e.value.code, e.value.retry_after) == (429, "quota_active_jobs", 60.0)

    retries = []
    freed = threading.Timer(0.3, lambda: mp.cancel_job(blocker.id))
    freed.start()
    with Client(
        server_url, api_key=api_key, max_retry_wait=1.0, on_retry=retries.append
    ) as patient:
        job = patient.create_job(job_body(model.id, dataset.id))
    freed.join()
    # Retry-After said 60 s; the client waited its cap of 1 s, then the quota was free
    assert [(r.status, r.error, r.wait_s) for r in retries] == [(429, "quota_active_jobs", 1.0)]
    assert job.status == "queued" and job.id != blocker.id
    mp.cancel_job(job.id)


def test_event_stream_resumes_after_a_dropped_connection(mp, model, dataset, server_url, api_key):
    from modelpress_client import Client, NotFound

    job = mp.create_job(job_body(model.id, dataset.id))
    port = int(server_url.rsplit(":", 1)[1])
    proxy = Proxy(("127.0.0.1", port)).start()
    retries = []
    try:
        with Client(
            f"http://127.0.0.1:{proxy.port}",
            api_key=api_key,
            max_retry_wait=0.5,
            on_retry=retries.append,
        ) as c:
            stream = c.stream_events(job.id, timeout=30)
            first = next(stream)
            proxy.cut()  # the open stream breaks
            proxy.start()
            mp.cancel_job(job.id)
            rest = list(stream)
    finally:
        proxy.cut()
    assert first.data["status"] == "queued"
    assert [e.data["status"] for e in rest] == ["cancelled"]  # resumed, nothing repeated
    assert retries and retries[0].status is None
    assert [e.id for e in mp.iter_events(job.id)] == [first.id, rest[0].id]
    # the stream of an ended job: its events, then the end
    assert [e.id for e in mp.stream_events(job.id)] == [first.id, rest[0].id]
    with pytest.raises(NotFound):
        next(mp.stream_events("job_nope"))


def test_wait_times_out_with_the_jobs_state(mp, model, dataset):
    from modelpress_client import WaitTimeout

    job = mp.create_job(job_body(model.id, dataset.id))
    seen = []
    for stream in (True, False):
        with pytest.raises(WaitTimeout) as e:
            mp.wait(job.id, on_progress=seen.append, timeout=1.0, poll_interval=0.2, stream=stream)
        assert e.value.job.status == "queued"
    assert [p.status for p in seen] == ["queued", "queued"]
    mp.cancel_job(job.id)
    assert mp.wait(job.id, timeout=5).status == "cancelled"


def test_delete_job(mp, model, dataset):
    from modelpress_client import Conflict, NotFound

    job = mp.create_job(job_body(model.id, dataset.id))
    with pytest.raises(Conflict) as e:
        mp.delete_job(job.id)
    assert e.value.code == "job_active"
    mp.cancel_job(job.id)
    mp.delete_job(job.id)
    with pytest.raises(NotFound):
        mp.get_job(job.id)


def test_webhooks(mp, model, dataset, loopback_webhooks):
    from modelpress_client import NotFound, ValidationFailed

    hook = mp.create_webhook(
        "http://127.0.0.1:9/hook", events=["job.cancelled"], description="registry"
    )
    assert hook.id.startswith("wh_") and hook.secret and hook.secret.startswith("whsec_")
    assert hook.enabled and hook.events == ["job.cancelled"] and hook.consecutive_failures == 0
    got = mp.get_webhook(hook.id)
    assert got.secret is None and got.url == hook.url  # the secret is shown once
    others = [mp.create_webhook(f"http://127.0.0.1:9/h{i}") for i in range(2)]
    assert others[0].events == ["job.running", "job.succeeded", "job.failed", "job.cancelled"]
    assert [w.id for w in mp.iter_webhooks(page_size=2)] == [others[1].id, others[0].id, hook.id]
    with pytest.raises(ValidationFailed) as e:
        mp.create_webhook("http://127.0.0.1:9/x", events=["job.nope"])
    assert e.value.param and e.value.param.startswith("events")

    off = mp.update_webhook(hook.id, enabled=False, description="paused")
    assert not off.enabled and off.description == "paused" and off.events == ["job.cancelled"]
    on = mp.update_webhook(hook.id, enabled=True)
    assert on.enabled

    # A cancelled job makes a delivery (the outbox writes it with the event).
    job = mp.create_job(job_body(model.id, dataset.id))
    mp.cancel_job(job.id)
    [delivery] = mp.list_deliveries(hook.id).data
    assert (delivery.event_type, delivery.job_id) == ("job.cancelled", job.id)
    assert delivery.payload and delivery.payload["type"] == "job.cancelled"
    assert [d.id for d in mp.iter_deliveries(hook.id)] == [delivery.id]
    again = mp.resend_delivery(hook.id, delivery.id)
    assert again.id == delivery.id and again.status == "pending"

    for w in (hook, *others):
        mp.delete_webhook(w.id)
    with pytest.raises(NotFound) as e:
        mp.get_webhook(hook.id)
    assert e.value.code == "webhook_not_found"


class NoStreams(Proxy):
    """A proxy that breaks every event-stream request, as some buffering proxies do."""

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        if _from_server(self, src):  # answers pass
            super()._pump(src, dst)
            return
        # Requests are checked one chunk at a time: a kept-alive connection carries many.
        with contextlib.suppress(OSError):
            while (data := src.recv(65536)) and b"text/event-stream" not in data.lower():
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def test_wait_falls_back_to_polling_when_streams_fail(mp, model, dataset, server_url, api_key):
    job = mp.create_job(job_body(model.id, dataset.id))
    port = int(server_url.rsplit(":", 1)[1])
    proxy = NoStreams(("127.0.0.1", port)).start()
    retries, seen = [], []
    cancel = threading.Timer(1.0, lambda: mp.cancel_job(job.id))
    cancel.start()
    try:
        with Client(
            f"http://127.0.0.1:{proxy.port}",
            api_key=api_key,
            max_retries=1,
            max_retry_wait=0.1,
            on_retry=retries.append,
        ) as c:
            done = c.wait(job.id, on_progress=seen.append, timeout=30, poll_interval=0.2)
    finally:
        cancel.join()
        proxy.cut()
    assert done.status == "cancelled"
    assert [p.status for p in seen] == ["queued", "cancelled"]
    assert all(p.event is None for p in seen)  # from polling, not from events
    assert retries and all("/events" in r.url for r in retries)


def test_upload_by_uri_from_the_services_store(mp, tiny_teacher_tar, tiny_dataset):
    """Inputs already in object storage are named, not sent: the service copies them."""
    from app.storage import get_storage

    storage = get_storage()
    bucket = storage.bucket  # type: ignore[attr-defined]
    storage.put_file("inbox/tiny.tar.gz", tiny_teacher_tar)
    storage.put_file("inbox/tiny.jsonl", tiny_dataset)
    try:
        model = mp.upload_model(uri=f"s3://{bucket}/inbox/tiny.tar.gz", name="by-uri")
        assert model.name == "by-uri" and model.size_bytes == tiny_teacher_tar.stat().st_size
        ds = mp.upload_dataset(uri=f"s3://{bucket}/inbox/tiny.jsonl", format="jsonl")
        assert ds.num_rows == 200 and ds.status == "ready"
        with pytest.raises(ValueError, match="either path or uri"):
            mp.upload_dataset()
    finally:
        storage.delete("inbox/tiny.tar.gz")
        storage.delete("inbox/tiny.jsonl")
