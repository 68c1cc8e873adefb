"""jobspec/ is below the API and the engine both: it imports neither, nor torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_jobspec_imports_neither_the_api_nor_the_engine():
    above = []
    for path in sorted((ROOT / "jobspec").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            where = path.relative_to(ROOT)
            above += [f"{where}: {n}" for n in names if n.split(".")[0] in ("app", "workers")]
    assert above == []


def test_jobspec_loads_no_torch():
    code = (
        "import sys, json, pkgutil, importlib, jobspec\n"
        "for m in pkgutil.walk_packages(jobspec.__path__, 'jobspec.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}
    assert not loaded & {"torch", "transformers", "fastapi", "sqlalchemy", "celery", "app"}
