"""A sweep on this machine alone (``modelpress compress`` with a ``min_retention`` or
``max_latency_ms`` target): the service's sweep (docs/sweeps.md) with one worker, so its
candidates run one after the other, bisecting the bracket; the same policy, report and
plot. The teacher is fine-tuned once into OUT/work/teacher-cache, which each candidate
reads as a service job reads the tenant's cache.

OUT receives what a single run writes, for the picked candidate (model/, report.json
with the sweep's report in its metrics, the model card, the plots), plus sweep.png and
candidates/<i>/ with each candidate's own run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from app.storage import file_digest
from app.sweeps import policy
from app.sweeps.axis import steps_of
from app.sweeps.report import sweep_report
from app.sweeps.state import ChildPlace, SweepPlan, Timing, result_of, speed_plan_of
from workers.engine.spec import (
    CompressionSpec,
    EngineInputError,
    LatencyPoint,
    TargetSpec,
    TrainingSpec,
)
from workers.engine.teacher_key import teacher_cache_key
from workers.sweep_plot import SWEEP_PNG, draw_sweep


@dataclasses.dataclass(frozen=True)
class LocalSweep:
    """The sweep a spec file asks for: its goal, runtime and budget."""

    kind: str
    value: float
    runtime: str
    batch_size: int
    candidates: int
    seq_len: int | None = None

    @property
    def latency_point(self) -> LatencyPoint | None:
        """Where each candidate is also timed: a max_latency_ms sweep's batch and rows."""
        if self.kind != policy.MAX_LATENCY_MS:
            return None
        return LatencyPoint(self.batch_size, self.seq_len)

    def plan(self, lo: float, hi: float, steps: list[float]) -> SweepPlan:
        return SweepPlan(
            kind=self.kind,
            value=self.value,
            runtime=self.runtime,
            batch_size=self.batch_size,
            lo=lo,
            hi=hi,
            parallel=1,
            candidates=self.candidates,
            max_seconds=None,
            seq_len=self.seq_len,
            steps=steps,
        )


class _Stage:
    """The terminal callback for one stage of the sweep: progress scaled into its share
    of the bar, and the teacher fine-tuned kept where the candidates find it."""

    def __init__(self, callback: Any, start: float, share: float, keep: Path | None = None):
        self._cb, self._start, self._share, self._keep = callback, start, share, keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cb, name)

    def on_progress(self, progress: float) -> None:
        self._cb.on_progress(self._start + self._share * progress)

    def on_teacher_finetuned(self, path: Path, info: dict[str, Any]) -> None:
        if self._keep is not None:
            self._keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self._keep)


def run_local_sweep(
    spec: CompressionSpec, sweep: LocalSweep, out_dir: Path, callback: Any
) -> dict[str, Any]:
    """Run the sweep; returns the picked candidate's metrics with ``sweep`` added (the
    candidates' errors are in their own folders). Raises what compress() raises when a
    stop is asked for; EngineInputError when no candidate succeeded."""
    from workers.engine.compress import compress, prepare_teacher  # torch

    entry = spec.work_dir / "teacher-cache" / "entry.safetensors"
    _, teacher_sha = file_digest(_weights(spec.teacher_dir))
    _, train_sha = file_digest(spec.train_file)
    key = teacher_cache_key(spec, teacher_sha256=teacher_sha, train_sha256=train_sha)
    probe = dataclasses.replace(
        spec,
        target=TargetSpec(speedup=policy.DEFAULT_LO, runtime=sweep.runtime),
        teacher_cache_key=key,
        work_dir=spec.work_dir / "teacher",
    )
    probe.work_dir.mkdir(parents=True, exist_ok=True)
    teacher_share = 0.1
    info = prepare_teacher(probe, _Stage(callback, 0.0, teacher_share, keep=entry))
    lo, hi = policy.axis_for(info["fastest_speedup"])
    plan = sweep.plan(lo, hi, steps_of(info["layer_steps"]))
    callback.on_log(
        f"sweep of {plan.candidates} candidates at most, one at a time, speed-ups "
        f"{lo:g}x to {hi:g}x ({plan.runtime})"
    )
    results: list[policy.CandidateResult] = []
    outputs: dict[int, Path] = {}
    plans: dict[float, dict[str, Any] | None] = {}  # each target's first training's shape
    share = (1 - teacher_share) / plan.candidates
    batch = policy.first_round(lo=lo, hi=hi, budget=plan.candidates, parallel=1, steps=plan.steps)
    while batch:
        for cand in batch:
            folder = out_dir / "candidates" / str(cand.index)
            run = dataclasses.replace(
                spec,
                target=TargetSpec(speedup=cand.speedup, runtime=sweep.runtime),
                training=_student_seeded(spec.training, cand.repeat),
                # A repeat trains its target's first shape (app/sweeps/state.ChildPlace).
                speed_plan=plans.get(cand.speedup) if cand.repeat else None,
                latency_point=sweep.latency_point,
                output_dir=folder,
                work_dir=spec.work_dir / f"candidate-{cand.index}",
                teacher_cache_key=key,
                cached_teacher=entry if entry.is_file() else None,
            )
            run.work_dir.mkdir(parents=True, exist_ok=True)
            again = f", trained again (student seed +{cand.repeat})" if cand.repeat else ""
            callback.on_log(f"candidate {cand.index}: speedup {cand.speedup:g}x{again}")
            stage = _Stage(callback, teacher_share + share * len(results), share)
            code = None
            try:
                metrics, status = compress(run, stage).metrics, "succeeded"
            except EngineInputError as e:
                callback.on_log(f"candidate {cand.index} failed: {e.message}", level="warning")
                metrics, status, code = None, "failed", e.code
            place = ChildPlace(cand.index, cand.speedup, cand.repeat)
            result = result_of(place, status=status, metrics=metrics, plan=plan, error_code=code)
            results.append(result)
            outputs[cand.index] = folder
            if not cand.repeat and result.ok:
                plans[cand.speedup] = speed_plan_of(metrics)
            if result.ok:
                met = "meets" if plan.goal.met_by(result) else "misses"
                callback.on_log(f"{policy.describe(result)}: {met} the goal")
        batch = policy.next_round(
            goal=plan.goal,
            results=results,
            budget=plan.candidates,
            parallel=1,
            lo=lo,
            hi=hi,
            steps=plan.steps,
        )
    answer = policy.pick(plan.goal, results)
    if answer.pick_index is None:
        raise EngineInputError(
            "sweep_no_candidate",
            f"no candidate of the sweep succeeded; see {out_dir / 'candidates'}",
        )
    report = sweep_report(
        plan=plan,
        results=results,
        answer=answer,
        job_ids={i: f"candidates/{i}" for i in outputs},
        # One after the other on this machine: each was timed with the cores to itself.
        timing=Timing(False, "the candidates ran one after the other on this machine"),
    )
    picked = outputs[answer.pick_index]
    for item in picked.iterdir():
        target = out_dir / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(item, target)
    content = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    content["metrics"]["sweep"] = report
    (out_dir / "report.json").write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    draw_sweep(report, out_dir / SWEEP_PNG)
    return content["metrics"]


def _weights(teacher_dir: Path) -> Path:
    found = sorted(teacher_dir.glob("*.safetensors"))
    return found[0] if found else teacher_dir / "config.json"


def _student_seeded(training: TrainingSpec, repeat: int) -> TrainingSpec:
    """A candidate's training settings: the sweep's, its student on the seed ``repeat``
    past the sweep's (app/sweeps/repeats.py); the teacher keeps ``seed``."""
    if not repeat:
        return training
    return dataclasses.replace(training, student_seed=training.student_seed_value + repeat)
