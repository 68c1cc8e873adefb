"""Which student recipe keeps the most of an SST-2 teacher at params_ratio 0.5.

Runs ``compress()`` on the teacher and the training rows that ``bench/sst2.py --quick``
cached (run that first: 4,000 SST-2 rows, seed 0, teacher fine-tuned 2 epochs), scored
on the 872 dev sentences, 2 epochs each, one seed. Variants:

- ``base``: the engine's defaults with ``structured=["layers","ffn"]`` (what the
  benchmark's ``+ffn`` row runs), learning rate 5e-5;
- ``lr1e-4``: the same at learning rate 1e-4;
- ``layers lr1e-4``: layers only at 1e-4 (the benchmark's plain row runs 5e-5);
- ``joint`` and ``joint lr1e-4``: ``strategy="joint"`` (two rounds, 0.71 then 0.5, the
  FFN narrowed while distilling);
- ``ffn floor 1/8 lr1e-4``: the planner's FFN floor lowered from 1/4 to 1/8 of the
  teacher's width for this run only, so width-before-depth keeps all six layers.

One seed each: a direction, not a law. Results: bench/results/recipes-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.common import CACHE, LABELS, load_1m, machine  # noqa: E402
from workers.engine import plan as P  # noqa: E402
from workers.engine.compress import compress  # noqa: E402
from workers.engine.spec import (  # noqa: E402
    CompressionSpec,
    PruningSpec,
    TargetSpec,
    TrainingSpec,
)

LAYERS_FFN = ("layers", "ffn")
# name: (structured, strategy, learning rate, FFN floor fraction)
VARIANTS: dict[str, tuple[tuple[str, ...], str, float, float]] = {
    "base": (LAYERS_FFN, "prune_then_distill", 5e-5, 0.25),
    "lr1e-4": (LAYERS_FFN, "prune_then_distill", 1e-4, 0.25),
    "layers lr1e-4": (("layers",), "prune_then_distill", 1e-4, 0.25),
    "joint": (LAYERS_FFN, "joint", 5e-5, 0.25),
    "joint lr1e-4": (LAYERS_FFN, "joint", 1e-4, 0.25),
    "ffn floor 1/8 lr1e-4": (LAYERS_FFN, "prune_then_distill", 1e-4, 0.125),
}


def quick_teacher() -> Path:
    """The teacher sst2.py --quick fine-tuned (the only cached one with its row count)."""
    for meta in sorted(CACHE.glob("teacher-*/bench-teacher.json")):
        key = json.loads(meta.read_text())["key"]
        if key["epochs"] == 2 and key["max_seq_length"] == 128 and key["lr"] == 1e-4:
            return meta.parent
    raise SystemExit("no cached quick teacher: run bench/sst2.py --quick first")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument("--work", type=Path, default=CACHE / "recipes")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = CACHE / "runs" / "quick"
    teacher = quick_teacher()
    floor = P.MIN_FFN_FRACTION
    rows: dict[str, Any] = {}
    for name in [n for n in args.only.split(",") if n]:
        structured, strategy, lr, ffn_floor = VARIANTS[name]
        P.MIN_FFN_FRACTION = ffn_floor  # this run only; restored below
        run = args.work / name.replace(" ", "_").replace("/", "-")
        spec = CompressionSpec(
            task="sequence-classification",
            teacher_dir=teacher,
            train_file=data / "train.jsonl",
            eval_file=data / "dev.jsonl",
            label_names=LABELS,
            output_dir=run / "out",
            work_dir=run / "work",
            target=TargetSpec(params_ratio=0.5),
            strategy=strategy,
            pruning=PruningSpec(structured=structured),
            training=TrainingSpec(
                epochs=2,
                batch_size=32,
                learning_rate=lr,
                max_seq_length=128,
                seed=0,
                teacher_epochs=0,
                checkpoint_every_steps=0,
            ),
            device="cpu",
        )
        start, load = time.time(), load_1m()
        metrics = compress(spec).metrics
        P.MIN_FFN_FRACTION = floor
        plan = metrics.get("pruning_plan") or {}
        rows[name] = {
            "structured": list(structured),
            "strategy": strategy,
            "learning_rate": lr,
            "ffn_floor_fraction": ffn_floor,
            "shape": f"{plan.get('num_layers')} x {plan.get('intermediate_size')}",
            "params_ratio_non_embedding": metrics.get("params_ratio_non_embedding"),
            "student_accuracy": metrics["student"]["accuracy"],
            "teacher_accuracy": metrics["teacher"]["accuracy"],
            "retention": metrics["retention"],
            "speedup_cpu_bs1": metrics.get("speedup_cpu_bs1"),
            "wall_s": round(time.time() - start),
            "load_1m_at_start": load,
        }
        print(name, rows[name], flush=True)
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
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"recipes-{result['date']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
