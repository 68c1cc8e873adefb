"""Readers for the upload formats, by name (the ``format`` form field)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.datasets.formats.base import Reader, Row
from app.datasets.formats.conll import ConllReader
from app.datasets.formats.delimited import DelimitedReader
from app.datasets.formats.jsonl import JsonlReader
from app.datasets.formats.parquet import ParquetReader
from app.jobspec.vocabulary import SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION

# format -> (path, tag_index) -> reader
READERS: dict[str, Callable[[Path, int | None], Reader]] = {
    "jsonl": lambda path, _tag_index: JsonlReader(path),
    "csv": lambda path, _tag_index: DelimitedReader(path, tsv=False),
    "tsv": lambda path, _tag_index: DelimitedReader(path, tsv=True),
    "parquet": lambda path, _tag_index: ParquetReader(path),
    "conll": lambda path, tag_index: ConllReader(path, tag_index=tag_index),
}

# What each format can hold; CSV/TSV cells cannot hold a list of tokens.
TASKS: dict[str, tuple[str, ...]] = {
    "jsonl": (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION),
    "csv": (SEQUENCE_CLASSIFICATION,),
    "tsv": (SEQUENCE_CLASSIFICATION,),
    "parquet": (SEQUENCE_CLASSIFICATION, TOKEN_CLASSIFICATION),
    "conll": (TOKEN_CLASSIFICATION,),
}

__all__ = ["READERS", "TASKS", "Reader", "Row"]
