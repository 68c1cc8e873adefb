"""What the API does at start-up so that requests do not: the database driver and the
broker's client loaded, and what start-up loaded kept out of the collector's scans
(app.main). Each in a fresh interpreter, since this one has imported everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.e2e.conftest import free_port

SERVE_AND_POLL = textwrap.dedent(
    """
    import gc, json, sys
    from fastapi.testclient import TestClient
    from app.main import create_app
    from tests.apiclient import make_key

    key = make_key("startup-test")
    app = create_app()
    with TestClient(app) as c:
        frozen, loaded = gc.get_freeze_count(), set(sys.modules)
        c.headers["Authorization"] = f"Bearer {key}"
        answers = [c.get(p).status_code for p in ("/v1/jobs", "/v1/jobs/job_x", "/v1/models")]
        new = sorted(set(sys.modules) - loaded)
    print(json.dumps({"frozen": frozen, "new": new, "answers": answers,
                      "after": gc.get_freeze_count()}))
    """
)


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_request_after_start_up_loads_no_module_and_start_up_is_frozen(stack):
    done = _run(SERVE_AND_POLL)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["answers"] == [200, 404, 200]
    # The driver (psycopg), the dialect and the broker's client came in at start-up.
    assert seen["new"] == []
    assert seen["frozen"] > 50_000  # the imports, out of every full collection
    assert seen["after"] == 0  # and back in reach once the app stops


def test_the_api_starts_while_the_database_does_not_answer():
    code = textwrap.dedent(
        """
        from fastapi.testclient import TestClient
        from app.main import create_app
        with TestClient(create_app()) as c:
            r = c.get("/v1/jobs", headers={"Authorization": "Bearer mp_x"})
            print(r.status_code, r.json()["code"])
        """
    )
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"
    done = _run(code, MODELPRESS_DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["503", "database_unavailable"]
    assert "the database does not answer yet" in done.stderr
