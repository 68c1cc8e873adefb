"""Which task an upload is for and which columns hold its data: named in the form, or
found by their usual names."""

from __future__ import annotations

from dataclasses import dataclass

from app.datasets.formats import TASKS
from app.datasets.problems import bad_file
from app.jobspec.vocabulary import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION

SEQUENCE = SEQUENCE_CLASSIFICATION
TOKEN = TOKEN_CLASSIFICATION

# Usual names, in order of preference, matched case-insensitively.
TEXT_NAMES = ("text", "sentence", "content")
LABEL_NAMES = ("label", "labels", "target")
TOKENS_NAMES = ("tokens", "words")
TAGS_NAMES = ("tags", "ner_tags", "labels")


@dataclass
class ColumnRequest:
    """What the upload form says (None: not given)."""

    task: str | None = None
    text: str | None = None
    label: str | None = None
    tokens: str | None = None
    tags: str | None = None


@dataclass
class Columns:
    task: str
    names: dict[str, str]  # role (text, label, tokens, tags) -> column in the file


def _listing(found: list[str]) -> str:
    shown = ", ".join(repr(c) for c in found[:20])
    return shown + (f" and {len(found) - 20} more" if len(found) > 20 else "")


def _infer_task(fmt: str, found: list[str], req: ColumnRequest) -> str:
    allowed = TASKS[fmt]
    if req.task is not None:
        return req.task
    if len(allowed) == 1:
        return allowed[0]
    if req.tokens or req.tags:
        return TOKEN
    if req.text or req.label:
        return SEQUENCE
    lower = {c.lower() for c in found}
    return TOKEN if any(n in lower for n in TOKENS_NAMES) else SEQUENCE


def choose_columns(
    fmt: str, found: list[str], req: ColumnRequest, *, header_line: int | None
) -> Columns:
    task = _infer_task(fmt, found, req)
    if task not in TASKS[fmt]:
        can = " or ".join(TASKS[fmt])
        use = ", ".join(f for f, tasks in TASKS.items() if task in tasks)
        raise bad_file(
            f"A {fmt} file holds {can} data, not {task}; for {task} upload one of: {use}.",
            param="task",
        )
    roles = (
        (("tokens", TOKENS_NAMES), ("tags", TAGS_NAMES))
        if task == TOKEN
        else (("text", TEXT_NAMES), ("label", LABEL_NAMES))
    )
    wanted = {role for role, _ in roles}
    for role in ("text", "label", "tokens", "tags"):
        if getattr(req, role) is not None and (role not in wanted or fmt == "conll"):
            hint = (
                "CoNLL columns are positional: the token first, the tag as set by tag_index"
                if fmt == "conll"
                else f"it applies to {SEQUENCE if role in ('text', 'label') else TOKEN} data"
            )
            raise bad_file(
                f"{role}_column does not apply to this {task} upload; {hint}.",
                param=f"{role}_column",
            )

    where = f"line {header_line}: " if header_line is not None else ""
    names: dict[str, str] = {}
    for role, usual in roles:
        given = getattr(req, role)
        field = f"{role}_column"
        if given is not None:
            if given not in found:
                raise bad_file(
                    f"{where}the file has no column {given!r} (its columns: "
                    f"{_listing(found)}); set {field} to one of them.",
                    param=field,
                )
            names[role] = given
            continue
        by_lower: dict[str, str] = {}
        for c in found:
            by_lower.setdefault(c.lower(), c)
        match = next((by_lower[n] for n in usual if n in by_lower), None)
        if match is None:
            raise bad_file(
                f"{where}no {role} column found: looked for {', '.join(usual)}, and the file "
                f"has {_listing(found)}; name the column with {field}.",
                param=field,
            )
        names[role] = match
    first, second = (names[role] for role, _ in roles)
    if first == second:
        raise bad_file(
            f"The {roles[0][0]} and {roles[1][0]} columns are both {first!r}; "
            "they must be two different columns.",
            param=f"{roles[1][0]}_column",
        )
    return Columns(task=task, names=names)
