"""Jobs per hour against the number of Celery worker processes, through the real service.

    python bench/scale.py [--jobs 8] [--workers 1,2,4] [--engine-runs 3] [--threads 1]

What production runs, on this machine: the API (`modelpress api`), a compression worker
(`modelpress worker --queues cpu --concurrency W`: W prefork processes, each job in a
fresh child), PostgreSQL (a fresh database), Redis (database 9 unless
MODELPRESS_BENCH_REDIS says otherwise) and the S3 server (SeaweedFS, a fresh bucket).
The same small job (a tiny BERT from a config, a few hundred rows, a few epochs) is
submitted N times at once for each W, after one untimed warm-up job. For each job the
API's timestamps and events give:

- queue wait: `started_at - created_at` (a free worker process was not there yet);
- inputs: the claim, the download of teacher and dataset from S3 and the spec, from
  `started_at` to the engine's first `phase` event;
- engine: the engine's first `phase` event to the runner's `uploading` event;
- upload: the `uploading` event to `finished_at` (the artifacts to S3, the end committed).

The engine's own time for the same spec comes from `compress()` run alone on local
files (`--engine-alone`, a process of its own: imports done, median of
`--engine-runs`), at the same thread count. A job's overhead is its time on a worker
(`finished_at - started_at`) minus that. Every process (engine alone and each worker
process) runs torch on `--threads` threads, so W processes want W x threads cores: the
table shows where throughput stops growing with W. Results go to
bench/results/scale-<date>.json and .md with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.service import BenchService, bench_service, redis_url  # noqa: E402

REDIS = redis_url(9)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="timed jobs per worker count")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--engine-runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--rows", type=int, default=400, help="training rows of the job")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--layers", type=int, default=4, help="the tiny teacher's layers")
    parser.add_argument("--hidden", type=int, default=64, help="the tiny teacher's width")
    parser.add_argument(
        "--latency-budget-s",
        type=float,
        default=0.5,
        help="seconds each job spends timing a model at a batch size (part of its engine "
        "time, the same alone and in the service)",
    )
    parser.add_argument("--timeout-s", type=float, default=1800, help="per worker count")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--tag", default=None, help="file-name suffix")
    parser.add_argument("--engine-alone", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def job_body(args: argparse.Namespace) -> dict[str, Any]:
    """The job's own sections; the API's body adds the ids, the spec file the paths."""
    return {
        "task": "sequence-classification",
        "target": {"params_ratio": 0.5},
        "training": {"epochs": args.epochs, "batch_size": 16},
    }


def process_env(args: argparse.Namespace) -> dict[str, str]:
    """What every process of the run reads: the thread count, the timing budget."""
    threads = str(args.threads)
    return {
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "MODELPRESS_LATENCY_THREADS": threads,
        "MODELPRESS_LATENCY_BUDGET_SECONDS": str(args.latency_budget_s),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def engine_alone(spec_path: Path, runs: int, threads: int) -> list[float]:
    """``compress()`` on the spec file's local inputs, ``runs`` times in this process
    (torch imported and warmed by the first), seconds each."""
    import torch

    from workers.compress_cli import build_local_spec
    from workers.engine.compress import compress
    from workers.engine.spec import NullCallback

    torch.set_num_threads(threads)
    budget = float(os.environ.get("MODELPRESS_LATENCY_BUDGET_SECONDS", "2.0"))
    seconds = []
    for i in range(runs):
        out = Path(tempfile.mkdtemp(prefix=f"modelpress-scale-alone-{i}-"))
        spec = build_local_spec(spec_path, out, device="cpu", latency_threads=threads)
        spec = _with_budget(spec, budget)
        start = time.perf_counter()
        compress(spec, NullCallback())
        seconds.append(time.perf_counter() - start)
    return seconds


def _with_budget(spec, budget: float):
    import dataclasses

    return dataclasses.replace(spec, latency_budget_s=budget)


def run_engine_alone(args: argparse.Namespace, home: Path, teacher: Path, data: Path) -> list:
    import yaml

    spec_path = home / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump({**job_body(args), "teacher": str(teacher), "dataset": {"path": str(data)}})
    )
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--engine-alone",
            str(spec_path),
            "--engine-runs",
            str(args.engine_runs),
            "--threads",
            str(args.threads),
        ],
        env={**os.environ, **process_env(args)},
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def seconds_between(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def job_timings(mp, job) -> dict[str, float | None]:
    """Where a finished job's time went, from its timestamps and events."""
    events = list(mp.iter_events(job.id))
    first_phase = next((e.created_at for e in events if e.type == "phase"), None)
    uploading = next(
        (
            e.created_at
            for e in events
            if e.type == "log" and (e.data.get("data") or {}).get("stage") == "uploading"
        ),
        None,
    )
    return {
        "queue_wait_s": seconds_between(job.created_at, job.started_at),
        "inputs_s": seconds_between(job.started_at, first_phase),
        "engine_s": seconds_between(first_phase, uploading),
        "upload_s": seconds_between(uploading, job.finished_at),
        "on_worker_s": seconds_between(job.started_at, job.finished_at),
    }


def wait_all(mp, ids: list[str], timeout_s: float) -> list:
    deadline = time.monotonic() + timeout_s
    pending = set(ids)
    done = {}
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} job(s) not finished in {timeout_s} s")
        for job_id in list(pending):
            job = mp.get_job(job_id)
            if job.done:
                if job.status != "succeeded":
                    raise RuntimeError(f"job {job_id} {job.status}: {job.error}")
                done[job_id] = job
                pending.discard(job_id)
        time.sleep(0.5)
    return [done[i] for i in ids]


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def measure_workers(
    mp, svc: BenchService, *, workers: int, body: dict[str, Any], args
) -> dict[str, Any]:
    """One worker with ``workers`` processes: a warm-up job, then ``args.jobs`` at once."""
    worker = svc.start(
        *("worker", "--queues", "cpu", "--concurrency", str(workers)),
        *("--name", f"scale-{workers}-{uuid.uuid4().hex[:6]}"),
    )
    try:
        wait_all(mp, [mp.create_job(body).id], args.timeout_s)  # warm-up, untimed
        start = time.time()
        ids = [mp.create_job(body).id for _ in range(args.jobs)]
        finished = wait_all(mp, ids, args.timeout_s)
        wall = max(j.finished_at for j in finished).timestamp() - start
        per_job = [job_timings(mp, j) for j in finished]
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    return {
        "workers": workers,
        "jobs": args.jobs,
        "wall_s": round(wall, 2),
        "jobs_per_hour": round(args.jobs / wall * 3600, 1),
        "median": {key: median([t[key] for t in per_job]) for key in per_job[0]},
        "per_job": per_job,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.engine_alone is not None:
        print(json.dumps(engine_alone(args.engine_alone, args.engine_runs, args.threads)))
        return
    counts = [int(w) for w in args.workers.split(",") if w]
    from bench.common import load_1m, machine
    from tests.tiny import make_tiny_bert, make_tiny_dataset

    home = Path(tempfile.mkdtemp(prefix="modelpress-bench-scale-inputs-"))
    teacher = make_tiny_bert(home / "teacher", num_layers=args.layers, hidden=args.hidden)
    data = make_tiny_dataset(home / "data.jsonl", n=args.rows + args.rows // 4)
    load_start = load_1m()
    alone = run_engine_alone(args, home, teacher, data)
    engine_s = statistics.median(alone)

    with bench_service("scale", redis=REDIS, env=process_env(args)) as svc, svc.client() as mp:
        model = mp.upload_model(teacher)
        dataset = mp.upload_dataset(data, format="jsonl")
        body = {
            **job_body(args),
            "teacher": {"model_id": model.id},
            "dataset": {"dataset_id": dataset.id},
            "accelerator": "cpu",
        }
        rows = []
        for workers in counts:
            row = measure_workers(mp, svc, workers=workers, body=body, args=args)
            row["overhead_s"] = round(row["median"]["on_worker_s"] - engine_s, 3)
            row["overhead_share"] = round(row["overhead_s"] / engine_s, 3)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "per_job"}), flush=True)
    base = rows[0]["jobs_per_hour"] / rows[0]["workers"]
    for row in rows:
        row["speedup"] = round(row["jobs_per_hour"] / rows[0]["jobs_per_hour"], 2)
        row["efficiency"] = round(row["jobs_per_hour"] / (base * row["workers"]), 2)
    result = {
        "benchmark": "scale",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(threads=args.threads), "load_1m_at_start": load_start},
        "load_1m_at_end": load_1m(),
        "setup": (
            "API (modelpress api) + one compression worker with W prefork processes "
            "(a fresh child per job), PostgreSQL, Redis and SeaweedFS S3 on loopback; "
            f"{args.jobs} jobs submitted at once after one warm-up job; torch on "
            f"{args.threads} thread(s) in every process"
        ),
        "job": {
            **job_body(args),
            "teacher": f"tiny BERT {args.layers} layers x {args.hidden}",
            "rows": args.rows,
            "latency_budget_s": args.latency_budget_s,
        },
        "engine_alone_s": [round(s, 3) for s in alone],
        "engine_alone_median_s": round(engine_s, 3),
        "rows": rows,
    }
    write(result, args)


def write(result: dict[str, Any], args: argparse.Namespace) -> None:
    name = f"scale-{result['date'][:10]}" + (f"-{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(table(result))
    print(table(result))


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# Jobs per hour against worker processes ({result['date']})",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores; load {m.get('load_1m_at_start')} "
        f"at the start, {result['load_1m_at_end']} at the end. {result['setup']}.",
        f"Engine alone (compress() on local files): median {result['engine_alone_median_s']} s "
        f"of {result['engine_alone_s']}.",
        "",
        "| Worker processes | Jobs | Wall s | Jobs/hour | x 1 process | Efficiency "
        "| Queue wait s | Inputs s | Engine in job s | Upload s | On worker s "
        "| Overhead s | Overhead / engine |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        md = r["median"]
        lines.append(
            f"| {r['workers']} | {r['jobs']} | {r['wall_s']} | {r['jobs_per_hour']} "
            f"| {r['speedup']} | {r['efficiency']} | {md['queue_wait_s']} | {md['inputs_s']} "
            f"| {md['engine_s']} | {md['upload_s']} | {md['on_worker_s']} "
            f"| {r['overhead_s']} | {r['overhead_share']:.1%} |"
        )
    lines += ["", "Per-job figures are medians over the timed jobs.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
