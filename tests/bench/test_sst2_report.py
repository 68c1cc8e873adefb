"""The SST-2 benchmark's checks on hand-made rows: what counts as dominated and as
meeting the retention bar."""

from __future__ import annotations

from typing import Any

from bench.sst2_report import bar, pareto, teacher_shape_ms

TEACHER = {"num_parameters": 100, "latency_ms_cpu_bs1": 24.0, "size_bytes": 400}


def row(method: str, params: int, ms: float, accuracy: float, retention: float) -> dict[str, Any]:
    return {
        "method": method,
        "num_parameters": params,
        "latency_ms_cpu_bs1": ms,
        "size_bytes": 4 * params,
        "dev_accuracy": accuracy,
        "retention": retention,
        "speedup_cpu_bs1": TEACHER["latency_ms_cpu_bs1"] / ms,
    }


def test_the_bar_reads_speed_up_against_the_teacher_shapes_median():
    rows = [
        row("modelpress sparsity=0.5", 100, 22.0, 0.86, 1.0),
        row("peer: prune", 100, 22.4, 0.82, 0.98),
        row("modelpress 3 layers", 50, 11.8, 0.84, 1.0),  # 2.03x the teacher, 1.86x the median
        row("modelpress 2 layers", 34, 7.0, 0.81, 0.97),
        row("peer: skipped", 60, 1.0, 0.9, 1.0) | {"skipped": "failed"},
    ]
    assert teacher_shape_ms(rows, TEACHER) == 22.4  # of 24.0, 22.0, 22.4
    checks = bar(rows, TEACHER)
    assert checks["reference_ms_bs1"] == 22.4
    two, three = checks["speedup_2x"], checks["speedup_3x"]
    assert two["best"] == "modelpress 2 layers" and not two["met"]  # 3 layers is not 2x
    assert two["best_speedup"] == 22.4 / 7.0
    assert three["best"] == "modelpress 2 layers" and three["met"]


def test_pareto_allows_the_spread_of_identical_shapes_only():
    rows = [
        row("modelpress a", 100, 22.0, 0.86, 1.0),
        row("modelpress b", 100, 22.5, 0.80, 1.0),  # same shape: 2.3% spread
        row("peer: same shape, less accurate", 100, 21.8, 0.85, 1.0),
        row("peer: smaller", 50, 11.0, 0.80, 0.95),
    ]
    checks = {c["peer"]: c for c in pareto(rows)}
    same = checks["peer: same shape, less accurate"]
    assert same["dominated"] and same["by"] == "modelpress a"  # within the spread
    smaller = checks["peer: smaller"]
    assert not smaller["dominated"] and smaller["by"] is None
