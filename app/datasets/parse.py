"""An uploaded file to normalised split files: pick the reader, the task and the
columns, then build (each builder checks every row before writing any)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.datasets.classification import build_classification
from app.datasets.columns import TOKEN, ColumnRequest, choose_columns
from app.datasets.formats import READERS
from app.datasets.problems import bad_file
from app.datasets.splits import ParsedDataset
from app.datasets.tokens import build_tokens
from app.errors import ProblemError

FORMATS = tuple(READERS)


@dataclass
class ParseOptions:
    """The upload form's settings (None: detect or use the default)."""

    columns: ColumnRequest = field(default_factory=ColumnRequest)
    label_names: list[str] | None = None
    tag_index: int | None = None  # CoNLL: the tag's column, 0 being the token
    split: str | None = None  # the split of rows that do not name one


def parse_dataset(path: Path, fmt: str, out_dir: Path, options: ParseOptions) -> ParsedDataset:
    if options.tag_index is not None and fmt != "conll":
        raise bad_file("tag_index applies to conll files only.", param="tag_index")
    reader = READERS[fmt](path, options.tag_index)
    found = reader.columns()
    if not found:
        raise ProblemError(422, "dataset_empty", "The file has no rows.", param="file")
    cols = choose_columns(fmt, found, options.columns, header_line=reader.header_line)
    default_split = options.split or "train"
    if cols.task == TOKEN:
        return build_tokens(
            reader,
            out_dir,
            tokens_column=cols.names["tokens"],
            tags_column=cols.names["tags"],
            label_names=options.label_names,
            default_split=default_split,
        )
    return build_classification(
        reader,
        out_dir,
        text_column=cols.names["text"],
        label_column=cols.names["label"],
        label_names=options.label_names,
        default_split=default_split,
        numeric_strings=fmt in ("csv", "tsv"),
    )
