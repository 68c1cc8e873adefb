"""Parquet, read a batch of rows at a time (never the whole table) with pyarrow."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from app.datasets.formats.base import Row
from app.datasets.problems import bad_file, bad_row

BATCH_ROWS = 1024


class ParquetReader:
    unit = "row"
    header_line: int | None = None

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq  # only when a Parquet file is uploaded

        try:
            self._file = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
            raise bad_file(
                f"The file is not a readable Parquet file ({e}); write it with "
                "pyarrow or pandas (DataFrame.to_parquet)."
            ) from e

    def columns(self) -> list[str]:
        if self._file.metadata.num_rows == 0:
            return []
        return list(self._file.schema_arrow.names)

    def rows(self, wanted: Sequence[str] | None = None) -> Iterator[Row]:
        names = set(self._file.schema_arrow.names)
        cols = None if wanted is None else [c for c in dict.fromkeys(wanted) if c in names]
        n = 0
        batches = self._file.iter_batches(batch_size=BATCH_ROWS, columns=cols)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as e:  # a corrupt page or a value pyarrow cannot decode
                raise bad_row(
                    n + 1, f"cannot be read ({e}); write the file again", unit="row"
                ) from e
            for values in batch.to_pylist():
                n += 1
                yield Row(n, values)
