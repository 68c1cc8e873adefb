"""bench/gpu_throughput.py's smoke mode on the CPU: the engine's distillation step and the
plain loop both run, interleaved, and the result names the machine, the options and
both rates; the options run too (compile with dynamo's eager backend: it traces both
loops as inductor would, without the minutes of code generation on a CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _smoke(out: Path, *options: str) -> dict:
    done = subprocess.run(
        [sys.executable, "bench/gpu_throughput.py", "--device", "cpu", "--smoke", "--threads",
         "1", "--out", str(out), *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("gpu-throughput-*.json")
    assert path.name.endswith("-smoke.json")
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_smoke_run_measures_both_loops(tmp_path: Path) -> None:
    result = _smoke(tmp_path)
    assert result["machine"]["threads"] == 1 and result["machine"]["torch"]
    config = result["config"]
    assert config["smoke"] and config["device"] == "cpu"
    assert config["options"] == {
        "bf16": False,
        "fused_adamw": False,
        "length_buckets": 0,
        "compile": False,
        "compile_backend": None,
        "cached_logits": False,
    }
    for side in ("engine", "plain"):
        assert len(result["samples_per_s"][side]) == config["reps"]
        assert result["median_samples_per_s"][side] > 0
    medians = result["median_samples_per_s"]
    assert result["ratio"] == pytest.approx(medians["engine"] / medians["plain"], rel=1e-3)


def test_the_options_run(tmp_path: Path) -> None:
    result = _smoke(
        tmp_path,
        *("--fused-adamw", "--buckets", "2", "--cached-logits"),
        *("--compile", "--compile-backend", "eager"),
    )
    options = result["config"]["options"]
    assert options["fused_adamw"] and options["cached_logits"] and options["compile"]
    assert (options["length_buckets"], options["compile_backend"]) == (2, "eager")
    assert result["median_samples_per_s"]["engine"] > 0
