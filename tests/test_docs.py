"""The documents stay true to the code: every setting is in docs/operations.md with the
default the code has, every route of the OpenAPI document is in docs/api.md, and every
relative link of the README and docs/ points at a file of this repository (a clone has
nothing outside it)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LINKED = sorted([ROOT / "README.md", ROOT / "bench" / "README.md", *DOCS.glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _rendered(default: object) -> str:
    """A default as operations.md writes it: as one would set the variable."""
    if default is None or default == "":
        return "empty"
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if isinstance(default, list):
        return f"`{json.dumps(default)}`"
    if isinstance(default, Path) and default.parent == Path(tempfile.gettempdir()):
        # The machine's temporary directory (TMPDIR): the docs name it, not this host's.
        return f"`<temp dir>/{default.name}`"
    return f"`{default}`"


def _row(text: str, variable: str) -> list[str] | None:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == f"`{variable}`":
            return cells
    return None


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_operations_md_with_its_default(name):
    variable = f"MODELPRESS_{name.upper()}"
    row = _row((DOCS / "operations.md").read_text(encoding="utf-8"), variable)
    assert row is not None, f"{variable} has no row in docs/operations.md"
    default = Settings.model_fields[name].default
    assert row[1] == _rendered(default), f"{variable}: the code's default is {default!r}"


def test_every_route_is_in_api_md():
    from app.main import create_app

    text = (DOCS / "api.md").read_text(encoding="utf-8")
    routes = [
        f"`{method.upper()} {path}`"
        for path, operations in create_app().openapi()["paths"].items()
        for method in operations
    ]
    assert len(routes) > 20
    missing = [r for r in routes if r not in text]
    assert missing == [], f"routes missing from docs/api.md: {missing}"


# The engine's rules the API answers with as they are (app/jobs/validation.py); not
# app/jobspec/values.py, whose errors the request schema answers as validation_error.
RULES = [p for p in (ROOT / "app" / "jobspec").rglob("*.py") if p.name != "values.py"]


def _error_codes() -> set[str]:
    """The `code`s app/ can answer with, as written in its source: the second argument of
    ProblemError(...) and problem_response(...), the first of the engine rules'
    EngineInputError(...), and `code=` arguments and defaults of the helpers that build
    them (codes made with f-strings are not seen)."""
    import ast

    codes: set[str] = set()

    def constant(node: ast.AST | None) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            codes.add(node.value)

    service = [p for p in (ROOT / "app").rglob("*.py") if "jobspec" not in p.parts]
    for path in [*service, *RULES]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in ("ProblemError", "problem_response") and len(node.args) >= 2:
                    constant(node.args[1])
                if name == "EngineInputError" and node.args:
                    constant(node.args[0])
                for keyword in node.keywords:
                    if keyword.arg == "code":
                        constant(keyword.value)
            elif isinstance(node, ast.FunctionDef):
                args = node.args
                for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
                    if arg.arg == "code":
                        constant(default)
    return codes


def test_every_error_code_is_in_api_md():
    codes = _error_codes()
    assert {
        "validation_error",
        "target_unreachable",
        "dataset_invalid",
        "not_supported_yet",
    } <= codes
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    missing = sorted(c for c in codes if f"`{c}`" not in text)
    assert missing == [], f"error codes missing from docs/api.md: {missing}"


def _slug(heading: str) -> str:
    # GitHub's anchors: lower case, punctuation dropped, spaces to hyphens.
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    return {
        _slug(line.lstrip("#"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }


def _relative_links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no links
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("doc", LINKED, ids=[str(p.relative_to(ROOT)) for p in LINKED])
def test_relative_links_point_at_files_of_the_repository(doc):
    broken = []
    for target in _relative_links(doc):
        file_part, _, fragment = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        missing = not resolved.is_relative_to(ROOT) or not resolved.exists()
        anchored = fragment and resolved.suffix == ".md"
        if missing or (anchored and fragment not in _anchors(resolved)):
            broken.append(target)
    assert broken == [], f"{doc.relative_to(ROOT)}: broken links {broken}"


def test_no_document_points_at_the_design_notes_outside_the_repository():
    for doc in LINKED:
        assert "shared/design" not in doc.read_text(encoding="utf-8"), doc


def test_the_readme_links_every_design_document():
    links = {target.partition("#")[0] for target in _relative_links(ROOT / "README.md")}
    for doc in ("architecture.md", "api.md", "engine.md", "operations.md"):
        assert f"docs/{doc}" in links, f"README.md does not link docs/{doc}"


def test_the_link_check_catches_what_it_should(tmp_path):
    """The check itself: an outside link, a missing file and a missing anchor fail."""
    doc = DOCS / "api.md"
    assert "#conventions" in {f"#{a}" for a in _anchors(doc)}
    sample = tmp_path / "x.md"
    sample.write_text("[a](../shared/design/API.md) [b](https://example.com) [c](#x)\n")
    assert _relative_links(sample) == ["../shared/design/API.md", "#x"]
    assert not (sample.parent / "../shared/design/API.md").resolve().is_relative_to(ROOT)
