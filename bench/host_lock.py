"""What another job's training does to a job's latency reading on the same host, and what
the host lock (workers/engine/host_lock.py) gives back.

    python bench/host_lock.py [--rounds 7] [--budget-s 2]

The case of the SST-2 sweep with two worker processes on two cores: one process trains
(a MiniLM-L6-sized model, batch 32 of 48 tokens, about an SST-2 batch padded to its
longest, AdamW, one torch thread, as a worker of concurrency 2 on 2 cores runs it)
while the other times the teacher (6 x 1536) and a two-layer student (2 x 888) at
batch 1 the way the planner and the report do (``interleaved_latency_ms``, 2 threads,
inputs padded to 128 tokens). Three conditions, taken in turns within each round (the
order rotates), so drift hits all alike:

- ``quiet``: the trainer idles; the reading every other is judged against;
- ``loaded``: the trainer trains, no lock (before the lock existed);
- ``loaded+lock``: the trainer's steps take the host lock shared, the timing takes it
  exclusively (as the engine now does).

Per condition: the median teacher and student latency, the speed-up, the speed-up over
the quiet one of the same round, and the trainer's steps per second over the
condition's turn (what the lock costs the other job). Models have random weights: latency does
not depend on their values. Results: bench/results/host-lock-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONDITIONS = ("quiet", "loaded", "loaded+lock")
IDLE, TRAIN, TRAIN_LOCKED, STOP = 0, 1, 2, 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget-s", type=float, default=2.0, help="per model, per reading")
    parser.add_argument("--threads", type=int, default=2, help="torch threads when timing")
    parser.add_argument("--settle-s", type=float, default=1.5, help="after a mode change")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    return parser.parse_args(argv)


def _config(layers: int | None = None, ffn: int | None = None):
    from transformers import AutoConfig

    from bench.paths import base_model_path

    config = AutoConfig.from_pretrained(base_model_path())
    config.num_labels = 2
    if layers is not None:
        config.num_hidden_layers = layers
    if ffn is not None:
        config.intermediate_size = ffn
    return config


def _model(config):
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config)


def trainer(lock_path: str, mode, steps) -> None:
    """Train until told to stop; ``mode`` says whether to, and whether under the lock."""
    import torch

    from workers.engine.host_lock import HostLock

    torch.set_num_threads(1)
    model = _model(_config()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    lock = HostLock(Path(lock_path))
    ids = torch.randint(1000, 20000, (32, 48))
    labels = torch.randint(0, 2, (32,))
    while mode.value != STOP:
        if mode.value == IDLE:
            time.sleep(0.02)
            continue
        guard = lock.working() if mode.value == TRAIN_LOCKED else contextlib.nullcontext()
        with guard:
            optimizer.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=labels).loss.backward()
            optimizer.step()
        with steps.get_lock():
            steps.value += 1


def main() -> None:
    args = parse_args()
    import torch
    from transformers import AutoTokenizer

    from bench.common import load_1m, machine
    from bench.paths import base_model_path
    from workers.engine.evaluate import interleaved_latency_ms
    from workers.engine.formats import torch_runner
    from workers.engine.progress import Progress
    from workers.engine.spec import NullCallback

    lock_path = Path(tempfile.mkdtemp(prefix="host-lock-bench-")) / "host.lock"
    ctx = multiprocessing.get_context("spawn")
    mode, steps = ctx.Value("i", IDLE), ctx.Value("l", 0)
    proc = ctx.Process(target=trainer, args=(str(lock_path), mode, steps), daemon=True)
    proc.start()
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    runners = {
        "teacher": torch_runner(_model(_config()).eval()),
        "student": torch_runner(_model(_config(layers=2, ffn=888)).eval()),
    }
    texts = ["a gripping , funny and ultimately moving film about friendship ."] * 4
    load_start, start = load_1m(), time.time()
    readings: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            order = CONDITIONS[r % 3 :] + CONDITIONS[: r % 3]
            for condition in order:
                mode.value = {"quiet": IDLE, "loaded": TRAIN, "loaded+lock": TRAIN_LOCKED}[
                    condition
                ]
                before, turn = steps.value, time.perf_counter()
                time.sleep(args.settle_s)
                locked = condition == "loaded+lock"
                progress = Progress(NullCallback(), host_lock=lock_path if locked else None)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    ms = interleaved_latency_ms(
                        runners,
                        tokenizer,
                        texts,
                        seq_len=128,
                        progress=progress,
                        batch_sizes=(1,),
                        budget_s=args.budget_s,
                    )
                end = time.perf_counter()
                elapsed = end - t0
                reading = {
                    "round": r,
                    "condition": condition,
                    "teacher_ms": ms["teacher"][1],
                    "student_ms": ms["student"][1],
                    "speedup": ms["teacher"][1] / ms["student"][1],
                    "seconds": elapsed,
                    "trainer_steps_per_s": (steps.value - before) / (end - turn),
                }
                readings.append(reading)
                print(json.dumps(reading), flush=True)
    finally:
        mode.value = STOP
        proc.join(timeout=30)
    summary = summarize(readings)
    result = {
        "what": __doc__.splitlines()[0] + " (bench/host_lock.py)",
        "date": dt.date.today().isoformat(),
        "machine": machine(args.threads),
        "load_1m": {"start": load_start, "end": load_1m()},
        "wall_s": round(time.time() - start, 1),
        "settings": vars(args) | {"out": str(args.out)},
        "summary": summary,
        "readings": readings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"host-lock-{result['date']}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stem.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))


def summarize(readings: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    quiet = {x["round"]: x["speedup"] for x in readings if x["condition"] == "quiet"}
    out = {}
    for condition in CONDITIONS:
        rows = [x for x in readings if x["condition"] == condition]
        ratios = [x["speedup"] / quiet[x["round"]] for x in rows]
        out[condition] = {
            "teacher_ms": statistics.median(x["teacher_ms"] for x in rows),
            "student_ms": statistics.median(x["student_ms"] for x in rows),
            "speedup": statistics.median(x["speedup"] for x in rows),
            "speedup_over_quiet": statistics.median(ratios),
            "speedup_over_quiet_min": min(ratios),
            "speedup_over_quiet_max": max(ratios),
            "trainer_steps_per_s": statistics.median(x["trainer_steps_per_s"] for x in rows),
            "seconds": statistics.median(x["seconds"] for x in rows),
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["summary"]
    lines = [
        f"# Latency readings beside another job's training ({result['date']})",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores; load {result['load_1m']['start']} "
        f"at the start, {result['load_1m']['end']} at the end; {result['wall_s']} s. "
        f"{result['settings']['rounds']} rounds, the three conditions in turns (order "
        "rotating); teacher 6 x 1536 and student 2 x 888 (MiniLM-L6 config, random "
        "weights), batch 1 of 128 tokens, torch on 2 threads; the trainer: the teacher's "
        "shape, batch 32 of 48 tokens, AdamW, 1 thread, in another process; its steps/s over "
        "each turn (settling and reading).",
        "",
        "| condition | teacher ms | student ms | speed-up | over quiet (min-max) "
        "| trainer steps/s | reading s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for condition, row in s.items():
        lines.append(
            f"| {condition} | {row['teacher_ms']:.2f} | {row['student_ms']:.2f} "
            f"| {row['speedup']:.2f}x | {row['speedup_over_quiet']:.3f} "
            f"({row['speedup_over_quiet_min']:.3f}-{row['speedup_over_quiet_max']:.3f}) "
            f"| {row['trainer_steps_per_s']:.2f} | {row['seconds']:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
