"""Import boundaries: the API may import the engine's spec types, the vocabulary and the
planner without torch, and the engine never imports web, database or queue libraries
(nor app/ beyond app.jobspec: tests/app/jobspec/test_imports.py and
tests/app/test_layering.py check the rest of the layering)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("fastapi", "starlette", "sqlalchemy", "celery", "kombu", "redis", "app")


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_spec_vocabulary_and_plan_do_not_import_torch() -> None:
    # plan.py too: the API can say what a target produces from a config.json alone.
    loaded = _loaded_after("import app.jobspec.vocabulary, workers.engine.spec, app.jobspec.plan")
    assert "torch" not in loaded
    assert "transformers" not in loaded


def test_engine_imports_no_service_libraries() -> None:
    loaded = _loaded_after("import workers.engine.compress")
    assert "torch" in loaded  # sanity: the engine itself was imported
    # app.jobspec (and the package app above it) is the torch-free ground both build on.
    below = {m for m in loaded if m == "app" or m == "app.jobspec" or m.startswith("app.jobspec.")}
    leaked = {m for m in loaded if m.split(".")[0] in FORBIDDEN} - below
    assert not leaked
