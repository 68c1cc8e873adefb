"""What ONNX export and int8 quantization cost and give on a real model (issue #20).

MiniLM-L6 fine-tuned on SST-2 training rows (bench/common.py's cached teacher), then a
modelpress job on it asking for every format (``compress()`` with ``export.formats``
safetensors, onnx, onnx-int8): the job's own report gives the export time, the parity
and every format scored and timed in its runtime. Then int8 variants of both the
teacher and that student, each scored on the SST-2 dev split and timed at batch 1 and 32
against PyTorch fp32 in one interleaved pass:

- ``dynamic``: per-channel int8 weights of MatMul/Gemm (the engine's first choice);
- ``dynamic-per-tensor``: one scale per weight matrix;
- ``dynamic+embeddings``: Gather (the embedding tables) quantized too (what the engine
  ships since this file's first results: workers/engine/onnx_export.py);
- ``dynamic-no-head``: the classifier and pooler left in fp32;
- ``static-qdq``: QDQ with activations calibrated on 256 training rows (MinMax).

    python bench/onnx_int8.py [--train-rows 6000] [--threads 2]

writes ``bench/results/onnx-int8-<date>.json`` (and prints a table).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    DATA,
    LABELS,
    PrintCallback,
    cached_teacher,
    encoded,
    load_1m,
    machine,
    read_tsv,
    study_spec,
    write_jsonl,
)
from workers.engine import onnx_export as ox
from workers.engine.compress import compress
from workers.engine.data import iter_batches
from workers.engine.evaluate import interleaved_latency_ms
from workers.engine.formats import ort_quality, ort_runner
from workers.engine.progress import Progress
from workers.engine.spec import ExportSpec, NullCallback, TargetSpec, TrainingSpec
from workers.engine.tasks import get_task
from workers.engine.teacher import load_tokenizer

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=6000)
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--teacher-learning-rate", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument(
        "--job-train-rows", type=int, default=2000, help="the job distils on the first rows"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--params-ratio", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true", help="rewrite the .md only")
    parser.add_argument("--name", default=None, help="results file stem (default dated)")
    parser.add_argument("--no-variants", action="store_true", help="the job alone")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / ".cache" / "onnx")
    parser.add_argument(
        "--retime",
        type=int,
        default=0,
        help="only time the last run's models again, this many interleaved passes, and add "
        "them to its results file (the job's own pass may have shared the cores)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.retime:
        retime(args)
    if args.retime or args.markdown:
        path = _results_path(args)
        path.with_suffix(".md").write_text(_table(json.loads(path.read_text())), encoding="utf-8")
        return

    args.work.mkdir(parents=True, exist_ok=True)
    train_rows = read_tsv(DATA / "train.tsv")[: args.train_rows]
    dev_file = write_jsonl(args.work / "dev.jsonl", read_tsv(DATA / "dev.tsv"))
    write_jsonl(args.work / "train.jsonl", train_rows)
    teacher_dir, finetune = cached_teacher(train_rows, dev_file, args)
    data = args.work / "data"
    data.mkdir(exist_ok=True)
    write_jsonl(data / "train.jsonl", train_rows[: args.job_train_rows])
    (data / "dev.jsonl").write_text(dev_file.read_text())

    # -- the job, as a user gets it ---------------------------------------------------
    run = args.work / f"job-{args.params_ratio}-{args.job_train_rows}"
    spec = study_spec(
        teacher_dir,
        data,
        run,
        target=TargetSpec(params_ratio=args.params_ratio),
        training=TrainingSpec(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_seq_length=args.max_seq_length,
            seed=args.seed,
            teacher_epochs=0,
            checkpoint_every_steps=0,
        ),
        export=ExportSpec(("safetensors", "onnx", "onnx-int8")),
        latency_threads=args.threads,
    )
    start = time.perf_counter()
    result = compress(spec, PrintCallback("job"))
    job_wall = time.perf_counter() - start
    report = json.loads((spec.output_dir / "report.json").read_text())

    # -- int8 variants, teacher and student ----------------------------------------------
    tokenizer = load_tokenizer(teacher_dir)
    dev = encoded(tokenizer, dev_file, split="eval", max_length=args.max_seq_length)
    calib = encoded(
        tokenizer, data / "train.jsonl", split="train", max_length=args.max_seq_length, rows=256
    )
    pad = int(tokenizer.pad_token_id)
    variants: dict[str, Any] = {}
    for role, fp32 in (
        ()
        if args.no_variants
        else (
            ("teacher", spec.work_dir / "onnx" / "teacher" / "onnx" / ox.ONNX_FILE),
            ("student", spec.output_dir / "model-onnx" / ox.ONNX_FILE),
        )
    ):
        files = {"fp32": fp32, **_variants(fp32, args.work / "variants" / role, calib, pad)}
        variants[role] = score_and_time(files, dev, tokenizer, pad, args)

    out = {
        "benchmark": "onnx-int8",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(args.threads),
        "load_1m_end": load_1m(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "teacher_finetune": finetune,
        "job": {
            "wall_s": round(job_wall, 1),
            "timings_s": report["timings_s"],
            "export": report["export"],
            "formats": report["metrics"]["formats"],
            "teacher_runtimes": report["metrics"]["teacher_runtimes"],
            "artifacts": [a.name for a in result.artifacts],
        },
        "variants": variants,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.name or 'onnx-int8-' + dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    table = _table(out)
    path.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    print(f"wrote {path} and {path.with_suffix('.md')}")


def _results_path(args: argparse.Namespace) -> Path:
    """The named results file, else the latest dated one."""
    if args.name:
        return RESULTS / f"{args.name}.json"
    return max(RESULTS.glob("onnx-int8-????-??-??.json"))


def retime(args: argparse.Namespace) -> None:
    """Teacher and student in PyTorch, ORT and ORT int8, as the job timed them
    (formats.latency_ms), ``args.retime`` times, with the load before each pass."""
    from transformers import AutoModelForSequenceClassification

    from workers.engine.formats import OnnxModels, latency_ms

    run = args.work / f"job-{args.params_ratio}-{args.job_train_rows}"
    out_dir, work = run / "out", run / "work" / "onnx" / "teacher"
    report = json.loads((out_dir / "report.json").read_text())
    teacher_dir = Path(report["bench_teacher_dir"]) if "bench_teacher_dir" in report else None
    teacher_dir = teacher_dir or next(Path(args.work).parent.glob("teacher-*"))
    models = {
        "teacher": AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval(),
        "student": AutoModelForSequenceClassification.from_pretrained(out_dir / "model").eval(),
    }
    files = {
        "teacher": {
            "onnxruntime": work / "onnx" / ox.ONNX_FILE,
            "onnxruntime-int8": work / "onnx-int8" / ox.ONNX_FILE,
        },
        "student": {
            "onnxruntime": out_dir / "model-onnx" / ox.ONNX_FILE,
            "onnxruntime-int8": out_dir / "model-onnx-int8" / ox.ONNX_FILE,
        },
    }
    onnx = OnnxModels(
        files=files,
        sessions={
            role: {rt: ox.session(p, threads=args.threads) for rt, p in by_rt.items()}
            for role, by_rt in files.items()
        },
    )
    tokenizer = load_tokenizer(teacher_dir)
    texts = [
        json.loads(line)["text"] for line in (args.work / "dev.jsonl").read_text().splitlines()
    ]
    passes = []
    for _ in range(args.retime):
        load = load_1m()
        timed = latency_ms(
            models,
            onnx,
            tokenizer,
            texts,
            seq_len=args.max_seq_length,
            threads=args.threads,
            progress=Progress(NullCallback()),
        )
        passes.append({"load_1m_before": load, "ms": timed})
        print(json.dumps(passes[-1]), file=sys.stderr)
    path = _results_path(args)
    result = json.loads(path.read_text())
    result["retimed"] = passes
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"added {len(passes)} passes to {path}")


def _variants(fp32: Path, folder: Path, calib: Any, pad: int) -> dict[str, Path]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    timings: dict[str, float] = {}

    def timed(name: str, make: Any) -> None:
        start = time.perf_counter()
        make(folder / f"{name}.onnx")
        timings[name] = time.perf_counter() - start
        files[name] = folder / f"{name}.onnx"

    # The engine's choice at the time of each results file is in its docstring.
    matmul = ("MatMul", "Gemm")
    timed("dynamic", lambda p: ox.quantize_int8(fp32, p, op_types=matmul))
    timed(
        "dynamic-per-tensor",
        lambda p: ox.quantize_int8(fp32, p, per_channel=False, op_types=matmul),
    )
    timed(
        "dynamic+embeddings",
        lambda p: ox.quantize_int8(fp32, p, op_types=(*matmul, "Gather")),
    )
    timed(
        "dynamic-no-head",
        lambda p: ox.quantize_int8(fp32, p, nodes_to_exclude=ox.head_nodes(fp32), op_types=matmul),
    )

    batches = list(iter_batches(calib, 16, pad_token_id=pad))

    class Reader(CalibrationDataReader):
        def __init__(self, sess_inputs: list[str]) -> None:
            self.rows = iter([{k: b[k].numpy() for k in sess_inputs} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.rows, None)

    def static(path: Path) -> None:
        prepared = path.with_name("static.pre.onnx")
        quant_pre_process(str(fp32), str(prepared), auto_merge=True)
        names = [i.name for i in ox.session(prepared, threads=1).get_inputs()]
        quantize_static(
            str(prepared),
            str(path),
            Reader(names),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        prepared.unlink()

    timed("static-qdq", static)
    print({k: round(v, 1) for k, v in timings.items()}, file=sys.stderr)
    return files


def score_and_time(
    files: dict[str, Path], dev: Any, tokenizer: Any, pad: int, args: Any
) -> dict[str, Any]:
    """Each ONNX file (one named ``fp32``) scored on ``dev`` in ONNX Runtime and timed
    with the others in turns; its accuracy change against ``fp32`` in points."""
    task = get_task("sequence-classification")
    progress = Progress(NullCallback())
    sessions = {name: ox.session(path, threads=args.threads) for name, path in files.items()}
    rows: dict[str, Any] = {}
    for name, sess in sessions.items():
        scores = ort_quality(
            sess,
            dev,
            task=task,
            batch_size=args.batch_size,
            pad_token_id=pad,
            label_names=LABELS,
            progress=progress,
        )
        rows[name] = {**dataclasses.asdict(scores), "size_bytes": ox.file_bytes(files[name])}

    latency = interleaved_latency_ms(
        {name: ort_runner(s) for name, s in sessions.items()},
        tokenizer,
        dev.texts,
        seq_len=args.max_seq_length,
        progress=progress,
    )
    for name, by_bs in latency.items():
        rows[name] |= {f"latency_ms_cpu_bs{bs}": ms for bs, ms in by_bs.items()}
        rows[name]["accuracy_change_points"] = 100 * (
            rows[name]["accuracy"] - rows["fp32"]["accuracy"]
        )
    return rows


def _table(out: dict[str, Any]) -> str:
    job = out["job"]
    lines = [
        f"# ONNX and int8 on MiniLM-L6 / SST-2 ({out['date']})",
        "",
        f"Machine: {out['machine']['cpu']}, {out['args']['threads']} threads, load "
        f"{out['load_1m_end']} at the end (other jobs shared the cores). Dev split: 872 rows; "
        f"sequence length {out['args']['max_seq_length']}.",
        "",
        "## The job (compress() with export.formats safetensors, onnx, onnx-int8)",
        "",
        *([out["note"], ""] if out.get("note") else []),
        f"Wall {job['wall_s']} s; phases {job['timings_s']}; ONNX export "
        f"{job['export']['export_s']} s (onnx-int8 includes the onnx export).",
        "",
        "| Model | Runtime | Accuracy | MB | bs1 ms | bs32 ms | x same runtime (bs1) "
        "| x PyTorch teacher (bs1) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for runtime, r in job["teacher_runtimes"].items():
        lines.append(
            f"| teacher | {runtime} | {r['accuracy']:.4f} | {r['size_bytes'] / 1e6:.1f} "
            f"| {r['latency_ms_cpu_bs1']:.2f} | {r['latency_ms_cpu_bs32']:.2f} | | |"
        )
    for fmt, r in job["formats"].items():
        lines.append(
            f"| student {fmt} | {r['runtime']} | {r['accuracy']:.4f} "
            f"| {r['size_bytes'] / 1e6:.1f} | {r['latency_ms_cpu_bs1']:.2f} "
            f"| {r['latency_ms_cpu_bs32']:.2f} | {r['speedup_cpu_bs1']:.2f} "
            f"| {r['speedup_vs_teacher_pytorch_cpu_bs1']:.2f} |"
        )
    lines += [
        "",
        f"Parity: {json.dumps(job['export']['parity'])}",
    ]
    if out["variants"]:
        lines += [
            "",
            "## int8 variants (each scored on the dev split, timed in one pass with the others)",
            "",
            "| Model | Variant | Accuracy | Change (points) | MB | bs1 ms | bs32 ms |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
    for role, rows in out["variants"].items():
        for name, r in rows.items():
            lines.append(
                f"| {role} | {name} | {r['accuracy']:.4f} | {r['accuracy_change_points']:+.2f} "
                f"| {r['size_bytes'] / 1e6:.1f} | {r['latency_ms_cpu_bs1']:.2f} "
                f"| {r['latency_ms_cpu_bs32']:.2f} |"
            )
    for i, one in enumerate(out.get("retimed", []), start=1):
        if i == 1:
            lines += [
                "",
                "## Retimed (bench/onnx_int8.py --retime): the job's models, the job's timing",
                "",
                "Eager PyTorch with OpenMP loses most when another process takes one of the "
                "two cores (its threads wait on each other at every barrier); ONNX Runtime's "
                "pool degrades far less. Passes whose PyTorch batch-1 figure is several times "
                "the others' are that, not the models.",
                "",
                "| Pass | Load | Role | PyTorch bs1 | ORT bs1 | ORT int8 bs1 | PyTorch bs32 "
                "| ORT bs32 | ORT int8 bs32 |",
                "|---|---:|---|---:|---:|---:|---:|---:|---:|",
            ]
        for role, by_rt in one["ms"].items():
            cells = [f"{by_rt[rt][str(bs)]:.2f}" for bs in (1, 32) for rt in by_rt]
            lines.append(f"| {i} | {one['load_1m_before']} | {role} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
