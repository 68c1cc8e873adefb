"""One row per (method, runtime): speed-ups against the PyTorch fp32 teacher and against
the teacher in the same runtime, and a runtime that failed said as such."""

from __future__ import annotations

import pytest

from bench.pareto import latency_noise, runtime_rows


def measured(runtime: str, accuracy: float, bs1: float, bs32: float, **extra) -> dict:
    return {
        "runtime": runtime,
        "dev_accuracy": accuracy,
        "latency_ms_cpu_bs1": bs1,
        "latency_ms_cpu_bs32": bs32,
        "num_parameters": extra.pop("params", 100),
        **extra,
    }


def test_each_runtime_is_a_row_against_both_teachers():
    found = {
        "teacher": {
            "pytorch": measured("pytorch", 0.80, 20.0, 400.0),
            "onnxruntime-int8": measured("onnxruntime-int8", 0.79, 8.0, 160.0),
        },
        "modelpress a": {
            "pytorch": measured("pytorch", 0.80, 10.0, 200.0),
            "onnxruntime": {"error": "RuntimeError: export failed"},
            "onnxruntime-int8": measured("onnxruntime-int8", 0.78, 4.0, 100.0),
        },
        "_latency": {},
    }
    rows = [{"method": "modelpress a", "target": "t"}, {"method": "peer: x", "skipped": "no"}]
    out = runtime_rows(rows, found, "dev_accuracy")
    assert [(r["method"], r.get("runtime")) for r in out] == [
        ("modelpress a", "pytorch"),
        ("modelpress a", "onnxruntime"),
        ("modelpress a", "onnxruntime-int8"),
        ("peer: x", None),
    ]
    assert out[1]["skipped"] == "onnxruntime: RuntimeError: export failed"
    int8 = out[2]
    assert int8["retention"] == pytest.approx(0.78 / 0.80)  # against PyTorch fp32
    assert int8["speedup_cpu_bs1"] == 5.0 and int8["speedup_cpu_bs32"] == 4.0
    assert int8["speedup_same_runtime_bs1"] == 2.0 and int8["speedup_same_runtime_bs32"] == 1.6
    assert out[0]["speedup_cpu_bs1"] == out[0]["speedup_same_runtime_bs1"] == 2.0


def test_timing_spread_is_read_within_one_runtime_and_quantization():
    rows = [
        measured("pytorch", 0.8, 20.0, 1.0),
        measured("pytorch", 0.8, 20.4, 1.0),  # 2% apart: the same shape
        measured("onnxruntime-int8", 0.8, 8.0, 1.0, quantization="engine"),
        measured("onnxruntime-int8", 0.8, 9.6, 1.0, quantization="one-liner"),
        measured("onnxruntime-int8", 0.8, 4.0, 1.0, quantization="engine", params=50),
    ]
    assert latency_noise(rows) == pytest.approx(0.02)
