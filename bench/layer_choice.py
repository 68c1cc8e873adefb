"""Which teacher layers a 3-of-6 MiniLM student should keep, per task.

The engine's default for sentence classification keeps TinyBERT's uniform map
([1, 3, 5]: the top layer, whose output the head was trained on); DistilBERT keeps every
other layer from the bottom ([0, 2, 4]). This runs compress() at params_ratio 0.5
(layers only, engine defaults otherwise, 2 epochs) with each map forced, on:

- ``--task conll``: the CoNLL-2003 quick data and teacher that ``bench/conll2003.py
  --quick --max-train-rows 1500 --epochs 2 --teacher-epochs 2 --max-test-rows 1500``
  cached (run that first); scored on the first 1,000 eng.testa sentences;
- ``--task sst2``: 2,000 SST-2 training sentences (seed 0), the teacher fine-tuned on
  them (2 epochs, cached), scored on the 872 dev sentences.

One seed each: a direction, not a law. Results: bench/results/layer-choice-*.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from app.jobspec import plan as P  # noqa: E402
from bench.common import cached_teacher, read_tsv, write_jsonl  # noqa: E402
from workers.engine.compress import compress  # noqa: E402
from workers.engine.spec import CompressionSpec, TargetSpec, TrainingSpec  # noqa: E402

MAPS = ([1, 3, 5], [0, 2, 4], [0, 2, 5])
NER_LABELS = ("O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER")


def _conll(work: Path) -> tuple[Path, Path, Path, tuple[str, ...], str]:
    result = json.loads((ROOT / "bench/results/conll2003-quick-cpu2.json").read_text())
    data = ROOT / "bench/.cache/conll2003/quick"
    lines = (data / "validation.jsonl").read_text().splitlines()
    val = write_jsonl(work / "val.jsonl", [json.loads(x) for x in lines if x.strip()][:1000])
    teacher = Path(result["teacher"]["folder"])
    return teacher, data / "train.jsonl", val, NER_LABELS, "token-classification"


def _sst2(work: Path) -> tuple[Path, Path, Path, tuple[str, ...], str]:
    rows = read_tsv(Path("/work/shared/data/sst2/train.tsv"))
    random.Random(0).shuffle(rows)
    rows = rows[:2000]
    dev = write_jsonl(work / "dev.jsonl", read_tsv(Path("/work/shared/data/sst2/dev.tsv")))
    train = write_jsonl(work / "train.jsonl", rows)
    args = types.SimpleNamespace(
        teacher_epochs=2, teacher_learning_rate=1e-4, batch_size=32, max_seq_length=64, seed=0
    )
    teacher, _ = cached_teacher(rows, dev, args)
    return teacher, train, dev, ("negative", "positive"), "sequence-classification"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("conll", "sst2"), required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/layer-choice"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    teacher, train, evaluation, labels, task = (_conll if args.task == "conll" else _sst2)(
        args.work
    )
    uniform = P.evenly_spaced_layers
    out = {}
    for layers in MAPS:
        # Forced for this experiment only: the plan keeps 3 of 6 at params_ratio 0.5.
        P.evenly_spaced_layers = lambda n, k, layers=layers: (
            list(layers) if k == 3 else uniform(n, k)
        )
        P.LAYER_RULES["top"] = P.evenly_spaced_layers
        P.LAYER_RULES["first_last"] = P.evenly_spaced_layers
        run = args.work / "-".join(map(str, layers))
        spec = CompressionSpec(
            task=task,
            teacher_dir=teacher,
            train_file=train,
            eval_file=evaluation,
            label_names=labels,
            output_dir=run / "out",
            work_dir=run / "work",
            target=TargetSpec(params_ratio=0.5),
            training=TrainingSpec(
                epochs=2,
                batch_size=32,
                learning_rate=1e-4,
                teacher_epochs=0,
                checkpoint_every_steps=0,
                max_seq_length=64 if task == "sequence-classification" else 128,
            ),
            device="cpu",
        )
        start = time.time()
        metrics = compress(spec).metrics
        main_metric = metrics["main_metric"]
        out[str(layers)] = {
            "layer_map": metrics["layer_map"],
            "student": metrics["student"][main_metric],
            "teacher": metrics["teacher"][main_metric],
            "retention": metrics["retention"],
            "wall_s": round(time.time() - start),
        }
        print(layers, out[str(layers)], flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
