"""Which student recipe keeps the most of an SST-2 teacher at params_ratio 0.5 (or 0.25).

Runs ``compress()`` on the teacher and the training rows that ``bench/sst2.py --quick``
cached (run that first: 4,000 SST-2 rows, seed 0, teacher fine-tuned 2 epochs), scored
on the 872 dev sentences, 2 epochs each, one seed, ``structured=["layers","ffn"]`` and
``prune_then_distill`` unless a variant says otherwise. The engine's defaults are
alpha 0.5 (CE on the labels, the rest KL to the teacher), temperature 2, hidden-state
MSE on, learning rate 5e-5 (the benchmark's ``+ffn`` row). Variants change one or two
of: the target (0.5 unless named "0.25 ..."), ``alpha``, the hidden-state loss, the
learning rate, the strategy, what may be removed (``hidden`` adds the hidden width) and
the planner's FFN floor (1/4 of the teacher's width; 1/8 lets width-before-depth keep
all six layers at 0.5, set for that run only).

One seed each: a direction, not a law. Results: bench/results/recipes-<date>.json (a
second run the same day adds its variants to the file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.jobspec import plan as P  # noqa: E402
from bench.common import (  # noqa: E402
    CACHE,
    cached_mode_teacher,
    load_1m,
    machine,
    study_spec,
    write_dated,
)
from workers.engine.compress import compress  # noqa: E402
from workers.engine.spec import (  # noqa: E402
    DistillationSpec,
    PruningSpec,
    TargetSpec,
    TrainingSpec,
)

LAYERS_FFN = ("layers", "ffn")


@dataclass(frozen=True)
class Variant:
    ratio: float = 0.5
    structured: tuple[str, ...] = LAYERS_FFN
    strategy: str = "prune_then_distill"
    learning_rate: float = 5e-5
    ffn_floor: float = 0.25
    alpha: float = 0.5
    hidden_states: bool = True


VARIANTS: dict[str, Variant] = {
    "base": Variant(),
    "kd-only": Variant(alpha=0.0),
    "kd-only no-hidden": Variant(alpha=0.0, hidden_states=False),
    "no-hidden": Variant(hidden_states=False),
    "lr1e-4": Variant(learning_rate=1e-4),
    "kd-only lr1e-4": Variant(alpha=0.0, learning_rate=1e-4),
    "layers kd-only": Variant(structured=("layers",), alpha=0.0),
    "joint kd-only": Variant(strategy="joint", alpha=0.0),
    "ffn-floor-1/8 kd-only": Variant(ffn_floor=0.125, alpha=0.0),
    # Hidden width too: width before depth keeps more layers at the same size
    # (Minitron); whether it pays at bs1 latency is the benchmark's question.
    "hidden": Variant(structured=("layers", "ffn", "hidden")),
    "0.25": Variant(ratio=0.25),
    "0.25 hidden": Variant(ratio=0.25, structured=("layers", "ffn", "hidden")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument("--work", type=Path, default=CACHE / "recipes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = CACHE / "runs" / "quick"
    teacher = cached_mode_teacher(2, "quick")
    floor = P.MIN_FFN_FRACTION
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {list(VARIANTS)}")
    rows: dict[str, Any] = {}
    for name in names:
        v = VARIANTS[name]
        P.MIN_FFN_FRACTION = v.ffn_floor  # this run only; restored below
        run = args.work / name.replace(" ", "_").replace("/", "-")
        spec = study_spec(
            teacher,
            data,
            run,
            target=TargetSpec(params_ratio=v.ratio),
            strategy=v.strategy,
            distillation=DistillationSpec(alpha=v.alpha, hidden_states=v.hidden_states),
            pruning=PruningSpec(structured=v.structured),
            training=TrainingSpec(
                epochs=2,
                batch_size=32,
                learning_rate=v.learning_rate,
                max_seq_length=128,
                seed=0,
                teacher_epochs=0,
                checkpoint_every_steps=0,
            ),
        )
        start, load = time.time(), load_1m()
        metrics = compress(spec).metrics
        P.MIN_FFN_FRACTION = floor
        plan = metrics.get("pruning_plan") or {}
        rows[name] = {
            **asdict(v),
            "shape": f"{plan.get('num_layers')} x {plan.get('intermediate_size')}"
            + (f", hidden {plan['hidden_size']}" if "hidden_size" in plan else ""),
            "params_ratio_non_embedding": metrics.get("params_ratio_non_embedding"),
            "student_accuracy": metrics["student"]["accuracy"],
            "teacher_accuracy": metrics["teacher"]["accuracy"],
            "retention": metrics["retention"],
            "speedup_cpu_bs1": metrics.get("speedup_cpu_bs1"),
            "wall_s": round(time.time() - start),
            "load_1m_at_start": load,
        }
        print(name, rows[name], flush=True)
        # Written after every variant: a run cut short keeps what it measured.
        write(args.out, teacher, rows)


def write(out: Path, teacher: Path, rows: dict[str, Any]) -> None:
    result = {
        "what": __doc__.splitlines()[0] + " (bench/recipes.py)",
        "date": dt.date.today().isoformat(),
        "machine": machine(2),
        "teacher": str(teacher),
        "note": "speedup_cpu_bs1 is the engine's own two-model timing of each run, "
        "not an interleaved pass over all variants: compare accuracies here, speed in "
        "the benchmark",
        "variants": rows,
    }
    write_dated(out, "recipes", result, "variants")


if __name__ == "__main__":
    main()
