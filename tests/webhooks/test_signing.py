from __future__ import annotations

import hashlib
import hmac

from app.webhooks.signing import new_secret, signature_header, verify


def test_signature_is_hmac_of_timestamp_dot_body():
    secret, body = new_secret(), b'{"type":"job.succeeded"}'
    header = signature_header(secret, body, timestamp=1_700_000_000)
    expected = hmac.new(secret.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify(secret, body, header, now=1_700_000_010)


def test_verify_refuses_tampering_other_secrets_and_replays():
    secret, body = new_secret(), b"{}"
    header = signature_header(secret, body, timestamp=1_700_000_000)
    assert not verify(secret, b"{ }", header, now=1_700_000_000)
    assert not verify(new_secret(), body, header, now=1_700_000_000)
    assert not verify(secret, body, header, now=1_700_000_000 + 301)  # outside 5 minutes
    assert not verify(secret, body, "v1=abc", now=1_700_000_000)
    assert not verify(
        secret, body, header.replace("t=1700000000", "t=1700000001"), now=1_700_000_000
    )


def test_secrets_differ():
    assert new_secret() != new_secret() and new_secret().startswith("whsec_")
