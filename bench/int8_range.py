"""8-bit or 7-bit int8 weights: what ONNX Runtime's int8 costs on a CPU without VNNI.

ONNX Runtime's dynamic int8 multiplies uint8 activations by int8 weights
(MatMulInteger). On an x86 CPU without a VNNI or AMX extension (AVX2 only: this
project's AMD EPYC hosts) its kernel adds each pair of uint8 x int8 products into an
int16 with saturation (``vpmaddubsw``): 255 x 127 x 2 overflows, and the result is not
the integer product the quantized model describes. Found on this machine: a Linear layer
quantized per channel gave outputs 0.67 away from the exact integer result, which a
NumPy emulation of the saturating pairs reproduced to 1e-7 (tests/engine/
test_fake_quant.py keeps that check). ``reduce_range`` (weights in -64..64) cannot
overflow, on any CPU, at the price of one bit of weight precision.

For each model (a ``save_pretrained`` folder): its fp32 ONNX export, the engine's int8
with 8-bit weights and with 7-bit weights, each scored on the SST-2 dev split in ONNX
Runtime, the mean and largest logit change against fp32 ONNX (a finer reading than
accuracy on 872 sentences), and the three timed together in turns (bs1, bs32).

    python bench/int8_range.py --model teacher=bench/.cache/teacher-... \\
        --from-rows bench/.cache/runs/full/trained-rows.json

writes ``bench/results/int8-range-<date>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CACHE, DATA, encoded, load_1m, machine, read_tsv, write_jsonl
from bench.onnx_int8 import score_and_time
from bench.runtimes import export_example, slug
from workers.engine import onnx_export as ox
from workers.engine.data import iter_batches
from workers.engine.teacher import load_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"int8 (8-bit weights)": False, "int8 (7-bit weights, reduce_range)": True}


def models_from(args: argparse.Namespace) -> dict[str, Path]:
    models = dict(m.split("=", 1) for m in args.model)
    for path in args.from_rows:
        text = Path(path).read_text(encoding="utf-8")
        rows = (
            json.loads(text)["rows"]
            if path.endswith(".json")
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
        for row in rows:
            if row.get("model_dir") and (Path(row["model_dir"]) / "config.json").is_file():
                models.setdefault(row["method"], row["model_dir"])
    return {name: Path(folder) for name, folder in models.items()}


def logit_change(a: Any, b: Any, batches: list[Any]) -> dict[str, float]:
    """Mean and largest |logit difference| of two sessions over ``batches``."""
    diffs = [(ox.ort_logits(a, batch) - ox.ort_logits(b, batch)).abs() for batch in batches]
    flat = torch.cat([d.flatten() for d in diffs])
    return {"mean_abs_logit_change": float(flat.mean()), "max_abs_logit_change": float(flat.max())}


def measure(name: str, folder: Path, dev: Any, tokenizer: Any, args: Any) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification

    work = args.work / slug(name)
    fp32 = work / "fp32" / ox.ONNX_FILE
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    ox.export_onnx(model, export_example(tokenizer, dev.texts, args.max_seq_length), fp32)
    files = {"fp32": fp32}
    for variant, reduce in VARIANTS.items():
        files[variant] = work / ("int8-7bit" if reduce else "int8-8bit") / ox.ONNX_FILE
        ox.quantize_int8(fp32, files[variant], reduce_range=reduce)
    pad = int(tokenizer.pad_token_id)
    rows = score_and_time(files, dev, tokenizer, pad, args)
    probe = list(iter_batches(dev, args.batch_size, pad_token_id=pad))[: args.probe_batches]
    fp32_session = ox.session(fp32, threads=args.threads)
    for variant in VARIANTS:
        rows[variant] |= logit_change(
            ox.session(files[variant], threads=args.threads), fp32_session, probe
        )
    return {"model_dir": str(folder), "variants": rows}


def table(out: dict[str, Any]) -> str:
    m = out["machine"]
    lines = [
        f"# int8 with 8-bit or 7-bit weights ({out['date']})",
        "",
        f"Machine: {m['cpu']}, int8 extensions {m.get('int8_isa')}, {m['threads']} threads; "
        f"onnxruntime {m['onnxruntime']}. SST-2 dev, {out['dev_rows']} rows; logit change "
        f"against fp32 ONNX over the first {out['probe_rows']} rows; latency in turns "
        "(the engine's interleaved_latency_ms), 128 tokens.",
        "",
        "| model | runtime | accuracy | change (points) | mean abs logit change "
        "| max abs logit change | MB | bs1 ms | bs32 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, model in out["models"].items():
        for variant, r in model["variants"].items():
            lines.append(
                f"| {name} | {variant} | {r['accuracy']:.4f} | "
                f"{r['accuracy_change_points']:+.2f} | "
                f"{r.get('mean_abs_logit_change', 0):.4f} | "
                f"{r.get('max_abs_logit_change', 0):.3f} | {r['size_bytes'] / 1e6:.1f} | "
                f"{r['latency_ms_cpu_bs1']:.2f} | {r['latency_ms_cpu_bs32']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=FOLDER")
    parser.add_argument(
        "--from-rows",
        action="append",
        default=[],
        help="a benchmark's trained-rows.json or rows log (.jsonl): every row's model_dir",
    )
    parser.add_argument("--only", default="", help="comma-separated substrings of names")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--probe-batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=CACHE / "int8-range")
    parser.add_argument("--name", default=None, help="results file stem (default dated)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = models_from(args)
    wanted = [w for w in args.only.split(",") if w]
    models = {n: f for n, f in models.items() if not wanted or any(w in n for w in wanted)}
    if not models:
        raise SystemExit("no models: give --model NAME=FOLDER or --from-rows FILE")
    tokenizer = load_tokenizer(next(iter(models.values())))
    args.work.mkdir(parents=True, exist_ok=True)
    dev_file = write_jsonl(args.work / "dev.jsonl", read_tsv(DATA / "dev.tsv"))
    dev = encoded(tokenizer, dev_file, split="eval", max_length=args.max_seq_length)
    out: dict[str, Any] = {
        "benchmark": "int8-range",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(args.threads),
        "dev_rows": len(dev),
        "probe_rows": min(len(dev), args.probe_batches * args.batch_size),
        "models": {},
    }
    path = RESULTS / f"{args.name or 'int8-range-' + dt.date.today().isoformat()}.json"
    start = time.perf_counter()
    for name, folder in models.items():
        print(f"[int8-range] {name} ({folder})", file=sys.stderr, flush=True)
        out["models"][name] = measure(name, folder, dev, tokenizer, args)
        out["wall_s"] = round(time.perf_counter() - start, 1)
        out["load_1m_end"] = load_1m()
        # Written after each model: a run cut off keeps what it measured.
        path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        path.with_suffix(".md").write_text(table(out), encoding="utf-8")
    print(table(out))
    print(f"wrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
