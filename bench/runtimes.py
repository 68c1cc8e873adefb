"""Every saved model of a benchmark in each runtime it can be served in, scored and timed
in one pass (issue #20).

- ``pytorch``: the saved safetensors folder in eager PyTorch, fp32;
- ``onnxruntime``: the model exported to ONNX fp32 by the engine's own exporter
  (``workers/engine/onnx_export.export_onnx``), in an ONNX Runtime CPU session;
- ``onnxruntime-int8``: that export quantized by the engine's own int8 recipe
  (``onnx_export.quantize_int8``), what a job's ``export.formats`` ``onnx-int8`` ships.

A modelpress row whose job exported a format itself (its ``model-onnx`` or
``model-onnx-int8`` artifact beside ``model``) is measured from that artifact: what the
user downloads. Every other model is exported here with the same engine code, into
``<work>/<row>/``; an export newer than the model's weights is reused by the next run.

The int8 peers (``OneLiner``) are what a team tries first: a model's fp32 export given to
``onnxruntime.quantization.quantize_dynamic`` with its defaults (per-tensor int8 weights
of every op type it knows, no pre-processing), not the engine's recipe.

Every model in every runtime is then timed in one interleaved pass (``tables.time_rounds``):
the same inputs, the same threads (PyTorch's thread count and each session's intra-op
pool). A model that cannot be loaded, exported or scored in a runtime says why there
(``{"error": ...}``) and is not timed in it; the others go on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from bench.pareto import runtime_rows, with_columns
from bench.tables import time_rounds
from workers.engine import onnx_export as ox
from workers.engine.formats import ARTIFACT, RUNTIME, ort_runner, torch_runner

RUNTIMES = ("pytorch", "onnxruntime", "onnxruntime-int8")
# The job's artifact folder for each ONNX runtime (formats.py: "model-onnx", ...).
JOB_ARTIFACT = {RUNTIME[fmt]: ARTIFACT[fmt] for fmt in ("onnx", "onnx-int8")}
ENGINE_INT8 = (
    "the engine's int8 (onnx_export.quantize_int8: quant_pre_process, then dynamic int8 "
    "per output channel of MatMul, Gemm and Gather)"
)
ONE_LINER = (
    "onnxruntime.quantization.quantize_dynamic(fp32, int8) with its defaults (QInt8 "
    "weights per tensor, every op type it knows, no pre-processing)"
)

# (model or ONNX Runtime session, its runtime) -> scores; the benchmark's own scoring.
Score = Callable[[Any, str], dict[str, Any]]
# folder -> (model, its shape's facts for every runtime, the saved folder's facts).
Load = Callable[[Path], tuple[PreTrainedModel, dict[str, Any], dict[str, Any]]]


def parse_runtimes(text: str) -> tuple[str, ...]:
    """``--runtimes``: a comma-separated subset of RUNTIMES that includes pytorch (the
    teacher in PyTorch fp32 is every speed-up's and retention's reference)."""
    wanted = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in RUNTIMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown runtime(s) {unknown}; choose from {RUNTIMES}")
    if "pytorch" not in wanted:
        raise argparse.ArgumentTypeError("must include pytorch: the reference runtime")
    return tuple(r for r in RUNTIMES if r in wanted)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtimes",
        type=parse_runtimes,
        default=RUNTIMES,
        help="where every model is scored and timed: pytorch (always), onnxruntime, "
        "onnxruntime-int8 (comma-separated; default all)",
    )


def setup(args: argparse.Namespace) -> dict[str, str]:
    """How the final pass measured, for a results file's ``setup``."""
    return {
        "latency": "the engine's interleaved_latency_ms on every model in every runtime at "
        f"once, median of repetitions, {args.threads} threads (PyTorch and each ONNX "
        f"Runtime session), inputs padded to {args.latency_seq_len} tokens; median of "
        f"{args.latency_rounds} round(s)",
        "runtimes": ", ".join(args.runtimes) + " (ONNX rows: the engine's exporter; "
        f"int8: {ENGINE_INT8}; the int8 peers: {ONE_LINER})",
    }


@dataclass(frozen=True)
class OneLiner:
    """An int8 peer: ``source``'s fp32 ONNX export through quantize_dynamic's defaults."""

    method: str
    source: str  # the key in the measured folders whose export it quantizes
    target: str


def int8_peers(distilbert: str) -> tuple[OneLiner, ...]:
    """Issue #20's int8 peers: the teacher and the DistilBERT-style student (the row
    named ``distilbert``), each through the one-liner."""
    return (
        OneLiner(
            "peer: teacher int8 (ONNX Runtime dynamic)",
            "teacher",
            "the teacher's fp32 ONNX export, quantize_dynamic with its defaults",
        ),
        OneLiner(
            "peer: DistilBERT-style int8 (ONNX Runtime dynamic)",
            distilbert,
            "the DistilBERT-style student's fp32 ONNX export, quantize_dynamic with its defaults",
        ),
    )


@dataclass(frozen=True)
class FinalPass:
    """How a benchmark's final pass measures: where, which int8 peers, how it times."""

    runtimes: tuple[str, ...]
    int8_peers: tuple[OneLiner, ...]
    work: Path  # the ONNX files made here
    seq_len: int
    threads: int
    rounds: int
    say: Callable[[str], None]


def final_pass(
    args: argparse.Namespace,
    folders: dict[str, Path],
    peers: Sequence[OneLiner],
    work: Path,
    say: Callable[[str], None],
) -> FinalPass:
    """The pass ``args`` ask for; the int8 peers whose model ran, when int8 is asked."""
    int8 = "onnxruntime-int8" in args.runtimes
    return FinalPass(
        runtimes=tuple(args.runtimes),
        int8_peers=tuple(p for p in peers if int8 and p.source in folders),
        work=work,
        seq_len=args.latency_seq_len,
        threads=args.threads,
        rounds=args.latency_rounds,
        say=say,
    )


def slug(name: str) -> str:
    """A folder name for a row (methods hold spaces, '|', '%', ...), unique by a hash."""
    readable = re.sub(r"[^A-Za-z0-9.=+-]+", "_", name).strip("_")[:60]
    return f"{readable}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def export_example(tokenizer: Any, texts: list[str], seq_len: int) -> dict[str, torch.Tensor]:
    """Two real rows padded to ``seq_len``: the engine's exporter needs a batch of at
    least 2 rows of 2 tokens (onnx_export.example_batch) and makes both axes dynamic."""
    rows = [texts[i % len(texts)] for i in range(2)]
    encoded = tokenizer(
        rows, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt"
    )
    return dict(encoded)


def _fresh(path: Path, *sources: Path) -> bool:
    """``path`` exists and is newer than every file it was made from."""
    if not path.is_file():
        return False
    made = path.stat().st_mtime
    return all(s.stat().st_mtime <= made for s in sources if s.exists())


def _weights(folder: Path) -> list[Path]:
    return [*folder.glob("*.safetensors"), folder / "config.json"]


def _job_made(folder: Path, artifact: Path, runtime: str) -> bool:
    """``artifact`` is the ONNX file the job that saved ``folder`` exported: its report
    (written last) names that format and is newer than both. (The job writes the ONNX
    files while it evaluates, before it saves the safetensors.)"""
    report = folder.parent / "report.json"
    if not (artifact.is_file() and _fresh(report, artifact, *_weights(folder))):
        return False
    formats = json.loads(report.read_text(encoding="utf-8")).get("metrics", {}).get("formats")
    return any(fmt for fmt, r in (formats or {}).items() if r.get("runtime") == runtime)


def onnx_files(
    name: str,
    model: PreTrainedModel,
    folder: Path,
    *,
    work: Path,
    example: dict[str, torch.Tensor],
    runtimes: Sequence[str],
    fp32_needed: bool,
) -> dict[str, tuple[Path, str]]:
    """runtime -> (ONNX file, where it came from) for the ONNX runtimes asked for (and
    the fp32 export when ``fp32_needed``, for an int8 peer made from it)."""
    files: dict[str, tuple[Path, str]] = {}
    wanted = [rt for rt in RUNTIMES[1:] if rt in runtimes or (rt == "onnxruntime" and fp32_needed)]
    for runtime in wanted:
        artifact = folder.parent / JOB_ARTIFACT[runtime] / ox.ONNX_FILE
        if folder.name == "model" and _job_made(folder, artifact, runtime):
            files[runtime] = (artifact, f"the job's {JOB_ARTIFACT[runtime]} artifact")
    here = work / slug(name)
    if "onnxruntime" not in files and wanted:
        fp32 = here / "onnx" / ox.ONNX_FILE
        if not _fresh(fp32, *_weights(folder)):
            ox.export_onnx(model, example, fp32)
        files["onnxruntime"] = (fp32, "exported here by onnx_export.export_onnx (the engine's)")
    if "onnxruntime-int8" in wanted and "onnxruntime-int8" not in files:
        int8 = here / "onnx-int8" / ox.ONNX_FILE
        fp32 = files["onnxruntime"][0]
        if not _fresh(int8, fp32):
            ox.quantize_int8(fp32, int8)
        files["onnxruntime-int8"] = (int8, "quantized here by " + ENGINE_INT8)
    return files


def one_liner_int8(fp32: Path, dest: Path) -> float:
    """The int8 a team tries first, in seconds: one call, ONNX Runtime's defaults."""
    from onnxruntime.quantization import quantize_dynamic

    took = dest.with_name("quantize_s.txt")  # a reused file keeps what it took to make
    if _fresh(dest, fp32) and took.is_file():
        return float(took.read_text())
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    quantize_dynamic(fp32, dest)
    seconds = time.perf_counter() - start
    took.write_text(f"{seconds:.3f}\n")
    return seconds


def _error(exc: Exception) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}


def measure_all(
    folders: dict[str, Path],
    *,
    load: Load,
    score: Score,
    main: str,
    tokenizer: Any,
    texts: list[str],
    final: FinalPass,
) -> dict[str, Any]:
    """name -> runtime -> what was measured (the scores, the shape, ``size_bytes`` of
    what that runtime loads, the latencies, how the file was made), for every folder in
    every runtime and every int8 peer in ``onnxruntime-int8`` (``main``: the score the
    progress lines name); ``"_latency"`` holds the load average around each timing round."""
    runtimes, threads, say = final.runtimes, final.threads, final.say
    example = export_example(tokenizer, texts, final.seq_len)
    sources = {p.source for p in final.int8_peers}
    out: dict[str, Any] = {}
    shapes: dict[str, dict[str, Any]] = {}
    fp32_files: dict[str, Path] = {}
    runners: dict[str, Callable[[dict[str, torch.Tensor]], Any]] = {}
    flat: dict[str, dict[str, Any]] = {}

    def scored(name: str, runtime: str, make: Callable[[], Any], facts: dict[str, Any]) -> None:
        """``make()`` gives the model or session; scored, then queued for timing."""
        try:
            thing = make()
            scores = score(thing, runtime)
        except Exception as exc:  # this runtime says why; the others go on
            out[name][runtime] = _error(exc)
            say(f"could not measure {name} in {runtime}: {exc}")
            return
        out[name][runtime] = {**scores, **facts, "runtime": runtime}
        key = str(len(flat))
        flat[key] = out[name][runtime]
        runners[key] = torch_runner(thing) if runtime == "pytorch" else ort_runner(thing)
        say(f"scored {name} in {runtime}: {main} {scores[main]:.4f}")

    def onnx_facts(path: Path, made: str, quantization: str | None) -> dict[str, Any]:
        return {
            "size_bytes": ox.file_bytes(path),
            "onnx_file": str(path),
            "onnx_made": made,
            "quantization": quantization,
        }

    def opened(path: Path) -> Callable[[], Any]:
        return lambda: ox.session(path, threads=threads)

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name, folder in folders.items():
            out[name] = {}
            try:
                model, shape, saved = load(folder)
            except Exception as exc:  # the row says why in every runtime
                out[name] = {rt: _error(exc) for rt in runtimes}
                say(f"could not load {name}: {exc}")
                continue
            shapes[name] = shape
            scored(name, "pytorch", lambda m=model: m, {**shape, **saved})
            try:
                files = onnx_files(
                    name,
                    model,
                    folder,
                    work=final.work,
                    example=example,
                    runtimes=runtimes,
                    fp32_needed=name in sources,
                )
            except Exception as exc:  # the ONNX runtimes say why; PyTorch stands
                out[name].update({rt: _error(exc) for rt in runtimes if rt != "pytorch"})
                say(f"could not export {name}: {exc}")
                continue
            if "onnxruntime" in files:
                fp32_files[name] = files["onnxruntime"][0]
            for runtime, (path, made) in files.items():
                if runtime in runtimes:
                    quantization = "engine" if runtime == "onnxruntime-int8" else None
                    facts = {**shape, **onnx_facts(path, made, quantization)}
                    scored(name, runtime, opened(path), facts)
        for peer in final.int8_peers:
            out[peer.method] = {}
            if peer.source not in fp32_files:
                error = f"{peer.source} has no fp32 ONNX export to quantize"
                out[peer.method]["onnxruntime-int8"] = {"error": error}
                continue
            dest = final.work / slug(peer.method) / ox.ONNX_FILE
            try:
                seconds = one_liner_int8(fp32_files[peer.source], dest)
            except Exception as exc:
                out[peer.method]["onnxruntime-int8"] = _error(exc)
                say(f"could not make {peer.method}: {exc}")
                continue
            made = f"{peer.source}'s fp32 export through {ONE_LINER}"
            facts = {
                **shapes[peer.source],
                **onnx_facts(dest, made, "one-liner"),
                "quantize_s": round(seconds, 1),
            }
            scored(
                peer.method,
                "onnxruntime-int8",
                opened(dest),
                facts,
            )
    finally:
        torch.set_num_threads(previous)
    time_rounds(
        runners,
        tokenizer,
        texts,
        flat,
        seq_len=final.seq_len,
        threads=threads,
        rounds=final.rounds,
        say=say,
    )
    out["_latency"] = flat["_latency"]
    return out


def table_rows(
    rows: list[dict[str, Any]],
    measured: dict[str, Any],
    one_liners: Sequence[OneLiner],
    score: str,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """From ``measure_all``'s answer: the teacher in PyTorch fp32 (every reference), the
    teacher's row in each runtime, and every row (the int8 peers added, one row per
    method and runtime: bench/pareto.py)."""
    by_runtime = measured["teacher"]
    if "error" in by_runtime["pytorch"]:
        raise SystemExit(f"the teacher could not be measured: {by_runtime['pytorch']['error']}")
    teacher_rows = [
        with_columns({"method": "teacher", "target": "-"}, found, by_runtime, score)
        for found in by_runtime.values()
        if "error" not in found
    ]
    peers = []
    for peer in one_liners:
        made = measured.get(peer.method, {}).get("onnxruntime-int8", {})
        peers.append(
            {
                "method": peer.method,
                "target": peer.target,
                "wall_s": made.get("quantize_s"),
                "details": {"made_from": peer.source, "quantization": ONE_LINER},
            }
        )
    return by_runtime["pytorch"], teacher_rows, runtime_rows([*rows, *peers], measured, score)
