"""app/jobspec/ is below the rest of the API and the engine both: it imports neither
(nor the rest of app/), nor torch. It lives in app/ because the repository's top level
is fixed; the engine may import app.jobspec and nothing else of app/
(tests/engine/test_imports.py)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _above(module: str) -> bool:
    return module.split(".")[0] == "workers" or (
        module.split(".")[0] == "app" and not module.startswith("app.jobspec")
    )


def test_jobspec_imports_neither_the_api_nor_the_engine():
    above = []
    for path in sorted((ROOT / "app" / "jobspec").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            where = path.relative_to(ROOT)
            above += [f"{where}: {n}" for n in names if _above(n)]
    assert above == []


def test_jobspec_loads_no_torch():
    code = (
        "import sys, json, pkgutil, importlib, app.jobspec as jobspec\n"
        "for m in pkgutil.walk_packages(jobspec.__path__, 'app.jobspec.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = {m.split(".")[0] for m in modules}
    assert not loaded & {"torch", "transformers", "fastapi", "sqlalchemy", "celery", "workers"}
    rest_of_app = [m for m in modules if m.startswith("app.") and not m.startswith("app.jobspec")]
    assert rest_of_app == []
