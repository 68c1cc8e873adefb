"""app/ is the ground floor that workers/ builds on: no module of the API imports
workers/ (the vocabulary, the family adapters and the planner are app/jobspec/, below both;
jobs are sent to the broker by task name, app/broker.py). The one exception is the CLI,
the entry point of the API and of the worker both: the commands that start a worker or
run the engine locally import it, lazily, inside those commands."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# (module, function that imports it, what it imports): the CLI commands that start the
# worker (`modelpress worker`, and `serve` through it) and run the engine on a spec
# file (`modelpress compress`).
ALLOWED = {
    ("app/cli.py", "run_worker", "workers.celery_app"),
    ("app/cli.py", "run_worker", "workers.engine.compress"),
    ("app/cli.py", "main", "workers.compress_cli"),
}


def imports_of_workers(source: str) -> Iterator[tuple[str, str]]:
    """(enclosing function or "<module>", imported module) for every import of workers/."""

    def visit(node: ast.AST, where: str) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            inside = where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inside = child.name
            if isinstance(child, ast.Import):
                modules = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                modules = [child.module or ""]
            else:
                modules = []
            yield from ((inside, m) for m in modules if m.split(".")[0] == "workers")
            yield from visit(child, inside)

    yield from visit(ast.parse(source), "<module>")


def test_no_module_of_the_api_imports_workers_but_the_cli_entry_points():
    found = {
        (str(path.relative_to(ROOT)), where, module)
        for path in sorted((ROOT / "app").rglob("*.py"))
        for where, module in imports_of_workers(path.read_text(encoding="utf-8"))
    }
    assert found - ALLOWED == set()
    assert found >= ALLOWED, "an allowed import is gone: drop it from ALLOWED"


def test_the_check_sees_every_form_of_import():
    sample = (
        "import workers.celery_app\n"
        "from workers.engine import spec\n"
        "def go():\n"
        "    from workers import tasks\n"
        "import app.jobspec.vocabulary\n"
    )
    assert set(imports_of_workers(sample)) == {
        ("<module>", "workers.celery_app"),
        ("<module>", "workers.engine"),
        ("go", "workers"),
    }
