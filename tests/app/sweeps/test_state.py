"""What a sweep writes in its children's requests and reads back from their reports
(app/sweeps/state.py): a max_latency_ms sweep's point travels to the candidate's engine
spec, and the latency and speed-up the sweep reads are the ones timed there."""

from __future__ import annotations

from app.sweeps.state import ChildPlace, SweepPlan, child_request, result_of
from workers.engine.spec import LatencyPoint
from workers.request_spec import engine_sections


def _request(**target) -> dict:
    return {
        "task": "sequence-classification",
        "target": target,
        "strategy": "prune_then_distill",
        "distillation": {},
        "pruning": {"structured": ["layers", "ffn"]},
        "training": {"max_seq_length": 128},
        "export": {"formats": ["safetensors"], "keep_candidates": True},
    }


def _plan(kind: str, value: float, batch_size: int = 1) -> SweepPlan:
    return SweepPlan(kind, value, "pytorch", batch_size, 1.3, 4.0, 2, 4, None)


def test_a_latency_sweeps_candidate_is_timed_at_the_sweeps_point():
    child = child_request(_request(max_latency_ms=5.0, batch_size=8, seq_len=64), 2.0)
    assert child["target"] == {
        "speedup": 2.0,
        "runtime": "pytorch",
        "batch_size": 8,
        "seq_len": 64,
    }
    assert "keep_candidates" not in child["export"]
    sections = engine_sections(child)
    assert sections["latency_point"] == LatencyPoint(8, 64)
    assert sections["target"].speedup == 2.0


def test_a_retention_sweeps_candidate_has_no_point_of_its_own():
    child = child_request(_request(min_retention=0.99), 2.0)
    assert child["target"] == {"speedup": 2.0, "runtime": "pytorch"}
    assert engine_sections(child)["latency_point"] is None


def test_the_sweep_reads_the_candidates_latency_point_where_it_has_one():
    metrics = {
        "retention": 0.99,
        "student": {"accuracy": 0.9, "latency_ms_cpu_bs1": 5.0, "size_bytes": 10},
        "speedup_target": {"measured": 2.5},
        "latency_point": {"latency_ms": 31.0, "teacher_latency_ms": 62.0, "speedup": 2.0},
    }
    place = ChildPlace(0, 2.4)
    latency = _plan("max_latency_ms", 40, 8)
    found = result_of(place, status="succeeded", metrics=metrics, plan=latency)
    assert (found.latency_ms, found.speedup) == (31.0, 2.0)
    del metrics["latency_point"]  # a candidate of a sweep at batch 1: the report's own
    retention = _plan("min_retention", 0.99)
    found = result_of(place, status="succeeded", metrics=metrics, plan=retention)
    assert (found.latency_ms, found.speedup) == (5.0, 2.5)
