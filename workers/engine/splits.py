"""Split files loaded with the Hugging Face ``datasets`` library (issue #4).

``datasets`` parses the JSONL that the API wrote into an Arrow table, memory-mapped from
a cache file, so a split bigger than RAM does not have to sit in a Python list while it
is read. The engine does not keep that advantage yet: tokenisation and batching index
Python lists (``EncodedSplit.features``), so ``data.py`` still turns each split into
lists of examples and then of token ids. Tokenising with ``Dataset.map(batched=True)``
would only write the ids to Arrow to read them back into those same lists; it pays once
``EncodedSplit`` and ``collate`` read Arrow columns, which is when the cache would have
to live under the run's work folder instead of the temporary folder used here.

Nothing is fetched from the network (the file is local; the hub is switched off anyway)
and the progress bars are off, so worker logs stay clean.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from workers.engine.spec import EngineInputError

# datasets' JSON loader parses a file in blocks of this many bytes (its default, passed
# explicitly so the line lookup below knows it). Its error messages count rows from the
# start of the block, so they name a line of the file only for a file of one block.
CHUNK_BYTES = 10 << 20

ColumnCheck = tuple[str, Callable[[pa.DataType], bool]]


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list_of(item: Callable[[pa.DataType], bool]) -> Callable[[pa.DataType], bool]:
    def check(t: pa.DataType) -> bool:
        return (pa.types.is_list(t) or pa.types.is_large_list(t)) and item(t.value_type)

    return check


# What each column must be read as, after the rows were checked line by line.
TEXT: ColumnCheck = ("strings", _is_text)
INTEGER: ColumnCheck = ("integers", pa.types.is_integer)
WORDS: ColumnCheck = ("lists of strings", _is_list_of(_is_text))
TAGS: ColumnCheck = ("lists of integers", _is_list_of(pa.types.is_integer))


def _datasets() -> Any:
    """The ``datasets`` module, offline and quiet. Imported here, not at the top: only a
    run that reads a split pays for it, and the API never imports it."""
    import datasets

    # Read by datasets at call time; a local JSON file never needs the hub, and this
    # makes sure nothing on the way tries it either.
    datasets.config.HF_HUB_OFFLINE = True
    datasets.disable_progress_bars()
    # Its log lines about a file it cannot parse would repeat the EngineInputError the
    # caller gets anyway.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    return datasets


def _root_cause(exc: BaseException) -> BaseException:
    """The error datasets wrapped (``raise ... from``); not ``__context__``, which after
    the loader's own fallbacks is often a second, less telling parse error."""
    seen = {id(exc)}
    while (cause := exc.__cause__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        exc = cause
    return exc


def _line_of_row(path: Path, row: int) -> int | None:
    """The file line of the ``row``-th (0-based) non-blank line, as Arrow counts rows."""
    seen = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                if seen == row:
                    return number
                seen += 1
    return None


def _unreadable(path: Path, split: str, cause: BaseException) -> EngineInputError:
    message = str(cause)
    where = f"the {split} file"
    found = re.search(r"\bin row (\d+)", message)
    if found and path.stat().st_size <= CHUNK_BYTES:
        line = _line_of_row(path, int(found.group(1)))
        if line is not None:
            where = f"{split} line {line}"
            message = message[: found.start()].rstrip(" .") or message
    return EngineInputError(
        "bad_jsonl", f"{where} could not be read by the datasets library: {message}"
    )


def load_json_split(
    path: Path,
    *,
    split: str,
    columns: dict[str, ColumnCheck],
    rows: int,
    cache_dir: Path | None = None,
) -> dict[str, list[Any]]:
    """Load ``path`` with ``datasets.load_dataset("json")`` and return ``columns`` as
    Python lists, after checking each column's Arrow type and that the loader saw
    ``rows`` rows (what the line-by-line check counted).

    The Arrow cache goes to ``cache_dir``, or to a temporary folder removed on return
    (the lists are all the engine keeps).
    """
    datasets = _datasets()
    with tempfile.TemporaryDirectory(prefix="modelpress-split-") as scratch:
        try:
            dataset = datasets.load_dataset(
                "json",
                data_files=str(path),
                split="train",
                cache_dir=str(cache_dir or scratch),
                chunksize=CHUNK_BYTES,
            )
        except StopIteration:  # what the loader raises on a file with no rows
            raise EngineInputError("empty_split", f"the {split} split has no examples") from None
        except (datasets.exceptions.DatasetGenerationError, pa.ArrowException, ValueError) as exc:
            cause = _root_cause(exc)
            if isinstance(cause, OSError) and not isinstance(cause, ValueError):
                raise  # a disk or permission failure, not something in the file
            raise _unreadable(path, split, cause) from exc
        if len(dataset) != rows:
            raise EngineInputError(
                "bad_jsonl",
                f"the datasets library read {len(dataset)} rows from the {split} file, "
                f"which has {rows} lines",
            )
        out: dict[str, list[Any]] = {}
        for name, (expected, check) in columns.items():
            field = dataset.features.arrow_schema.field(name) if name in dataset.features else None
            if field is None or not check(field.type):
                got = "no such column" if field is None else f"a column of {field.type}"
                raise EngineInputError(
                    "bad_jsonl",
                    f"the datasets library read '{name}' in the {split} file as {got}; "
                    f"expected {expected}",
                )
            out[name] = dataset.data.column(name).to_pylist()
        del dataset  # its Arrow file is memory-mapped from the folder removed next
    return out
