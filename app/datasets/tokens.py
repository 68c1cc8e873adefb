"""Token classification (e.g. named entities) in two streaming passes over a reader.

Rows are sentences: a list of tokens and one IOB tag per token, given as tag names or
as ids into label_names. Tags are checked and rewritten from IOB1 to IOB2; split
files hold ``{"tokens": [str, ...], "tags": [int, ...]}``, ids into the label_names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.datasets.columns import TOKEN
from app.datasets.formats import Reader, Row
from app.datasets.iob import label_order, tag_problem, to_iob2
from app.datasets.problems import MAX_LABELS, MAX_TOKENS, bad_file, bad_row
from app.datasets.splits import (
    HOLDOUT_SPLIT,
    Duplicates,
    ParsedDataset,
    SplitWriter,
    plan_holdout,
    row_split,
)
from app.errors import ProblemError


def _tag_name(tag: Any, label_names: list[str] | None, known: set[str]) -> str | None:
    """The tag as a name, or None after checking fails (the caller says where)."""
    if isinstance(tag, int) and not isinstance(tag, bool):
        if label_names is None:
            raise ValueError(
                "integer tags need label_names (the tag names in id order, e.g. "
                '"O,B-PER,I-PER"); or give the tags as names'
            )
        if not 0 <= tag < len(label_names):
            raise ValueError(
                f"tag id {tag} is out of range for {len(label_names)} label_names "
                f"(ids 0 to {len(label_names) - 1})"
            )
        return label_names[tag]
    if not isinstance(tag, str):
        raise ValueError("tags must be IOB tag names (O, B-PER, ...) or integer ids")
    if problem := tag_problem(tag):
        raise ValueError(problem)
    if label_names is not None and tag not in known:
        raise ValueError(f"tag {tag!r} is not one of label_names {label_names}")
    return tag


def _sentence(
    row: Row, unit: str, tokens_col: str, tags_col: str, label_names: list[str] | None
) -> tuple[list[str], list[str]]:
    values, where = row.values, row.where
    for col in (tokens_col, tags_col):
        if col not in values:
            raise bad_row(where, "is missing", column=col, unit=unit)
    tokens, tags = values[tokens_col], values[tags_col]
    if not isinstance(tokens, list) or not tokens:
        raise bad_row(
            where,
            "must be a non-empty list of strings (the words of one sentence)",
            column=tokens_col,
            unit=unit,
        )
    if len(tokens) > MAX_TOKENS:
        raise bad_row(
            where,
            f"has {len(tokens)} tokens, more than {MAX_TOKENS}; split the sentence",
            column=tokens_col,
            unit=unit,
        )
    for i, token in enumerate(tokens):
        if not isinstance(token, str) or not token.strip():
            raise bad_row(
                where,
                f"token {i + 1} must be a non-empty string",
                column=tokens_col,
                unit=unit,
            )
    if not isinstance(tags, list):
        raise bad_row(where, "must be a list with one tag per token", column=tags_col, unit=unit)
    if len(tags) != len(tokens):
        raise bad_row(
            where,
            f"has {len(tags)} tags for {len(tokens)} tokens; give one tag per token",
            column=tags_col,
            unit=unit,
        )
    known = set(label_names or ())
    names: list[str] = []
    for i, tag in enumerate(tags):
        try:
            names.append(_tag_name(tag, label_names, known))  # type: ignore[arg-type]
        except ValueError as e:
            if row.item_lines is not None:  # CoNLL: the tag's own line
                raise bad_row(row.item_lines[i], str(e), column=row.item_column, unit=unit) from e
            raise bad_row(where, f"tag {i + 1}: {e}", column=tags_col, unit=unit) from e
    return tokens, names


def _examples(
    reader: Reader,
    tokens_col: str,
    tags_col: str,
    label_names: list[str] | None,
    default_split: str,
) -> Iterator[tuple[int, list[str], list[str], str, int]]:
    unit = reader.unit
    for row in reader.rows([tokens_col, tags_col, "split"]):
        tokens, tags = _sentence(row, unit, tokens_col, tags_col, label_names)
        iob2, changed = to_iob2(tags)
        split = row_split(row.values.get("split"), row.where, unit, default_split)
        yield row.where, tokens, iob2, split, changed


def build_tokens(
    reader: Reader,
    out_dir: Path,
    *,
    tokens_column: str,
    tags_column: str,
    label_names: list[str] | None,
    default_split: str = "train",
) -> ParsedDataset:
    if label_names is not None:
        for name in label_names:
            if problem := tag_problem(name):
                raise bad_file(f"label_names: {problem}.", param="label_names")
    tag_counts: Counter[str] = Counter()
    split_counts: Counter[str] = Counter()
    dups = Duplicates()
    converted = 0
    n = 0
    rows = _examples(reader, tokens_column, tags_column, label_names, default_split)
    for where, tokens, tags, split, changed in rows:
        n += 1
        converted += changed
        tag_counts.update(tags)
        split_counts[split] += 1
        dups.add(tokens, tags)
        if len(tag_counts) > MAX_LABELS:
            raise bad_row(
                where,
                f"more than {MAX_LABELS} distinct tags",
                column=tags_column,
                unit=reader.unit,
            )
    if n == 0:
        raise ProblemError(422, "dataset_empty", "The file has no sentences.", param="file")
    if len(tag_counts) < 2:
        raise bad_file(
            f"Column {tags_column!r} has one tag only ({next(iter(tag_counts))!r} in all "
            f"{n} sentences); a tagger needs at least two (O and entities such as B-PER)."
        )

    if label_names is not None:
        # IOB1 -> IOB2 may need a B-X that the given names lack: added at the end, so
        # the given ids keep their meaning.
        names = list(label_names)
        names += [t for t in label_order(tag_counts) if t in tag_counts and t not in names]
    else:
        names = label_order(tag_counts)
    index = {name: i for i, name in enumerate(names)}

    holdout = plan_holdout(split_counts, n)
    with SplitWriter(out_dir) as out:
        rows = _examples(reader, tokens_column, tags_column, label_names, default_split)
        for i, (_where, tokens, tags, split, _changed) in enumerate(rows):
            if holdout is not None:
                split = HOLDOUT_SPLIT if i in holdout else "train"
            out.write(split, {"tokens": tokens, "tags": [index[t] for t in tags]})
    return ParsedDataset(
        task=TOKEN,
        splits=out.paths(),
        counts=dict(out.counts),
        label_names=names,
        split_generated=holdout is not None,
        columns={"tokens": tokens_column, "tags": tags_column},
        duplicate_rows=dups.count,
        label_counts=out.label_counts(names),
        iob1_converted=converted,
    )
