"""Read and validate a JSONL classification dataset in two streaming passes.

Pass 1 checks every line and collects the label set; pass 2 writes one normalised
JSONL file per split (``{"text": str, "label": int}``), so the whole file is never
held in memory. When the file names no held-out split, one is drawn with a fixed seed.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ProblemError

HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0
MAX_LABELS = 1000


@dataclass
class ParsedDataset:
    splits: dict[str, Path]
    counts: dict[str, int]
    label_names: list[str]
    split_generated: bool


def _bad(line: int, detail: str, column: str | None = None) -> ProblemError:
    where = f"line {line}" + (f", column {column!r}" if column else "")
    return ProblemError(
        422,
        "dataset_invalid",
        f"{where}: {detail}",
        param="file",
        errors=[{"line": line, "column": column, "message": detail}],
    )


def _rows(path: Path, text_col: str, label_col: str):
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _bad(lineno, "is not UTF-8 text; save the file as UTF-8") from e
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise _bad(
                    lineno, f"is not a JSON object ({e.msg}); JSONL needs one JSON object per line"
                ) from e
            if not isinstance(row, dict):
                raise _bad(lineno, "is not a JSON object; JSONL needs one JSON object per line")
            text = row.get(text_col)
            if text_col not in row:
                raise _bad(lineno, "is missing", text_col)
            if not isinstance(text, str) or not text.strip():
                raise _bad(lineno, "must be a non-empty string", text_col)
            if label_col not in row:
                raise _bad(lineno, "is missing", label_col)
            label = row[label_col]
            if isinstance(label, bool) or not isinstance(label, int | str):
                raise _bad(lineno, "must be an integer or a string", label_col)
            split = row.get("split")
            if split is not None and (not isinstance(split, str) or not split.isidentifier()):
                raise _bad(lineno, "must be a split name such as train or validation", "split")
            yield lineno, text, label, split


def parse_jsonl(
    path: Path,
    out_dir: Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_names: list[str] | None = None,
) -> ParsedDataset:
    labels: Counter[Any] = Counter()
    split_counts: Counter[str] = Counter()
    n = 0
    kinds: set[type] = set()
    for _lineno, _text, label, split in _rows(path, text_column, label_column):
        n += 1
        labels[label] += 1
        kinds.add(type(label))
        split_counts[split or "train"] += 1
        if len(labels) > MAX_LABELS:
            raise _bad(_lineno, f"more than {MAX_LABELS} distinct labels", label_column)
    if n == 0:
        raise ProblemError(422, "dataset_empty", "The file has no rows.", param="file")
    if len(kinds) > 1:
        raise ProblemError(
            422,
            "dataset_invalid",
            f"Column {label_column!r} mixes integers and strings; use one kind.",
            param="file",
        )

    if label_names is not None:
        index = {name: i for i, name in enumerate(label_names)}
        for label in labels:
            if isinstance(label, int) and not 0 <= label < len(label_names):
                raise ProblemError(
                    422,
                    "dataset_invalid",
                    f"Label {label} is out of range for {len(label_names)} label_names.",
                    param="label_names",
                )
            if isinstance(label, str) and label not in index:
                raise ProblemError(
                    422,
                    "dataset_invalid",
                    f"Label {label!r} is not one of label_names.",
                    param="label_names",
                )
        names = list(label_names)
    elif kinds == {str}:
        names = sorted(labels)
        index = {name: i for i, name in enumerate(names)}
    else:
        if min(labels) < 0:
            raise ProblemError(
                422,
                "dataset_invalid",
                f"Integer labels must be >= 0 (found {min(labels)}).",
                param="file",
            )
        names = [str(i) for i in range(max(labels) + 1)]
        index = {}
    if len(labels) < 2:
        raise ProblemError(
            422,
            "dataset_invalid",
            f"Column {label_column!r} has one class only; a classifier needs at least two.",
            param="file",
        )

    generated = set(split_counts) == {"train"}
    holdout: set[int] = set()
    if generated:
        if n < 2:
            raise ProblemError(
                422,
                "dataset_too_small",
                "At least 2 rows are needed to hold some out.",
                param="file",
            )
        k = max(1, round(n * HOLDOUT_FRACTION))
        holdout = set(random.Random(HOLDOUT_SEED).sample(range(n), k))

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    counts: Counter[str] = Counter()
    try:
        for i, (_lineno, text, label, split) in enumerate(_rows(path, text_column, label_column)):
            name = ("validation" if i in holdout else "train") if generated else (split or "train")
            if name not in files:
                files[name] = open(out_dir / f"{name}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
            label_id = index[label] if isinstance(label, str) else label
            files[name].write(json.dumps({"text": text, "label": label_id}) + "\n")
            counts[name] += 1
    finally:
        for f in files.values():
            f.close()
    return ParsedDataset(
        splits={name: out_dir / f"{name}.jsonl" for name in counts},
        counts=dict(counts),
        label_names=names,
        split_generated=generated,
    )
