"""bench/common.py's row log: each finished row is on disk the moment it is appended,
with the run's fixed fields, and a row whose job raises is written as skipped with the
error while the run goes on."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.common import RowLog, guarded


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_each_row_is_written_when_it_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "results" / "rows.jsonl"
    log = RowLog(path, started=time.time() - 5, machine={"gpu": "H100"}, benchmark="b")
    first = log.append({"method": "a", "wall_s": 1.0})
    assert _lines(path) == [first]  # readable before the run goes on
    log.append({"method": "b", "skipped": "failed: boom"})
    lines = _lines(path)
    assert [x["status"] for x in lines] == ["done", "skipped"]
    assert all(x["machine"] == {"gpu": "H100"} and x["benchmark"] == "b" for x in lines)
    assert 5 <= lines[0]["elapsed_s"] <= lines[1]["elapsed_s"] < 60


def test_without_a_path_nothing_is_written(tmp_path: Path) -> None:
    line = RowLog(None, machine={}).append({"method": "a"})
    assert line["status"] == "done" and not list(tmp_path.iterdir())


def test_a_failing_row_is_logged_as_skipped_and_the_next_runs(tmp_path: Path) -> None:
    log = RowLog(tmp_path / "rows.jsonl")
    said: list[str] = []

    def boom() -> dict:
        raise ValueError("no teacher")

    failed = guarded("m1", "t1", boom, say=said.append, log=log)
    done = guarded("m2", "t2", lambda: {"wall_s": 2.0}, say=said.append, log=log)
    assert failed["skipped"] == "failed: ValueError: no teacher"
    assert done == {"method": "m2", "target": "t2", "wall_s": 2.0}
    lines = _lines(tmp_path / "rows.jsonl")
    assert [(x["method"], x["target"], x["status"]) for x in lines] == [
        ("m1", "t1", "skipped"),
        ("m2", "t2", "done"),
    ]
    assert said[-1] == "row m2: done in 2.0 s"
