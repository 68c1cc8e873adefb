"""The bar rows of an SST-2 results file timed again with the teacher alone (issue #20).

The final pass of bench/sst2.py times every model in every runtime in one interleave
(168 runners in the AMD run of 2026-12-07). There, the jobs' 3 x 1536 int8 artifacts took
8.0-8.9 ms at batch 1 and the peers' int8 exports of the same shape 6.1-6.2 ms; timed as
a pair, the two files take the same time. This script times the PyTorch fp32 teacher,
every modelpress int8 artifact and the int8 export of the peers named by ``--peer`` (by
default the DistilBERT-style one, the same 3 x 1536 shape), and nothing else, interleaved
(teacher, student, student, ...), 2 threads, batch 1, 128 tokens, median of each round,
median of rounds; retention is copied from the results file (scoring does not change).

    python bench/bar_retime.py bench/results/sst2-full-amd2-runtimes.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from bench.common import load_1m, machine  # noqa: E402
from workers.engine import onnx_export as ox  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--peer",
        action="append",
        default=None,
        help="a peer's method name whose int8 row is timed too (repeatable)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = json.loads(args.results.read_text(encoding="utf-8"))
    peers = args.peer or ["peer: DistilBERT-style (every other layer, KL + CE)"]
    bars = [
        r
        for r in data["rows"]
        if (r["method"].startswith("modelpress") or r["method"] in peers)
        and r.get("runtime") == "onnxruntime-int8"
        and "onnx_file" in r
    ]
    runners = {}
    teacher = AutoModelForSequenceClassification.from_pretrained(args.teacher).eval()
    ids = torch.from_numpy(np.random.RandomState(0).randint(1000, 30000, (1, 128)))
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }

    def run_teacher() -> None:
        with torch.inference_mode():
            teacher(**inputs)

    runners["teacher (pytorch fp32)"] = run_teacher
    feed = {k: v.numpy().astype(np.int64) for k, v in inputs.items()}
    rows = {}
    for row in bars:
        sess = ox.session(Path(row["onnx_file"]), threads=args.threads)
        runners[row["method"]] = lambda s=sess: s.run(None, feed)
        rows[row["method"]] = {
            "retention": row["retention"],
            "final_pass_ms": row["latency_ms_cpu_bs1"],
        }
    per_round: dict[str, list[float]] = {k: [] for k in runners}
    loads = []
    for _ in range(args.rounds):
        for run in runners.values():
            run()
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.reps):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            per_round[name].append(statistics.median(values) * 1000)
        loads.append(load_1m())
    ms = {k: statistics.median(v) for k, v in per_round.items()}
    reference = ms.pop("teacher (pytorch fp32)")
    for name, value in ms.items():
        rows[name].update(ms_bs1=value, speedup_bs1=reference / value)
    result = {
        "what": "bar rows retimed with the teacher alone (bench/bar_retime.py)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(args.threads),
        "source": str(args.results),
        "teacher_ms_bs1": reference,
        "load_1m_per_round": loads,
        "rows": rows,
        "rounds": args.rounds,
        "reps": args.reps,
    }
    out = args.out or args.results.with_name(args.results.stem + "-bar-retime.json")
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# {result['what']} ({result['date']})",
        "",
        f"Machine: {result['machine']['cpu']}, {args.threads} threads; load per round "
        f"{loads}. Teacher (PyTorch fp32) {reference:.2f} ms at batch 1, 128 tokens.",
        "",
        "| row (onnxruntime-int8) | retention | ms bs1 | speed-up | final pass ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['retention']:.4f} | {r['ms_bs1']:.2f} | "
            f"{r['speedup_bs1']:.2f}x | {r['final_pass_ms']:.2f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
