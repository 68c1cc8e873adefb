"""The vocabulary of a job is written once: no module of the API, the engine or jobspec
writes out a second list of its names (tuples, lists, sets, dict keys and ``Literal``
subscripts of two names or more of one vocabulary list). They derive what they need from
``app/jobspec/vocabulary.py``, or from the family adapters that declare what each family
is, can lose and exports (``app/jobspec/families/``)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from app.jobspec import vocabulary

ROOT = Path(__file__).resolve().parents[3]
SCANNED = ("app", "workers")
# Where the names are declared.
DECLARED = (ROOT / "app" / "jobspec" / "vocabulary.py", ROOT / "app" / "jobspec" / "families")


def _vocabulary_lists() -> dict[str, frozenset[str]]:
    """Every list of names the vocabulary declares: its tuples of strings, and the keys
    of its mappings keyed by strings."""
    lists: dict[str, frozenset[str]] = {}
    for name, value in vars(vocabulary).items():
        if not name.isupper():
            continue
        names = tuple(value) if isinstance(value, dict) else value
        strings = isinstance(names, tuple) and all(isinstance(n, str) for n in names)
        if strings and len(set(names)) >= 2:
            lists[name] = frozenset(names)
    return lists


LISTS = _vocabulary_lists()


def _strings(nodes: list[ast.expr | None]) -> list[str] | None:
    """The elements when every one is a string constant, else None."""
    out = []
    for node in nodes:
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            return None
        out.append(node.value)
    return out


def restated(source: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line, vocabulary list, elements) for each literal collection in ``source`` whose
    elements are two or more names of one vocabulary list."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            elements = _strings(list(node.elts))
        elif isinstance(node, ast.Dict):
            elements = _strings(list(node.keys))
        else:
            continue
        if elements is None or len(set(elements)) < 2:
            continue
        for name, names in LISTS.items():
            if set(elements) <= names:
                yield node.lineno, name, elements
                break


def _sources() -> Iterator[Path]:
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if not any(path == d or path.is_relative_to(d) for d in DECLARED):
                yield path


def test_the_vocabulary_lists_its_names():
    # The lists the check compares against are the real ones.
    for name in ("TASKS", "STRATEGIES", "TARGET_KINDS", "STRUCTURES", "IMPORTANCE", "LOSSES"):
        assert name in LISTS
    assert {"EXPORT_FORMATS", "SPARSITY_PATTERNS", "MODEL_TYPES", "FAMILIES"} <= set(LISTS)
    assert "SPEEDUP_RUNTIMES" in LISTS  # the keys of a mapping


def test_the_check_finds_a_second_list():
    sample = (
        "from typing import Literal\n"
        'CRITERIA = ("taylor", "magnitude")\n'
        'structured: list[Literal["layers", "ffn"]] = []\n'
        'HOLDS = {"sequence-classification": 1, "token-classification": 2}\n'
        'ONE = "taylor"\n'
        'MIXED = ("taylor", "somewhere else")\n'
    )
    found = {(line, name) for line, name, _ in restated(sample)}
    assert found == {(2, "IMPORTANCE"), (3, "STRUCTURES"), (4, "TASKS")}


def test_no_module_writes_a_second_list_of_vocabulary_names():
    second = [
        f"{path.relative_to(ROOT)}:{line}: {elements} restates vocabulary.{name}"
        for path in _sources()
        for line, name, elements in restated(path.read_text(encoding="utf-8"))
    ]
    assert second == [], "\n".join(second)
