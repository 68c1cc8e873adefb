"""Downloads: streamed through the API, or a short-lived pre-signed URL on request."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlparse

import httpx

from tests.apiclient import assert_problem


def test_listed_and_streamed(client, artifact):
    jid, data = artifact
    listed = client.get(f"/v1/jobs/{jid}/artifacts").json()["data"]
    assert listed[0]["name"] == "report" and listed[0]["size_bytes"] == len(data)
    assert listed[0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert listed[0]["download_url"].endswith(f"/v1/jobs/{jid}/artifacts/report")
    r = client.get(f"/v1/jobs/{jid}/artifacts/report")
    assert r.status_code == 200 and r.content == data
    assert r.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert 'filename="report.json"' in r.headers["content-disposition"]


def test_presigned_redirect_is_short_lived(client, artifact):
    jid, data = artifact
    r = client.get(
        f"/v1/jobs/{jid}/artifacts/report", params={"redirect": "true"}, follow_redirects=False
    )
    assert r.status_code == 307
    url = r.headers["location"]
    query = parse_qs(urlparse(url).query)
    assert query["X-Amz-Expires"] == ["300"]
    assert "X-Amz-Signature" in query  # SigV4: the lifetime is part of what is signed
    assert httpx.get(url).content == data  # the store serves it without our API key


def test_file_storage_does_not_presign(tmp_path):
    from app.storage import FileStorage

    assert FileStorage(tmp_path).presign("a/b", expires_s=300, filename="b") is None


def test_missing_object_is_410(client, artifact):
    from app.storage import get_storage

    jid, _ = artifact
    get_storage().delete(f"jobs/{jid}/1/report.json")
    assert_problem(client.get(f"/v1/jobs/{jid}/artifacts/report"), 410, "artifact_gone")
