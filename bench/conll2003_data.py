"""CoNLL-2003 English NER as bench/conll2003.py uses it: the original column files read
into sentences, IOB1 tags converted to IOB2, and the engine's token-classification
JSONL (``{"tokens": [...], "tags": [int, ...]}``) written from them.

The files (``../shared/data/conll2003``) have one ``token POS chunk NER`` line per word,
a blank line between sentences and ``-DOCSTART-`` lines between documents. Their NER
tags are IOB1: an entity starts with ``I-X`` unless it directly follows another ``X``
entity (then ``B-X``). IOB2 (what seqeval's strict mode, Hugging Face's copy and the
engine expect) starts every entity with ``B-X``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.paths import SHARED_DATA

DATA = SHARED_DATA / "conll2003"
SPLITS = {"train": "eng.train", "validation": "eng.testa", "test": "eng.testb"}
TYPES = ("PER", "LOC", "ORG", "MISC")
# The IOB2 tag set, sorted with "O" first (the order of the teacher's head).
LABELS = ("O", *sorted(f"{p}-{t}" for p in ("B", "I") for t in TYPES))


@dataclass(frozen=True)
class Sentence:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]  # IOB2 tag names


def iob1_to_iob2(tags: list[str] | tuple[str, ...]) -> list[str]:
    """An ``I-X`` that does not continue an ``X`` entity (first word, after ``O`` or
    after another type) starts one: it becomes ``B-X``. ``B-X`` (IOB1's marker between
    two adjacent ``X`` entities) and ``O`` stay as they are."""
    out = []
    previous = "O"
    for tag in tags:
        if tag != "O" and tag[:2] not in ("B-", "I-"):
            raise ValueError(f"not an IOB tag: {tag!r}")
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


def read_conll(path: Path) -> list[Sentence]:
    """Sentences of a CoNLL column file (NER tag = last column), tags as IOB2."""
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            sentences.append(Sentence(tuple(tokens), tuple(iob1_to_iob2(tags))))
        tokens.clear()
        tags.clear()

    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            columns = line.split()
            if not columns:
                flush()
                continue
            if columns[0] == "-DOCSTART-":
                flush()
                continue
            if len(columns) < 2:
                raise ValueError(f"{path.name} line {number}: expected 'token ... tag'")
            tokens.append(columns[0])
            tags.append(columns[-1])
    flush()
    return sentences


def entity_counts(sentences: list[Sentence]) -> dict[str, int]:
    """Entity spans per type (each IOB2 entity starts with exactly one ``B-``)."""
    counts = Counter(t[2:] for s in sentences for t in s.tags if t.startswith("B-"))
    return {t: counts.get(t, 0) for t in TYPES}


def sample(sentences: list[Sentence], n: int | None, seed: int) -> list[Sentence]:
    """All sentences (``n`` None or at least their number), else ``n`` drawn with
    ``seed``, kept in file order."""
    if n is None or n >= len(sentences):
        return list(sentences)
    keep = sorted(random.Random(seed).sample(range(len(sentences)), n))
    return [sentences[i] for i in keep]


def rows(sentences: list[Sentence]) -> list[dict[str, Any]]:
    """The engine's token-classification rows: tags as indices into ``LABELS``."""
    index = {name: i for i, name in enumerate(LABELS)}
    return [{"tokens": list(s.tokens), "tags": [index[t] for t in s.tags]} for s in sentences]


def write_jsonl(path: Path, sentences: list[Sentence]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(sentences)), encoding="utf-8")
    return path


def load_all() -> dict[str, list[Sentence]]:
    """Every split, checked against the tag set."""
    splits = {name: read_conll(DATA / filename) for name, filename in SPLITS.items()}
    seen = {t for sentences in splits.values() for s in sentences for t in s.tags}
    unknown = seen - set(LABELS)
    if unknown:
        raise ValueError(f"tags outside {LABELS}: {sorted(unknown)}")
    return splits
