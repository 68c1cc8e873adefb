"""How much a modelpress row of the SST-2 benchmark moves with the training seed.

Runs rows of ``bench/sst2.py`` again through the same ``compress()`` call, on the teacher
and the training rows its last run of that mode cached (the teacher's own seed and
weights unchanged), with other values of ``training.seed``: the order of the batches,
the hidden-state projections' initialisation and dropout. Dev accuracy is the engine's
own evaluation on the 872 dev sentences (the benchmark's final pass scores the same
way); no timing, so other work on the machine does not matter.

    python bench/seeds.py --mode full --seeds 1,2    # after sst2.py --max-train-rows 5000
    python bench/seeds.py --results bench/results/sst2-full-cpu2-lr1e-4.json \
        --rows "modelpress speedup=2.15 +ffn"       # the rows of another run, its lr

The learning rate is the one the results file's run used (its ``setup.args``). A
``speedup`` row times its plan anew, so for those rows the machine should be quiet.

The bar of issue #3 is read on single-seed rows; this says how far apart seeds land
(engine scores only). Issue #20's bar over seeds, timed in every runtime, is
``bench/sst2.py --seeds 0,1,2``.
Results: bench/results/seeds-<mode>-<date>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench import sst2_modelpress  # noqa: E402
from bench.common import CACHE, cached_mode_teacher, machine, write_dated  # noqa: E402
from workers.engine.spec import TrainingSpec  # noqa: E402

# The settings sst2.py used per mode (its MODES), and the teacher key they produce.
MODES = {
    "quick": {"epochs": 2, "teacher_epochs": 2},
    "full": {"epochs": 3, "teacher_epochs": 3},
}
DEFAULT_ROWS = "modelpress params_ratio=0.5,modelpress params_ratio=0.25 +ffn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--rows", default=DEFAULT_ROWS, help="comma-separated methods")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--results", type=Path, default=None, help="sst2.py results (default sst2-<mode>-cpu2)"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    mode = MODES[args.mode]
    data = CACHE / "runs" / args.mode
    default_results = ROOT / "bench" / "results" / f"sst2-{args.mode}-cpu2.json"
    results_file = (args.results or default_results).resolve()
    results = json.loads(results_file.read_text())
    earlier = {r["method"]: r for r in results["rows"]}
    learning_rate = results["setup"]["args"]["learning_rate"]
    wanted = [m.strip() for m in args.rows.split(",") if m.strip()]
    known = {r.method: r for r in sst2_modelpress.rows((0.5, 0.25), (), (2.15, 3.15), (1.3, 2.2))}
    unknown = [m for m in wanted if m not in known]
    if unknown:
        parser.error(f"--rows: unknown {unknown}; choose from {list(known)}")
    teacher = cached_mode_teacher(mode["epochs"], args.mode)
    rows: dict[str, Any] = {}
    for method in wanted:
        accuracies = {0: earlier[method]["dev_accuracy"]}  # the benchmark's own row
        # A speedup row's shape is timed anew in every run, so it can differ by seed.
        shapes = {0: _shape(earlier[method]["details"]["pruning_plan"])}
        for seed in (int(s) for s in args.seeds.split(",") if s):
            training = dataclasses.replace(
                TrainingSpec(
                    epochs=mode["epochs"],
                    batch_size=32,
                    learning_rate=learning_rate,
                    max_seq_length=128,
                    teacher_epochs=mode["teacher_epochs"],
                    teacher_learning_rate=1e-4,
                    checkpoint_every_steps=0,
                ),
                seed=seed,
            )
            record = sst2_modelpress.run(
                known[method],
                teacher_dir=teacher,
                splits=(data / "train.jsonl", data / "dev.jsonl"),
                training=training,
                work=CACHE / "seeds" / results_file.stem / f"seed{seed}",
                device="cpu",
                threads=2,
            )
            accuracies[seed] = record["details"]["engine_student_accuracy"]
            shapes[seed] = _shape(record["details"]["pruning_plan"])
            print(method, seed, accuracies[seed], flush=True)
        teacher_accuracy = json.loads((teacher / "bench-teacher.json").read_text())["finetune"][
            "accuracy"
        ]
        values = list(accuracies.values())
        # Keyed by the run too: the same method at another learning rate is another row.
        rows[f"{method} ({results_file.name})"] = {
            "results_file": str(results_file.relative_to(ROOT)),
            "learning_rate": learning_rate,
            "dev_accuracy_by_seed": {str(k): v for k, v in accuracies.items()},
            "retention_by_seed": {str(k): v / teacher_accuracy for k, v in accuracies.items()},
            "shape_by_seed": {str(k): v for k, v in shapes.items()},
            "mean": statistics.mean(values),
            "spread_points": 100 * (max(values) - min(values)),
        }
        write(args, teacher, rows)


def _shape(plan: dict[str, Any]) -> str:
    return f"{plan['num_layers']} x {plan['intermediate_size']}"


def write(args: argparse.Namespace, teacher: Path, rows: dict[str, Any]) -> None:
    result = {
        "what": __doc__.splitlines()[0] + " (bench/seeds.py)",
        "date": dt.date.today().isoformat(),
        "mode": args.mode,
        "machine": machine(2),
        "teacher": str(teacher.relative_to(ROOT)),
        "note": "seed 0 is the benchmark's committed row (its final pass); the others are "
        "the engine's own evaluation of the same dev sentences",
        "rows": rows,
    }
    write_dated(args.out, f"seeds-{args.mode}", result, "rows")


if __name__ == "__main__":
    main()
