"""IOB tags for token classification: checks, IOB1 -> IOB2, and the label order.

IOB2 starts every entity with ``B-X``. IOB1 (the CoNLL-2003 files) uses ``B-X`` only
between two adjacent entities of one type, so an entity usually starts with ``I-X``;
rewriting each ``I-X`` that starts an entity as ``B-X`` gives IOB2 and leaves IOB2
tags unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

OUTSIDE = "O"
_TAG = re.compile(r"(?:O|[BI]-\S+)")


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not an IOB tag, or None when it is one."""
    if _TAG.fullmatch(tag):
        return None
    return f"{tag!r} is not an IOB2 tag; tags are O, B-TYPE or I-TYPE (e.g. B-PER, I-PER)"


def to_iob2(tags: list[str]) -> tuple[list[str], int]:
    """The sentence's tags in IOB2, and how many were rewritten."""
    out: list[str] = []
    changed = 0
    prev = OUTSIDE
    for tag in tags:
        if tag.startswith("I-") and (prev == OUTSIDE or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
            changed += 1
        out.append(tag)
        prev = tag
    return out, changed


def label_order(tags: Iterable[str]) -> list[str]:
    """``O``, then ``B-X``, ``I-X`` for each entity type in name order.

    Both tags of every type are listed even when one never occurs, so the model's
    head can tag any entity of a type it has seen.
    """
    types = sorted({t[2:] for t in tags if t != OUTSIDE})
    return [OUTSIDE] + [f"{p}-{t}" for t in types for p in ("B", "I")]
