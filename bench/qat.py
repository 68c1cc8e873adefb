"""Quantization-aware distillation on SST-2 (issue #20): the same job with and without
``export.quantization_aware``, its int8 export scored against its fp32 student.

Each row is one ``compress()`` run (bench/sst2_modelpress.py) on bench/sst2.py's
cached teacher and rows (the same settings select the same cache), ``export.formats``
safetensors and onnx-int8; the job itself scores both formats on the dev split
(``details.engine_formats``). What int8 costs a row is its onnx-int8 accuracy against
its own PyTorch accuracy; what quantization-aware distillation buys is that cost with
it against without it, same target, seed and budget.

    python bench/qat.py --max-train-rows 5000 --learning-rate 1e-4 \\
        --teacher-learning-rate 1e-4 --targets params_ratio=0.5,sparsity=0.5 \\
        --fractions 0,0.2

writes ``bench/results/qat-<date>.json`` and ``.md``, rewritten after each row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import sst2, sst2_modelpress
from bench.common import cached_teacher, load_1m, machine, training_spec
from bench.sst2_modelpress import EngineRow
from workers.engine.spec import PruningSpec, TargetSpec

RESULTS = Path(__file__).resolve().parent / "results"


def engine_row(target: str, fraction: float) -> EngineRow:
    kind, value = target.split("=")
    spec = (
        TargetSpec(sparsity=float(value), pattern="unstructured")
        if kind == "sparsity"
        else TargetSpec(params_ratio=float(value))
    )
    structured = () if kind == "sparsity" else ("layers", "ffn")
    return EngineRow(
        f"modelpress {target} quantization_aware={fraction}",
        f"{target}" + (" (structured: layers, ffn)" if structured else " unstructured"),
        spec,
        PruningSpec(structured=structured) if structured else PruningSpec(),
        formats=("safetensors", "onnx-int8"),
        quantization_aware=fraction,
    )


def summary(record: dict[str, Any]) -> dict[str, Any]:
    formats = record["details"]["engine_formats"]
    fp32, int8 = formats["safetensors"]["accuracy"], formats["onnx-int8"]["accuracy"]
    return {
        "method": record["method"],
        "wall_s": record["wall_s"],
        "pytorch_accuracy": fp32,
        "int8_accuracy": int8,
        "int8_change_points": 100 * (int8 - fp32),
        "teacher_accuracy": record["details"]["engine_teacher_accuracy"],
        "int8_latency_ms_cpu_bs1": formats["onnx-int8"].get("latency_ms_cpu_bs1"),
        "quantization_aware": (record["details"]["pruning_plan"] or {}).get("quantization_aware"),
    }


def markdown(out: dict[str, Any]) -> str:
    m = out["machine"]
    lines = [
        f"# Quantization-aware distillation on SST-2 ({out['date']})",
        "",
        f"Machine: {m['cpu']}, int8 extensions {m.get('int8_isa')}, {m['threads']} threads. "
        f"{out['setup']}. int8: the engine's (weights 8-bit; 7-bit with "
        "quantization_aware), scored by each job on the 872 dev sentences (one is 0.11 "
        "points).",
        "",
        "| row | PyTorch accuracy | int8 accuracy | int8 change (points) | teacher "
        "| int8 from step | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["rows"]:
        qat = r["quantization_aware"]
        since = f"{qat['from_step']} of {qat['steps']}" if qat else "-"
        lines.append(
            f"| {r['method']} | {r['pytorch_accuracy']:.4f} | {r['int8_accuracy']:.4f} | "
            f"{r['int8_change_points']:+.2f} | {r['teacher_accuracy']:.4f} | "
            f"{since} | {r['wall_s']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="params_ratio=0.5")
    parser.add_argument("--fractions", default="0,0.2")
    parser.add_argument("--name", default=None, help="results file stem (default dated)")
    own, rest = parser.parse_known_args()
    args = sst2.parse_args(rest)
    work = args.work.parent / "qat"
    data = sst2.prepare_data(args, work)
    teacher_dir, _ = cached_teacher(data.train, data.dev_file, args, args.device)
    out: dict[str, Any] = {
        "benchmark": "qat",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(args.threads),
        "setup": f"{len(data.train)} training rows, {args.epochs} epochs, lr "
        f"{args.learning_rate}, seed {args.seed}; teacher {teacher_dir.name}",
        "rows": [],
    }
    path = RESULTS / f"{own.name or 'qat-' + dt.date.today().isoformat()}.json"
    for target in own.targets.split(","):
        for fraction in (float(f) for f in own.fractions.split(",")):
            start = time.perf_counter()
            record = sst2_modelpress.run(
                engine_row(target, fraction),
                teacher_dir=teacher_dir,
                splits=(data.train_file, data.dev_file),
                training=training_spec(args),
                work=work,
                device=args.device,
                threads=args.threads,
                latency_budget_s=args.latency_budget_s,
            )
            if "skipped" in record:
                raise SystemExit(record["skipped"])
            out["rows"].append(summary(record))
            out["wall_s"] = round(out.get("wall_s", 0) + time.perf_counter() - start, 1)
            out["load_1m_end"] = load_1m()
            path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
            path.with_suffix(".md").write_text(markdown(out), encoding="utf-8")
            print(markdown(out), file=sys.stderr)
    print(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
