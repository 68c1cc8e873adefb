"""Size limits, archive caps and quotas: refused early, with problem+json naming the limit."""

from __future__ import annotations

import io
import json
import select
import socket
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.apiclient import assert_problem, job_body, make_key, upload_dataset, upload_model

LIMIT = 1_000_000


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    # autouse: the real server (tests/apiserver.py) reads the limit per request.
    from app.settings import get_settings

    s = get_settings()  # the one object the API and the guard read
    monkeypatch.setattr(s, "max_upload_bytes", LIMIT)
    return s


def _head(port: int, key: str, extra: str) -> bytes:
    return (
        f"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n"
        f"{extra}\r\n"
    ).encode()


def _status(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body[body.index(b"{") :])


def test_declared_length_over_the_limit_is_refused_before_the_body(server, tenant):
    host, port = server
    key = make_key(tenant)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(_head(port, key, f"Content-Length: {50 * LIMIT}\r\n"))
        # not one byte of the 50 MB body is sent: the answer comes anyway
        status, body = _status(sock)
    assert status == 413 and body["code"] == "upload_too_large"


def test_chunked_body_is_cut_off_at_the_limit(server, tenant):
    host, port = server
    key = make_key(tenant)
    part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="d.jsonl"\r\n\r\n'
    sent = 0
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(_head(port, key, "Transfer-Encoding: chunked\r\n"))
        chunk = part + b'{"text": "x", "label": 0}\n' * 2000  # ~54 kB
        while sent < 50 * LIMIT:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            chunk = b'{"text": "x", "label": 0}\n' * 2000
            time.sleep(0.002)
        status, body = _status(sock)
    assert status == 413 and body["code"] == "upload_too_large"
    # the server stopped reading near the limit, not after 50 MB
    assert sent < 5 * LIMIT


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_archive_member_cap(client, settings, tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "max_archive_members", 5)
    members = {f"f{i}.txt": b"x" for i in range(10)} | {"config.json": b"{}"}
    r = upload_model(client, _zip(tmp_path / "many.zip", members))
    assert_problem(r, 413, "archive_too_many_members", "file")


def test_zip_bomb_is_refused(client, settings, tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "max_archive_bytes", LIMIT)
    bomb = _zip(
        tmp_path / "bomb.zip", {"config.json": b"{}", "model.safetensors": bytes(40 * LIMIT)}
    )
    assert bomb.stat().st_size < LIMIT // 10  # small upload, 40x the cap unpacked
    assert_problem(upload_model(client, bomb), 413, "archive_too_large", "file")
    assert client.get("/v1/models").json()["data"] == []


def test_tar_bomb_is_refused(client, settings, tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "max_archive_bytes", LIMIT)
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, size in (("config.json", 2), ("model.safetensors", 40 * LIMIT)):
            info = tarfile.TarInfo(name)
            info.size = size
            tf.addfile(info, io.BytesIO(bytes(size)))
    assert_problem(upload_model(client, path), 413, "archive_too_large", "file")


def test_active_jobs_quota(client, settings, model_id, dataset_id, monkeypatch):
    monkeypatch.setattr(settings, "tenant_max_active_jobs", 2)
    ids = [
        client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"] for _ in range(2)
    ]
    r = client.post("/v1/jobs", json=job_body(model_id, dataset_id))
    body = assert_problem(r, 429, "quota_active_jobs")
    assert "MODELPRESS_TENANT_MAX_ACTIVE_JOBS" in body["detail"]
    assert r.headers["retry-after"]
    client.post(f"/v1/jobs/{ids[0]}/cancel")
    assert client.post("/v1/jobs", json=job_body(model_id, dataset_id)).status_code == 202


def test_stored_bytes_quota(client, settings, tiny_dataset, tiny_teacher_tar, monkeypatch):
    first = upload_dataset(client, tiny_dataset)
    assert first.status_code == 201
    monkeypatch.setattr(
        settings,
        "tenant_max_stored_bytes",
        first.json()["size_bytes"] + tiny_dataset.stat().st_size - 1,
    )
    body = assert_problem(upload_dataset(client, tiny_dataset), 403, "quota_stored_bytes")
    assert "MODELPRESS_TENANT_MAX_STORED_BYTES" in body["detail"]
    assert_problem(upload_model(client, tiny_teacher_tar), 403, "quota_stored_bytes")
    assert len(client.get("/v1/datasets").json()["data"]) == 1


def test_body_shorter_than_its_declared_length_is_a_408_and_stores_nothing(
    server, tenant, client, settings, monkeypatch
):
    """A client that declares more bytes than it sends and then waits (a buggy client,
    a stalled proxy): refused once nothing more comes, nothing kept, the server free."""
    from app.storage import get_storage

    monkeypatch.setattr(settings, "body_read_timeout_seconds", 1.0)
    host, port = server
    key = make_key(tenant)
    before = len(get_storage().list("datasets/"))
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="d.jsonl"\r\n\r\n'
        + b'{"text": "x", "label": 0}\n' * 10
    )
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(_head(port, key, f"Content-Length: {len(body) + 5000}\r\n") + body)
        status, problem = _status(sock)
    assert status == 408 and problem["code"] == "body_incomplete", problem
    assert f"{len(body)} of the {len(body) + 5000} bytes" in problem["detail"]
    assert time.monotonic() - started < 8
    assert client.get("/v1/datasets").json()["data"] == []
    assert len(get_storage().list("datasets/")) == before


def test_the_body_timeout_does_not_cut_a_long_response_stream(
    server, tenant, client, settings, monkeypatch, model_id, dataset_id
):
    """The timeout is for bodies still arriving: an event stream that stays open longer
    than it is not cut (its receive() waits for the client to leave)."""
    import httpx

    monkeypatch.setattr(settings, "body_read_timeout_seconds", 0.5)
    jid = client.post("/v1/jobs", json=job_body(model_id, dataset_id)).json()["id"]
    host, port = server
    key = make_key(tenant)
    lines = []
    started = time.monotonic()
    with httpx.stream(
        "GET",
        f"http://{host}:{port}/v1/jobs/{jid}/events",
        headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream"},
        timeout=3,
    ) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.ReadTimeout):  # open and quiet: the job waits in line
            for line in r.iter_lines():
                lines.append(line)
    assert time.monotonic() - started >= 3.0  # open for six times the body timeout
    assert any(line.startswith("data:") for line in lines)
    # An ended job ends its stream: the server's thread returns instead of polling on,
    # and the server stops at once.
    client.post(f"/v1/jobs/{jid}/cancel")
