"""Which student shape keeps the most of the SST-2 teacher at one batch-1 speed-up.

The speed planner (workers/engine/speed_plan.py) takes, among the shapes predicted fast
enough, the one with the most parameters; under a latency budget that favours few wide
layers over more narrow ones. Whether parameters are the right proxy for what a
student keeps is measured here: each variant runs ``compress()`` with a ``speedup``
target whose plan is forced to one shape (the engine's own pruning, distillation and
evaluation after that; the forced shape is timed against the teacher's once, as the
planner's verification would). Teacher and rows: those of ``bench/sst2.py
--max-train-rows 5000`` (run it first), 3 epochs, the benchmark's budget, one seed.

``--recipe`` runs a shape with one distillation or training setting changed (``lr=1e-4``,
``attention``, ``no_hidden``, ``alpha=0``, ``temperature=4``; the row is named
``<shape> <recipe>``; ``--seed`` adds ``seed=N``; ``lr=2e-4`` and ``lr=1e-4,epochs=6``
for the deep cuts), to tell what the shape costs from
what the recipe costs.

One seed each: a direction, not a law (bench/results/seeds-full-2026-11-28.json: a row
moves 0.6-1.1 points between seeds). Results: bench/results/shapes-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.jobspec.plan import Shape  # noqa: E402
from app.jobspec.speed_plan import LatencyFit, SpeedPlan  # noqa: E402
from bench.common import (  # noqa: E402
    CACHE,
    cached_mode_teacher,
    load_1m,
    machine,
    study_spec,
    write_dated,
)
from workers.engine import speed_target  # noqa: E402
from workers.engine.compress import compress  # noqa: E402
from workers.engine.spec import (  # noqa: E402
    DistillationSpec,
    PruningSpec,
    TargetSpec,
    TrainingSpec,
)

# name -> (layers, hidden, FFN); heads follow the hidden width (32 per head in MiniLM).
SHAPES: dict[str, tuple[int, int, int]] = {
    "2x888": (2, 384, 888),  # what the planner chose for 3.15x in the benchmark
    "3x384": (3, 384, 384),  # one layer more, FFN at its floor
    "3x320h512": (3, 320, 512),  # one layer more, the hidden width narrowed too
    "4x256h512": (4, 256, 512),
}
HEAD_DIM = 32
# The benchmark's budget (bench/sst2.py full mode); the engine's checkpoints off.
BUDGET: dict[str, Any] = {
    "epochs": 3,
    "batch_size": 32,
    "learning_rate": 5e-5,
    "max_seq_length": 128,
    "seed": 0,
    "teacher_epochs": 0,
    "checkpoint_every_steps": 0,
}
# --recipe name -> (DistillationSpec changes, TrainingSpec changes) from the engine defaults.
RECIPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "": ({}, {}),
    "lr=1e-4": ({}, {"learning_rate": 1e-4}),
    "attention": ({"attention": True}, {}),
    "no_hidden": ({"hidden_states": False}, {}),
    "alpha=0": ({"alpha": 0.0}, {}),
    "temperature=4": ({"temperature": 4.0}, {}),
    # A two-layer student has fewer parameters to move and 470 steps to move them in:
    # whether a higher rate or more passes over the same rows is what it lacks.
    "lr=2e-4": ({}, {"learning_rate": 2e-4}),
    "lr=1e-4,epochs=6": ({}, {"learning_rate": 1e-4, "epochs": 6}),
}


def forced_plan(shape: Shape, target: float):
    """A stand-in for plan_for_speedup that returns ``shape``, timed once against the
    teacher's so the report's speed plan says what it measured."""

    def plan(sizes, structured, speedup, *, measure, seq_len, threads) -> SpeedPlan:
        teacher_ms, shape_ms = measure([sizes.teacher_shape, shape])
        measured = teacher_ms / shape_ms
        return SpeedPlan(
            shape, target, measured, measured, LatencyFit(0, 0, 0), 1, threads, seq_len
        )

    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SHAPES), help="comma-separated names")
    parser.add_argument("--recipe", default="", choices=list(RECIPES), help="one change")
    parser.add_argument("--seed", type=int, default=0, help="training.seed (0: the benchmark's)")
    parser.add_argument("--target", type=float, default=3.0, help="the speed-up named")
    parser.add_argument("--work", type=Path, default=CACHE / "shapes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = CACHE / "runs" / "full"
    teacher = cached_mode_teacher(3, "full")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {list(SHAPES)}")
    original = speed_target.plan_for_speedup
    rows: dict[str, Any] = {}
    distill_changes, training_changes = RECIPES[args.recipe]
    for shape_name in names:
        seed = f"seed={args.seed}" if args.seed else ""
        name = " ".join(part for part in (shape_name, args.recipe, seed) if part)
        layers, hidden, ffn = SHAPES[shape_name]
        heads = hidden // HEAD_DIM
        shape = Shape(layers, hidden, ffn, heads, heads)
        speed_target.plan_for_speedup = forced_plan(shape, args.target)
        run = args.work / name.replace(" ", "_")
        spec = study_spec(
            teacher,
            data,
            run,
            target=TargetSpec(speedup=args.target),
            pruning=PruningSpec(structured=("layers", "ffn", "hidden")),
            distillation=DistillationSpec(**distill_changes),
            training=TrainingSpec(**{**BUDGET, "seed": args.seed, **training_changes}),
        )
        start, load = time.time(), load_1m()
        try:
            metrics = compress(spec).metrics
        finally:
            speed_target.plan_for_speedup = original
        rows[name] = {
            "shape": {"layers": layers, "hidden": hidden, "ffn": ffn, "heads": heads},
            "recipe": args.recipe or "engine defaults",
            "seed": args.seed,
            "params_ratio_non_embedding": metrics.get("params_ratio_non_embedding"),
            "student_accuracy": metrics["student"]["accuracy"],
            "teacher_accuracy": metrics["teacher"]["accuracy"],
            "retention": metrics["retention"],
            "speedup_cpu_bs1": metrics.get("speedup_cpu_bs1"),
            "wall_s": round(time.time() - start),
            "load_1m_at_start": load,
        }
        print(name, rows[name], flush=True)
        write(args.out, teacher, args.target, rows)


def write(out: Path, teacher: Path, target: float, rows: dict[str, Any]) -> None:
    result = {
        "what": __doc__.splitlines()[0] + " (bench/shapes.py)",
        "date": dt.date.today().isoformat(),
        "machine": machine(2),
        "teacher": str(teacher.relative_to(ROOT)),
        "target_named": target,
        "note": "speedup_cpu_bs1 is the engine's own two-model timing of each run, not an "
        "interleaved pass over all variants: compare accuracies here, speed in the benchmark",
        "variants": rows,
    }
    write_dated(out, "shapes", result, "variants")


if __name__ == "__main__":
    main()
