"""The receiver's verification code in the README works on what the service signs."""

from __future__ import annotations

import re
from pathlib import Path

from app.webhooks.signing import new_secret, signature_header

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_verify():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "def verify(secret" in b]
    assert len(code.strip().splitlines()) <= 10
    namespace: dict = {}
    exec(code, namespace)
    return namespace["verify"]


def test_readme_verify_accepts_ours_and_refuses_the_rest():
    verify = _readme_verify()
    secret, body = new_secret(), b'{"type":"job.succeeded","event_id":7}'
    header = signature_header(secret, body)
    assert verify(secret, body, header)
    assert not verify(secret, body + b" ", header)
    assert not verify(new_secret(), body, header)
    old = signature_header(secret, body, timestamp=1_700_000_000)
    assert not verify(secret, body, old)  # outside the replay window
    assert not verify(secret, body, "garbage")
