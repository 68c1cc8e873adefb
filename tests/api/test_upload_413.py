"""An upload over MODELPRESS_MAX_UPLOAD_BYTES: every ordinary client reads the 413
problem+json, not a connection reset (issue #15, item 7)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from tests.apiclient import make_key

LIMIT = 1_000_000
BODY = 6 * LIMIT  # under the drain cap: read and dropped, then answered


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    from app.settings import get_settings

    s = get_settings()
    monkeypatch.setattr(s, "max_upload_bytes", LIMIT)
    return s


@pytest.fixture
def target(server, tenant) -> tuple[str, dict[str, str]]:
    host, port = server
    headers = {
        "Authorization": f"Bearer {make_key(tenant)}",
        "Content-Type": "multipart/form-data; boundary=XyZ",
    }
    return f"http://{host}:{port}/v1/datasets", headers


PART = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="d.jsonl"\r\n\r\n'


def _body(total: int = BODY) -> bytes:
    # A dataset upload's start, so that the route reads the body (a chunked one is only
    # counted as it is read).
    return PART + b"x" * (total - len(PART))


def _chunks(total: int = BODY, size: int = 64 * 1024) -> Iterator[bytes]:
    body = _body(total)
    for start in range(0, total, size):
        yield body[start : start + size]


def _assert_413(status: int, body: bytes | str) -> None:
    assert status == 413, body
    assert json.loads(body)["code"] == "upload_too_large"


# A body with its length declared (urllib sends no Expect), or chunked with none.
BODIES = {"declared": lambda: _body(), "chunked": lambda: _chunks()}


@pytest.mark.parametrize("kind", BODIES)
def test_urllib_reads_the_413(target, kind):
    url, headers = target
    request = urllib.request.Request(url, data=BODIES[kind](), headers=headers, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    _assert_413(caught.value.code, caught.value.read())


@pytest.mark.parametrize("kind", BODIES)
def test_requests_reads_the_413(target, kind):
    url, headers = target
    r = requests.post(url, data=BODIES[kind](), headers=headers, timeout=30)
    _assert_413(r.status_code, r.content)


@pytest.mark.parametrize("kind", BODIES)
def test_httpx_reads_the_413(target, kind):
    url, headers = target
    r = httpx.post(url, content=BODIES[kind](), headers=headers, timeout=30)
    _assert_413(r.status_code, r.content)


def _curl(url: str, headers: dict[str, str], *args: str) -> tuple[int, bytes, int]:
    """(status, body, bytes curl sent of the body)."""
    argv = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{size_upload}", "-X", "POST"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, *args, url], capture_output=True, timeout=60, check=True)
    body, _, tail = out.stdout.rpartition(b"\n")
    status, uploaded = tail.split()
    return int(status), body, int(uploaded)


@pytest.fixture
def big_file(tmp_path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(_body())
    return path


def test_curl_with_expect_100_continue_gets_the_413_without_sending_the_body(target, big_file):
    url, headers = target
    status, body, uploaded = _curl(url, headers, "--data-binary", f"@{big_file}")
    _assert_413(status, body)
    assert uploaded < LIMIT, uploaded  # no 100 Continue came, so curl kept the body


def test_curl_without_expect_reads_the_413(target, big_file):
    url, headers = target
    status, body, _ = _curl(url, headers, "-H", "Expect:", "--data-binary", f"@{big_file}")
    _assert_413(status, body)


def test_chunked_curl_reads_the_413(target, big_file):
    url, headers = target
    status, body, _ = _curl(
        url, headers, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{big_file}"
    )
    _assert_413(status, body)


def test_a_body_over_the_drain_cap_is_not_read(target, settings, monkeypatch):
    """The drain is bounded: past MODELPRESS_MAX_DRAIN_BYTES the server closes at once,
    and a client that reads only after sending gets a reset (documented in the README)."""
    monkeypatch.setattr(settings, "max_drain_bytes", 2 * LIMIT)
    url, headers = target
    request = urllib.request.Request(url, data=_body(), headers=headers, method="POST")
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert not isinstance(caught.value, urllib.error.HTTPError)
    assert isinstance(caught.value.reason, ConnectionError), caught.value


def test_a_chunked_body_is_drained_only_up_to_the_cap(target, settings, monkeypatch):
    monkeypatch.setattr(settings, "max_drain_bytes", 2 * LIMIT)
    url, headers = target
    request = urllib.request.Request(url, data=_chunks(20 * LIMIT), headers=headers, method="POST")
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert isinstance(caught.value.reason, ConnectionError), caught.value


def test_an_upload_with_a_bad_key_reads_the_401(target):
    """Refused before the body is read, like the 413, and drained the same way."""
    url, headers = target
    headers = {**headers, "Authorization": "Bearer mp_not_a_key"}
    request = urllib.request.Request(url, data=_body(), headers=headers, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 401
    assert json.loads(caught.value.read())["code"] == "invalid_api_key"
