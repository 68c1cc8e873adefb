"""A finished sweep's candidates timed again together, as a sweep's answer step now does
(workers/engine/retime.py), against each candidate's own reading.

    python bench/sweep_retime.py --candidates DIR --entry ENTRY --key KEY [--rounds 5]

Each candidate of a sweep times itself beside the teacher in its own job, at whatever
load the machine had then; the answer step (since cf75ae0) times them all again in one
interleaved pass. This replays that pass on the candidates of sweeps that predate it
(``bench/sweep.py``'s SST-2 run of 2026-12-06). DIR holds each candidate's ``model``
artifact (``<job id>.tar.gz``) and ``manifest.json``: per candidate its job id, its
sweep (``group``) and floor, index, asked speed-up, retention, own speed-up and latency,
and shape. ENTRY is the tenant's fine-tuned teacher (its cache entry), KEY its cache
key; the teacher folder and the SST-2 dev rows are prepared as ``bench/sweep.py``
prepares them. ``--rounds`` passes, each ``retime`` over all candidates at once (torch
on ``--threads`` threads, ``--budget-s`` per batch size); per candidate the median
speed-up and its spread, and per sweep the pick from the own readings and from the
passes. Results: bench/results/sweep-retime-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=Path, required=True)
    parser.add_argument("--entry", type=Path, required=True, help="the teacher's cache entry")
    parser.add_argument("--key", required=True, help="its teacher cache key")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=2.0)
    parser.add_argument("--max-train-rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--tag", default=None)
    return parser.parse_args(argv)


def local_spec(args: argparse.Namespace, home: Path):
    """The spec a candidate's job had, as far as timing reads it: the teacher, the eval
    rows, 128 tokens, the threads and budget, and the fine-tuned teacher's entry."""
    import yaml

    from bench.sweep import MODES, prepare_inputs
    from workers.compress_cli import build_local_spec

    inputs = prepare_inputs(
        SimpleNamespace(tiny=False, max_train_rows=args.max_train_rows, max_dev_rows=None,
                        seed=args.seed),
        home,
    )  # fmt: skip
    spec_file = home / "spec.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "task": "sequence-classification",
                "teacher": str(inputs.teacher),
                "dataset": {"path": str(inputs.data)},
                "target": {"speedup": 2.0},
                "training": {"max_seq_length": MODES["sst2"]["max_seq_length"]},
                # The order the service's dataset had, which the teacher's head follows.
                "label_names": ["negative", "positive"],
            }
        )
    )
    spec = build_local_spec(spec_file, home / "out", device="cpu", latency_threads=args.threads)
    return dataclasses.replace(
        spec,
        latency_budget_s=args.budget_s,
        cached_teacher=args.entry,
        teacher_cache_key=args.key,
    ), inputs.describe


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from app.sweeps.policy import CandidateResult, Goal, pick
    from bench.common import load_1m, machine
    from workers.engine.progress import Progress
    from workers.engine.retime import retime
    from workers.engine.spec import NullCallback

    manifest = json.loads((args.candidates / "manifest.json").read_text())
    home = Path(tempfile.mkdtemp(prefix="modelpress-bench-retime-"))
    spec, describe = local_spec(args, home)
    students = {}
    for c in manifest:
        folder = home / "candidates" / c["job_id"]
        with tarfile.open(args.candidates / f"{c['job_id']}.tar.gz") as tf:
            tf.extractall(folder, filter="data")
        students[c["job_id"]] = next(folder.rglob("config.json")).parent
    load_start = load_1m()
    passes = []
    for i in range(args.rounds):
        found = retime(
            spec, students, runtime="pytorch", batch_size=1, progress=Progress(NullCallback())
        )
        passes.append({"teacher": found.teacher, "teacher_ms": found.teacher_ms,
                       "speedup": found.speedup, "latency_ms": found.latency_ms})  # fmt: skip
        print(f"pass {i}: teacher {found.teacher_ms:.2f} ms", file=sys.stderr, flush=True)
    rows = []
    for c in manifest:
        speedups = [p["speedup"][c["job_id"]] for p in passes]
        latencies = [p["latency_ms"][c["job_id"]] for p in passes]
        rows.append(
            {
                **c,
                "retimed_speedup": statistics.median(speedups),
                "retimed_speedup_min": min(speedups),
                "retimed_speedup_max": max(speedups),
                "retimed_latency_ms": statistics.median(latencies),
            }
        )
    picks = {}
    for group in sorted({c["group"] for c in manifest}):
        mine = [r for r in rows if r["group"] == group]
        goal = Goal("min_retention", mine[0]["sweep"])

        def answer(speed: str, latency: str, mine=mine, goal=goal) -> dict[str, Any]:
            results = [
                CandidateResult(r["index"], r["asked"], r[speed], r["retention"], None,
                                r[latency], None)
                for r in mine
            ]  # fmt: skip
            got = pick(goal, results)
            chosen = next(r for r in mine if r["index"] == got.pick_index)
            shape = [chosen["layers"], chosen["ffn"]]
            return {"index": got.pick_index, "speedup": chosen[speed],
                    "retention": chosen["retention"], "shape": shape}  # fmt: skip

        picks[group] = {
            "own": answer("own_speedup", "own_latency_ms"),
            "retimed": answer("retimed_speedup", "retimed_latency_ms"),
        }
    result = {
        "benchmark": "sweep-retime",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(threads=args.threads), "load_1m_at_start": load_start},
        "load_1m_at_end": load_1m(),
        "inputs": describe,
        "setup": f"{args.rounds} passes of workers.engine.retime.retime over the teacher "
        f"(its cache entry: {passes[0]['teacher']}) and all {len(rows)} candidates, "
        f"PyTorch, batch 1, 128 tokens, {args.threads} threads, {args.budget_s} s budget",
        "teacher_ms": [round(p["teacher_ms"], 3) for p in passes],
        "candidates": rows,
        "picks": picks,
    }
    name = f"sweep-retime-{result['date'][:10]}" + (f"-{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# A sweep's candidates timed again together ({result['date']})",
        "",
        f"- machine: {m.get('cpu')}, {m.get('cores')} cores; load "
        f"{m.get('load_1m_at_start')} at the start, {result['load_1m_at_end']} at the end",
        f"- {result['setup']}; the teacher's latency in each pass: {result['teacher_ms']} ms",
        f"- data: {result['inputs']['data']}",
        "",
        "| sweep | # | asked | shape (layers x FFN) | retention | own speed-up (own teacher "
        "ms) | retimed speed-up (min-max) | own pick | retimed pick |",
        "|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for r in result["candidates"]:
        p = result["picks"][r["group"]]
        lines.append(
            f"| {r['group']} | {r['index']} | {r['asked']:g}x | {r['layers']} x {r['ffn']} "
            f"| {r['retention']:.4f} | {r['own_speedup']:.2f}x ({r['own_teacher_ms']:.1f}) "
            f"| {r['retimed_speedup']:.2f}x ({r['retimed_speedup_min']:.2f}-"
            f"{r['retimed_speedup_max']:.2f}) | {'*' if p['own']['index'] == r['index'] else ''} "
            f"| {'*' if p['retimed']['index'] == r['index'] else ''} |"
        )
    lines.append("")
    for group, p in result["picks"].items():
        lines.append(
            f"- {group}: own readings pick #{p['own']['index']} "
            f"({p['own']['speedup']:.2f}x); timed together, #{p['retimed']['index']} "
            f"({p['retimed']['speedup']:.2f}x, retention {p['retimed']['retention']:.4f})"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
