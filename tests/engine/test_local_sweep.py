"""``modelpress compress`` with a sweep target (workers/local_sweep.py): the teacher is
fine-tuned once, candidates run one after the other by bisection, and OUT holds the
picked student as a single run would, with the sweep's report and plot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tests.engine.conftest import LABELS
from tests.tiny import make_tiny_bert, make_tiny_dataset
from workers.compress_cli import build_local_spec, sweep_of
from workers.engine.spec import TrainingSpec
from workers.local_sweep import _student_seeded, run_local_sweep

SPEC = """\
task: sequence-classification
teacher: teacher
dataset: {path: data.jsonl}
target: {min_retention: 0.9, budget: {candidates: 2}}
pruning: {structured: [layers]}
distillation: {hidden_states: false}
training: {epochs: 1, teacher_epochs: 1, batch_size: 16, learning_rate: 0.002, max_seq_length: 24}
"""


class Recorder:
    def __init__(self) -> None:
        self.logs: list[str] = []
        self.progress: list[float] = []

    def on_phase(self, phase: str) -> None:
        pass

    def on_progress(self, progress: float) -> None:
        self.progress.append(progress)

    def on_log(self, message: str, *, level: str = "info", data: dict | None = None) -> None:
        self.logs.append(message)

    def should_stop(self) -> bool:
        return False

    def on_checkpoint(self, path: Path, info: dict[str, Any]) -> None:
        pass


def test_a_local_sweep_pays_for_the_teacher_once_and_answers(tmp_path: Path) -> None:
    make_tiny_bert(tmp_path / "teacher", num_labels=None, num_layers=4, seed=1)  # headless
    make_tiny_dataset(tmp_path / "data.jsonl", n=100, seed=0, label_names=LABELS)
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    out = tmp_path / "out"
    spec = build_local_spec(tmp_path / "spec.yaml", out, device="cpu", latency_threads=1)
    spec = dataclasses.replace(spec, latency_budget_s=0.2)
    sweep = sweep_of(tmp_path / "spec.yaml")
    assert sweep is not None and (sweep.kind, sweep.value, sweep.candidates) == (
        "min_retention",
        0.9,
        2,
    )
    recorder = Recorder()
    metrics = run_local_sweep(spec, sweep, out, recorder)

    report = metrics["sweep"]
    assert [c["index"] for c in report["candidates"]] == [0, 1]
    assert report["axis"]["lo"] == 1.3 and report["parallel"] == 1
    # Where a layer goes, by the teacher step's fit: the fastest shape of each layer
    # count a student may have (3, 2, 1 of the teacher's 4: layers only), less the
    # planner's margin; fewer layers, faster.
    steps = report["axis"]["steps"]
    assert len(steps) == 3 and steps == sorted(steps) and steps[0] > 1
    assert report["pick"] in (0, 1) and report["front"]
    # The teacher was fine-tuned by the sweep, then read from its cache by each candidate.
    assert sum("teacher_finetune epoch" in m for m in recorder.logs) == 1
    assert sum("teacher reused from the cache" in m for m in recorder.logs) == 2
    assert recorder.progress == sorted(recorder.progress) and recorder.progress[-1] <= 1.0
    # OUT: the picked student as a single run writes it, the sweep's report and plot.
    stored = json.loads((out / "report.json").read_text(encoding="utf-8"))["metrics"]
    assert stored["sweep"] == report
    picked = report["candidates"][report["pick"]]
    assert stored["retention"] == picked["retention"]
    assert (out / "model" / "config.json").is_file()
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    # Each candidate that succeeded has its run there (one whose speed-up no shape
    # reached on a loaded machine fails before writing anything).
    for c in report["candidates"]:
        assert (out / "candidates" / str(c["index"]) / "report.json").is_file() == c["ok"]


def test_a_local_latency_sweep_times_its_candidates_at_its_point(tmp_path: Path) -> None:
    from workers.engine.spec import LatencyPoint

    text = SPEC.replace(
        "{min_retention: 0.9, budget: {candidates: 2}}",
        "{max_latency_ms: 50, batch_size: 8, seq_len: 16, budget: {candidates: 2}}",
    )
    (tmp_path / "spec.yaml").write_text(text, encoding="utf-8")
    sweep = sweep_of(tmp_path / "spec.yaml")
    assert sweep is not None and sweep.latency_point == LatencyPoint(8, 16)
    plan = sweep.plan(1.3, 3.0, [])
    assert (plan.batch_size, plan.seq_len) == (8, 16)
    # A retention sweep's candidates are read at the report's own batch 1.
    (tmp_path / "r.yaml").write_text(SPEC, encoding="utf-8")
    assert sweep_of(tmp_path / "r.yaml").latency_point is None  # type: ignore[union-attr]


def test_a_repeat_trains_its_student_on_the_next_seed_with_the_same_teacher() -> None:
    training = TrainingSpec(seed=3)
    assert _student_seeded(training, 0) is training
    again = _student_seeded(training, 1)
    assert (again.seed, again.student_seed) == (3, 4)
    assert _student_seeded(again, 1).student_seed == 5
