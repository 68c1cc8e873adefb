"""Does a model's timing depend on what ran just before it? (issue #20)

The final pass of bench/sst2.py on AMD EPYC (2026-12-07) timed the jobs' 3 x 1536 int8
artifacts at 8.0-8.9 ms and the DistilBERT peer's int8 export of the same shape at
6.1 ms, in one interleave of 168 runners; as a pair, the two files take the same time.
In that pass each job's int8 runner came right after its PyTorch twin, the peer's after
an ONNX Runtime session.

This script times the same int8 file twice in one interleave: copy A right after a
PyTorch model, copy B right after an ONNX Runtime session, with the PyTorch teacher
(MiniLM-L6's shape) as the reference, by two methods in alternating rounds:

- ``one call a turn``: each runner called once per turn, every call timed (the
  measurement before this change);
- ``turns``: the engine's ``interleaved_latency_ms`` now: each turn untimed calls for
  ``LATENCY_SETTLE_S`` (one call at least), then ``LATENCY_TURN_CALLS`` timed ones.

Weights are random (latency does not depend on their values); 2 threads, batch 1, 128
tokens; median of each round, median of rounds.

    python bench/interleave_order.py --rounds 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from bench.common import load_1m, machine  # noqa: E402
from bench.paths import base_model_path  # noqa: E402
from workers.engine import evaluate  # noqa: E402
from workers.engine import onnx_export as ox  # noqa: E402
from workers.engine.evaluate import interleaved_latency_ms, latency_inputs  # noqa: E402
from workers.engine.formats import ort_runner, torch_runner  # noqa: E402
from workers.engine.progress import Progress  # noqa: E402
from workers.engine.spec import NullCallback  # noqa: E402

Runner = Callable[[dict[str, torch.Tensor]], Any]
TEXTS = ["a gripping, funny and warm film that never overstays its welcome"]


def one_call_a_turn(runners: dict[str, Runner], inputs: dict[str, torch.Tensor], reps: int):
    """The interleave before turns: a, b, a, b..., every call timed."""
    timings: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(evaluate.LATENCY_WARMUP):
        for run in runners.values():
            run(inputs)
    for _ in range(reps):
        for name, run in runners.items():
            start = time.perf_counter()
            run(inputs)
            timings[name].append(time.perf_counter() - start)
    return {name: statistics.median(v) * 1000 for name, v in timings.items()}


def after_pytorch(
    pytorch: Runner, runner: Runner, inputs: dict[str, torch.Tensor], reps: int, calls: int = 8
) -> dict[str, list[float]]:
    """Median ms of each of ``calls`` back-to-back calls of ``runner`` made right after
    one of ``pytorch``, and after 20 ms of its own untimed calls instead (the settle)."""
    out: dict[str, list[float]] = {}
    for label, settle_s in (("right after", 0.0), ("after 20 ms of untimed calls", 0.02)):
        timed: list[list[float]] = [[] for _ in range(calls)]
        for _ in range(reps):
            pytorch(inputs)
            settled = time.perf_counter() + settle_s
            while time.perf_counter() < settled:
                runner(inputs)
            for k in range(calls):
                start = time.perf_counter()
                runner(inputs)
                timed[k].append(time.perf_counter() - start)
        out[label] = [round(statistics.median(t) * 1000, 3) for t in timed]
    return out


def build(work: Path, seq_len: int) -> tuple[dict[str, Runner], Any]:
    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    config = AutoConfig.from_pretrained(base, num_labels=2)
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_config(config).eval()
    student_config = AutoConfig.from_pretrained(base, num_labels=2, num_hidden_layers=3)
    student = AutoModelForSequenceClassification.from_config(student_config).eval()
    example = latency_inputs(tokenizer, TEXTS * 2, batch_size=2, seq_len=16)
    fp32, int8 = work / "student.onnx", work / "int8" / "student.onnx"
    ox.export_onnx(student, example, fp32)
    ox.quantize_int8(fp32, int8)
    threads = torch.get_num_threads()
    # The final pass's order for a job's row (PyTorch, int8, fp32), then a second
    # session on the same int8 file right after an ONNX Runtime one.
    runners = {
        "teacher pytorch": torch_runner(teacher),
        "student pytorch": torch_runner(student),
        "int8 copy A (after PyTorch)": ort_runner(ox.session(int8, threads=threads)),
        "student onnxruntime fp32": ort_runner(ox.session(fp32, threads=threads)),
        "int8 copy B (after ONNX Runtime)": ort_runner(ox.session(int8, threads=threads)),
    }
    return runners, tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=60, help="timed calls per runner a round")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runners, tokenizer = build(Path(tmp), args.seq_len)
        inputs = latency_inputs(tokenizer, TEXTS, batch_size=1, seq_len=args.seq_len)
        progress = Progress(NullCallback())
        rounds: dict[str, list[dict[str, float]]] = {"one call a turn": [], "turns": []}
        loads = []
        with torch.inference_mode():
            for index in range(args.rounds):
                loads.append(load_1m())
                # Alternate which method goes first, so drift favours neither.
                order = list(rounds) if index % 2 == 0 else list(reversed(rounds))
                for method in order:
                    if method == "turns":
                        timed = interleaved_latency_ms(
                            runners,
                            tokenizer,
                            TEXTS,
                            seq_len=args.seq_len,
                            progress=progress,
                            batch_sizes=(1,),
                            budget_s=60.0,  # the reps decide, as in the other method
                        )
                        rounds[method].append({k: v[1] for k, v in timed.items()})
                    else:
                        rounds[method].append(one_call_a_turn(runners, inputs, args.reps))
                print(f"round {index + 1}/{args.rounds}: {rounds}", flush=True)
            calls = after_pytorch(
                runners["student pytorch"],
                runners["int8 copy A (after PyTorch)"],
                inputs,
                reps=args.reps,
            )
    result = summarise(rounds)
    out = {
        "what": "the same int8 file timed after a PyTorch model and after an ONNX Runtime "
        "session, one call a turn against turns (bench/interleave_order.py)",
        "date": dt.date.today().isoformat(),
        "machine": machine(args.threads),
        "settings": {
            "threads": args.threads,
            "rounds": args.rounds,
            "seq_len": args.seq_len,
            "one_call_a_turn_reps": args.reps,
            "turn_calls": evaluate.LATENCY_TURN_CALLS,
            "settle_s": evaluate.LATENCY_SETTLE_S,
            "turns_max_reps": evaluate.LATENCY_MAX_REPS,
        },
        "load_1m_per_round": loads,
        "rounds": rounds,
        "result": result,
        "calls_after_pytorch_ms": calls,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"interleave-order-{out['date']}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown(out), encoding="utf-8")
    print(markdown(out))
    return 0


def summarise(rounds: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Per method: each runner's median of rounds, the copies' ratio and the teacher over
    each copy (the speed-up a report would state)."""
    out: dict[str, Any] = {}
    for method, per_round in rounds.items():
        names = per_round[0]
        med = {n: round(statistics.median(r[n] for r in per_round), 3) for n in names}
        a, b = med["int8 copy A (after PyTorch)"], med["int8 copy B (after ONNX Runtime)"]
        teacher = med["teacher pytorch"]
        out[method] = {
            "median_ms": med,
            "copy_a_over_copy_b": round(a / b, 3),
            "speedup_copy_a": round(teacher / a, 2),
            "speedup_copy_b": round(teacher / b, 2),
        }
    return out


def markdown(out: dict[str, Any]) -> str:
    m = out["machine"]
    lines = [
        f"# The same int8 file, timed after PyTorch and after ONNX Runtime ({out['date']})",
        "",
        f"- machine: {m.get('cpu')} ({m.get('cores')} cores, {out['settings']['threads']} "
        "threads timed)",
        f"- {out['settings']['rounds']} rounds, methods alternating first; batch 1, "
        f"{out['settings']['seq_len']} tokens; random weights (MiniLM-L6 teacher shape, "
        "a 3 x 1536 student); load average per round: "
        + ", ".join(str(x) for x in out["load_1m_per_round"]),
        f"- wall: {out['wall_s']} s",
        "",
        "| method | teacher pytorch | student pytorch | int8 copy A (after PyTorch) | "
        "student onnxruntime fp32 | int8 copy B (after ONNX Runtime) | A / B | "
        "teacher / A | teacher / B |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, r in out["result"].items():
        med = r["median_ms"]
        cells = " | ".join(f"{v:.2f} ms" for v in med.values())
        lines.append(
            f"| {method} | {cells} | {r['copy_a_over_copy_b']:.3f} | "
            f"{r['speedup_copy_a']:.2f}x | {r['speedup_copy_b']:.2f}x |"
        )
    lines += [
        "",
        "The int8 file's calls one after another, right after a forward pass of the "
        "PyTorch student (median ms of each call's position):",
        "",
        "| after the PyTorch forward | " + " | ".join(f"call {k + 1}" for k in range(8)) + " |",
        "|---|" + "---:|" * 8,
    ]
    for label, values in out["calls_after_pytorch_ms"].items():
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
