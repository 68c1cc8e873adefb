"""What both dataset builders share: split names, the held-out split, duplicate counting,
the normalised split files and the parse result."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from app.datasets.problems import bad_row
from app.errors import ProblemError

HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0
HOLDOUT_SPLIT = "validation"
# Duplicates are counted over this many distinct rows (8 bytes each, plus the set's
# own overhead); past it a row is only compared with those.
MAX_TRACKED_ROWS = 1_000_000


@dataclass
class ParsedDataset:
    task: str
    splits: dict[str, Path]
    counts: dict[str, int]
    label_names: list[str]
    split_generated: bool
    columns: dict[str, str] = field(default_factory=dict)
    duplicate_rows: int = 0
    iob1_converted: int = 0
    # split -> label name -> rows (classification) or tags (token classification)
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)


def row_split(value: Any, where: int, unit: str, default: str) -> str:
    """The split a row names in its ``split`` column, or ``default``."""
    if value is None or value == "":
        return default
    if not isinstance(value, str) or not value.isidentifier():
        raise bad_row(
            where, "must be a split name such as train or validation", column="split", unit=unit
        )
    return value


def plan_holdout(split_counts: Counter[str], n: int) -> set[int] | None:
    """The row numbers (0-based) to hold out, or None when the file gives its splits."""
    if set(split_counts) != {"train"}:
        return None
    if n < 2:
        raise ProblemError(
            422, "dataset_too_small", "At least 2 rows are needed to hold some out.", param="file"
        )
    k = max(1, round(n * HOLDOUT_FRACTION))
    return set(random.Random(HOLDOUT_SEED).sample(range(n), k))


class Duplicates:
    """Counts rows equal to an earlier row (kept: a user may mean them)."""

    def __init__(self, cap: int = MAX_TRACKED_ROWS) -> None:
        self.cap = cap
        self.seen: set[bytes] = set()
        self.count = 0

    def add(self, *parts: Any) -> None:
        key = hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).digest()
        if key in self.seen:
            self.count += 1
        elif len(self.seen) < self.cap:
            self.seen.add(key)


class SplitWriter:
    """One normalised JSONL file per split under ``out_dir``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.files: dict[str, IO[str]] = {}
        self.counts: Counter[str] = Counter()
        self.label_ids: dict[str, Counter[int]] = {}

    def __enter__(self) -> SplitWriter:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for f in self.files.values():
            f.close()

    def write(self, split: str, record: dict[str, Any]) -> None:
        if split not in self.files:
            self.files[split] = open(self.out_dir / f"{split}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self.files[split].write(json.dumps(record) + "\n")
        self.counts[split] += 1
        ids = self.label_ids.setdefault(split, Counter())
        if "label" in record:
            ids[record["label"]] += 1
        else:
            ids.update(record["tags"])

    def label_counts(self, names: list[str]) -> dict[str, dict[str, int]]:
        """Per split, how often each label (or tag) occurs, by name; 0 for the names a
        split lacks, so a label missing from training shows as such."""
        return {
            split: {name: ids[i] for i, name in enumerate(names)}
            for split, ids in sorted(self.label_ids.items())
        }

    def paths(self) -> dict[str, Path]:
        return {name: self.out_dir / f"{name}.jsonl" for name in self.counts}
