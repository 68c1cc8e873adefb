"""Text classification data in two streaming passes over a reader.

Pass 1 checks every row and collects the label set; pass 2 writes one normalised
JSONL file per split (``{"text": str, "label": int}``), so the file is never held in
memory. When the file names no held-out split, one is drawn with a fixed seed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.datasets.columns import SEQUENCE
from app.datasets.formats import Reader
from app.datasets.problems import MAX_LABELS, MAX_TEXT_CHARS, bad_file, bad_row
from app.datasets.splits import (
    HOLDOUT_SPLIT,
    Duplicates,
    ParsedDataset,
    SplitWriter,
    plan_holdout,
    row_split,
)
from app.errors import ProblemError

_INTEGER = re.compile(r"-?\d+")


def _examples(
    reader: Reader, text_col: str, label_col: str, default_split: str
) -> Iterator[tuple[int, str, Any, str]]:
    unit = reader.unit
    for row in reader.rows([text_col, label_col, "split"]):
        values, where = row.values, row.where
        if text_col not in values:
            raise bad_row(where, "is missing", column=text_col, unit=unit)
        text = values[text_col]
        if not isinstance(text, str) or not text.strip():
            raise bad_row(
                where,
                "must be a non-empty string; fill in the text or remove the row",
                column=text_col,
                unit=unit,
            )
        if len(text) > MAX_TEXT_CHARS:
            raise bad_row(
                where,
                f"is {len(text)} characters long, more than {MAX_TEXT_CHARS}; shorten or split it",
                column=text_col,
                unit=unit,
            )
        if label_col not in values:
            raise bad_row(where, "is missing", column=label_col, unit=unit)
        label = values[label_col]
        if label is None or label == "":
            raise bad_row(where, "is empty; every row needs a label", column=label_col, unit=unit)
        if isinstance(label, bool) or not isinstance(label, int | str):
            raise bad_row(where, "must be an integer or a string", column=label_col, unit=unit)
        yield where, text, label, row_split(values.get("split"), where, unit, default_split)


def build_classification(
    reader: Reader,
    out_dir: Path,
    *,
    text_column: str,
    label_column: str,
    label_names: list[str] | None,
    default_split: str = "train",
    numeric_strings: bool = False,
) -> ParsedDataset:
    """``numeric_strings``: labels such as "0" and "1" (all of them integers written as
    text, as CSV cells are) are label ids, unless they are the given label_names."""
    unit = reader.unit
    labels: Counter[Any] = Counter()
    first_seen: dict[Any, int] = {}
    split_counts: Counter[str] = Counter()
    dups = Duplicates()
    n = 0
    for where, text, label, split in _examples(reader, text_column, label_column, default_split):
        n += 1
        labels[label] += 1
        first_seen.setdefault(label, where)
        split_counts[split] += 1
        dups.add(text, label)
        if len(labels) > MAX_LABELS:
            raise bad_row(
                where, f"more than {MAX_LABELS} distinct labels", column=label_column, unit=unit
            )
    if n == 0:
        raise ProblemError(422, "dataset_empty", "The file has no rows.", param="file")

    as_int = (
        numeric_strings
        and all(isinstance(x, str) and _INTEGER.fullmatch(x) for x in labels)
        and not (label_names is not None and all(x in label_names for x in labels))
    )
    if as_int:
        merged: Counter[Any] = Counter()
        for x, count in labels.items():
            merged[int(x)] += count
            first_seen.setdefault(int(x), first_seen[x])
        labels = merged
    kinds = {type(x) for x in labels}
    if len(kinds) > 1:
        first_int = min(w for x, w in first_seen.items() if isinstance(x, int))
        first_str = min(w for x, w in first_seen.items() if isinstance(x, str))
        raise bad_file(
            f"Column {label_column!r} mixes integers ({unit} {first_int}) and strings "
            f"({unit} {first_str}); use one kind."
        )

    if label_names is not None:
        for x in labels:
            if isinstance(x, int) and not 0 <= x < len(label_names):
                raise bad_row(
                    first_seen[x],
                    f"label {x} is out of range for {len(label_names)} label_names "
                    f"(ids 0 to {len(label_names) - 1})",
                    column=label_column,
                    unit=unit,
                    param="label_names",
                )
            if isinstance(x, str) and x not in label_names:
                raise bad_row(
                    first_seen[x],
                    f"label {x!r} is not one of label_names {label_names}",
                    column=label_column,
                    unit=unit,
                    param="label_names",
                )
        names = list(label_names)
    elif kinds == {str}:
        names = sorted(labels)
    else:
        lowest = min(labels)
        if lowest < 0:
            raise bad_row(
                first_seen[lowest],
                f"integer labels must be >= 0 (found {lowest})",
                column=label_column,
                unit=unit,
            )
        names = [str(i) for i in range(max(labels) + 1)]
    index = {name: i for i, name in enumerate(names)}
    if len(labels) < 2:
        raise bad_file(
            f"Column {label_column!r} has one class only ({next(iter(labels))!r} in all {n} "
            "rows); a classifier needs at least two."
        )

    holdout = plan_holdout(split_counts, n)
    with SplitWriter(out_dir) as out:
        rows = _examples(reader, text_column, label_column, default_split)
        for i, (_where, text, label, split) in enumerate(rows):
            if holdout is not None:
                split = HOLDOUT_SPLIT if i in holdout else "train"
            if as_int:
                label_id = int(label)
            elif isinstance(label, str):
                label_id = index[label]
            else:
                label_id = label
            out.write(split, {"text": text, "label": label_id})
    return ParsedDataset(
        task=SEQUENCE,
        splits=out.paths(),
        counts=dict(out.counts),
        label_names=names,
        split_generated=holdout is not None,
        columns={"text": text_column, "label": label_column},
        duplicate_rows=dups.count,
        label_counts=out.label_counts(names),
    )
