"""The read path under load: ``GET /v1/jobs/{id}`` of the real API against a bare
FastAPI + SQLAlchemy endpoint reading the same row (issue #19, item 5).

    python bench/api_load.py [--rounds 5] [--seconds 10] [--connections 16]

Starts, on the local PostgreSQL (a fresh database, migrated by Alembic as the service
is), one process of the real API (``modelpress api``: uvicorn, as production runs it)
and one of ``bench/api_bare.py`` (``uvicorn bench.api_bare:app``, the same uvicorn
options: uvloop, httptools, access log at INFO to a file), makes a key and a job through
the API (a tiny teacher and dataset uploaded, the job created and left queued: no worker
consumes its queue), then drives both with the same load generator in rounds, real and
bare taking turns (the order flipped every round), and reports the median over rounds
of: requests/s, p50 and p99 latency, and server CPU per request (user + system time of
the server process over the round, from /proc, divided by the requests it answered; a
figure the machine's other load hardly moves, unlike the rate).

The load generator is this file run with ``--drive``, in its own process: keep-alive
HTTP/1.1 connections on one asyncio loop (uvloop), each sending the next request when
the previous answer is read (closed loop, like wrk). Its own CPU per request is reported
too, to show that it is not the bottleneck. Everything runs at the priority this script
is started with (children inherit it): the same for both sides. While /tmp/QUIET exists
(another benchmark timing on this machine) no round starts.

Results: bench/results/api-load-<date>.json and .md, with the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.net import free_port, percentile  # noqa: E402

POSTGRES = os.environ.get(
    "MODELPRESS_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
REDIS = os.environ.get("MODELPRESS_BENCH_REDIS", "redis://127.0.0.1:6379/10")
QUIET = Path("/tmp/QUIET")
TICKS = os.sysconf("SC_CLK_TCK")


# --- the load generator (runs in its own process) ---------------------------------------


async def _connection(
    host: str, port: int, request: bytes, deadline: float, latencies: list[float], bad: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            start = time.perf_counter()
            if start >= deadline:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                bad.append(status)
    finally:
        writer.close()


async def _drive(url: str, key: str, seconds: float, connections: int) -> dict[str, Any]:
    host, _, rest = url.removeprefix("http://").partition(":")
    port_s, _, path = rest.partition("/")
    request = (
        f"GET /{path} HTTP/1.1\r\nHost: {host}:{port_s}\r\n"
        f"Authorization: Bearer {key}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    bad: list[int] = []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.gather(
        *(
            _connection(host, int(port_s), request, deadline, latencies, bad)
            for _ in range(connections)
        )
    )
    wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "non_200": len(bad),
        "statuses": sorted(set(bad)),
        "wall_s": wall,
        "latencies_ms": [round(x * 1000, 3) for x in latencies],
        "generator_cpu_s": time.process_time() - cpu0,
    }


def drive_main(args: argparse.Namespace) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_drive(args.drive, args.key, args.seconds, args.connections))
    sys.stdout.write(json.dumps(result))


# --- the servers and the rounds ---------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn --workers: the supervisor's children)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            pids += _tree(int(child))
    return pids


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system time of a process and its children, every thread included
    (/proc/<pid>/stat)."""
    user = system = 0
    for one in _tree(pid):
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        user, system = user + int(fields[11]), system + int(fields[12])
    return user / TICKS, system / TICKS


def wait_ready(url: str, deadline_s: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def wait_quiet() -> float:
    """Seconds waited for /tmp/QUIET to go (another benchmark timing here)."""
    start = time.monotonic()
    while QUIET.exists():
        time.sleep(10)
    return time.monotonic() - start


def one_round(pid: int, url: str, key: str, args: argparse.Namespace) -> dict[str, Any]:
    drive = [sys.executable, __file__, "--drive", url, "--key", key]
    if args.warmup > 0:
        subprocess.run(
            [*drive, "--seconds", str(args.warmup), "--connections", str(args.connections)],
            check=True,
            capture_output=True,
        )
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(
        [*drive, "--seconds", str(args.seconds), "--connections", str(args.connections)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    user, system = (after - before for after, before in zip(cpu_seconds(pid), cpu0, strict=True))
    got = json.loads(out)
    lat = got.pop("latencies_ms")
    n = got["requests"]
    return {
        "requests": n,
        "non_200": got["non_200"],
        "statuses": got["statuses"],
        "rps": round(n / got["wall_s"], 1),
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p90_ms": round(percentile(lat, 0.90), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "max_ms": round(max(lat), 2),
        "server_cpu_ms_per_request": round((user + system) * 1000 / n, 3),
        "server_user_ms_per_request": round(user * 1000 / n, 3),
        "server_system_ms_per_request": round(system * 1000 / n, 3),
        "generator_cpu_ms_per_request": round(got["generator_cpu_s"] * 1000 / n, 3),
        "load_1m": round(os.getloadavg()[0], 2),
    }


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "rps",
        "p50_ms",
        "p99_ms",
        "server_cpu_ms_per_request",
        "server_user_ms_per_request",
        "server_system_ms_per_request",
        "generator_cpu_ms_per_request",
    )
    return {k: round(statistics.median(r[k] for r in rounds), 3) for k in keys}


@dataclass
class Servers:
    pids: dict[str, int]
    urls: dict[str, str]
    key: str
    response_bytes: dict[str, int]


@contextmanager
def servers(real_root: Path = ROOT, api_workers: int = 1) -> Iterator[Servers]:
    """Both servers on a fresh, migrated database holding one queued job; the real API
    from the checkout at ``real_root`` (another commit's, to compare), in
    ``api_workers`` processes."""
    db = f"modelpress_bench_{uuid.uuid4().hex[:8]}"
    home = Path(tempfile.mkdtemp(prefix="modelpress-bench-api-"))
    env = {
        **os.environ,
        "MODELPRESS_HOME": str(home),
        "MODELPRESS_DATABASE_URL": f"{POSTGRES}/{db}",
        "MODELPRESS_BROKER_URL": REDIS,
        "MODELPRESS_STORAGE_URL": (home / "artifacts").as_uri(),
        "MODELPRESS_LOG_LEVEL": "INFO",
    }
    os.environ.update(env)  # this process reads the same settings

    import httpx
    import sqlalchemy as sa
    from modelpress_client import Client

    from app.auth.service import create_key
    from app.db import get_engine, session_scope
    from app.migrate import upgrade
    from tests.tiny import make_tiny_bert, make_tiny_dataset

    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    procs: dict[str, subprocess.Popen] = {}
    try:
        upgrade(env["MODELPRESS_DATABASE_URL"])
        with session_scope() as s:
            key = create_key(session=s, tenant="bench", scope="read")[1]
            write_key = create_key(session=s, tenant="bench", scope="write")[1]
        ports = {"real": free_port(), "bare": free_port()}
        logs = open(home / "servers.log", "wb")  # noqa: SIM115
        real = [sys.executable, "-m", "app.cli", "api", "--port", str(ports["real"])]
        if api_workers > 1:
            # What docs/operations.md gives for several processes.
            real = [
                *[sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"],
                *["--port", str(ports["real"]), "--workers", str(api_workers)],
            ]
        argv = {
            "real": real,
            "bare": [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.api_bare:app",
                "--port",
                str(ports["bare"]),
                "--log-level",
                "info",
            ],
        }
        for side, command in argv.items():
            root = real_root if side == "real" else ROOT
            procs[side] = subprocess.Popen(
                command,
                env={**env, "PYTHONPATH": str(root)},
                cwd=root,
                stdout=logs,
                stderr=subprocess.STDOUT,
            )
        base = {side: f"http://127.0.0.1:{port}" for side, port in ports.items()}
        wait_ready(base["real"] + "/healthz")
        with Client(base["real"], api_key=write_key) as mp:
            model = mp.upload_model(make_tiny_bert(home / "tiny"))
            dataset = mp.upload_dataset(
                make_tiny_dataset(home / "tiny.jsonl", n=50), format="jsonl"
            )
            job = mp.create_job(
                {
                    "task": "sequence-classification",
                    "teacher": {"model_id": model.id},
                    "dataset": {"dataset_id": dataset.id},
                    "target": {"params_ratio": 0.5},
                    "accelerator": "cpu",  # no worker consumes it here: it stays queued
                }
            )
        wait_ready(base["bare"] + f"/v1/jobs/{job.id}")
        urls = {side: f"{b}/v1/jobs/{job.id}" for side, b in base.items()}
        sizes = {}
        for side, url in urls.items():
            r = httpx.get(url, headers={"Authorization": f"Bearer {key}"})
            if r.status_code != 200 or r.json()["id"] != job.id:
                raise SystemExit(f"{side}: {r.status_code} {r.text[:300]}")
            sizes[side] = len(r.content)
        yield Servers({k: p.pid for k, p in procs.items()}, urls, key, sizes)
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait(timeout=30)
        get_engine().dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()


def profile(run: Servers, args: argparse.Namespace) -> None:
    """py-spy (``pip install py-spy``) samples each server while the generator drives
    it, the thread holding the GIL each time (where the process spends its Python CPU):
    collapsed stacks in ``args.profile``/<side>.txt."""
    args.profile.mkdir(parents=True, exist_ok=True)
    for side in ("real", "bare"):
        out = args.profile / f"{side}.txt"
        spy = subprocess.Popen(
            [
                args.py_spy,
                "record",
                "--pid",
                str(run.pids[side]),
                "--rate",
                "250",
                "--gil",  # only the thread holding the GIL: where Python spends CPU
                "--duration",
                str(int(args.seconds)),
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(1)  # attached before the load starts
        row = one_round(run.pids[side], run.urls[side], run.key, args)
        spy.wait()
        print(f"profiled {side}: {json.dumps(row)} -> {out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0, help="per side and round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each timing")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--label", default="", help="added to the results file's name")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--note", default="", help="recorded with the results")
    parser.add_argument(
        "--profile", type=Path, help="instead of the rounds: py-spy stacks of each server here"
    )
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable")
    parser.add_argument(
        "--real-root",
        type=Path,
        default=ROOT,
        help="run the real API from this checkout (e.g. a `git worktree` of an older commit)",
    )
    parser.add_argument(
        "--api-workers", type=int, default=1, help="real API processes (uvicorn --workers)"
    )
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        drive_main(args)
        return

    from bench.common import load_1m, machine

    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    load_start = load_1m()
    commit = subprocess.run(
        ["git", "-C", str(args.real_root), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    with servers(args.real_root.resolve(), args.api_workers) as run:
        if args.profile:
            profile(run, args)
            return
        rounds: dict[str, list[dict[str, Any]]] = {"real": [], "bare": []}
        waited = 0.0
        for i in range(args.rounds):
            order = ("real", "bare") if i % 2 == 0 else ("bare", "real")
            for side in order:
                waited += wait_quiet()
                row = one_round(run.pids[side], run.urls[side], run.key, args)
                rounds[side].append(row)
                print(f"round {i + 1} {side}: {json.dumps(row)}", file=sys.stderr, flush=True)
    med = {side: summary(rows) for side, rows in rounds.items()}
    per_round = [
        round(r["rps"] / b["rps"], 3) for r, b in zip(rounds["real"], rounds["bare"], strict=True)
    ]
    result = {
        "benchmark": "api-load",
        "date": started_at,
        "machine": {**machine(threads=1), "load_1m_start": load_start, "load_1m_end": load_1m()},
        "setup": (
            "GET /v1/jobs/{id} of one queued job; real: "
            + (
                "`modelpress api` (uvicorn, one process)"
                if args.api_workers == 1
                else f"`uvicorn app.main:create_app --factory --workers {args.api_workers}`"
            )
            + f" at commit {commit}; bare: bench/api_bare.py under uvicorn (one process), the same "
            "row by primary key, same PostgreSQL and driver (psycopg 3); both with "
            "uvloop, httptools and the access log at INFO (to a file). Load: "
            f"{args.connections} keep-alive connections from one asyncio process "
            f"(closed loop), {args.seconds:g} s per side and round after "
            f"{args.warmup:g} s of warm-up, {args.rounds} rounds taking turns. CPU per "
            "request: user + system of the server's processes over the round / requests."
        ),
        "note": args.note,
        "real_commit": commit,
        "api_workers": args.api_workers,
        "priority_nice": os.nice(0),
        "quiet_wait_s": round(waited),
        "response_bytes": run.response_bytes,
        "median": med,
        "ratio": {
            "rps_real_over_bare": round(med["real"]["rps"] / med["bare"]["rps"], 3),
            "rps_per_round": per_round,
            "cpu_per_request_bare_over_real": round(
                med["bare"]["server_cpu_ms_per_request"] / med["real"]["server_cpu_ms_per_request"],
                3,
            ),
            "p99_real_over_bare": round(med["real"]["p99_ms"] / med["bare"]["p99_ms"], 3),
        },
        "rounds": rounds,
    }
    stem = f"api-load-{result['date'][:10]}{'-' + args.label if args.label else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict[str, Any]) -> str:
    m, r = result["median"], result["ratio"]
    lines = [
        f"# API read path under load ({result['date']})",
        "",
        result["setup"],
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores; load "
        f"average (1 min) {result['machine']['load_1m_start']} at start, "
        f"{result['machine']['load_1m_end']} at end."
        + f" Every process at nice {result['priority_nice']}."
        + (f" {result['note']}" if result["note"] else ""),
        "",
        "| side | requests/s | p50 ms | p99 ms | server CPU ms/request | "
        "generator CPU ms/request |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for side in ("real", "bare"):
        s = m[side]
        lines.append(
            f"| {side} | {s['rps']:.1f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
            f"{s['server_cpu_ms_per_request']:.2f} | {s['generator_cpu_ms_per_request']:.2f} |"
        )
    lines += [
        "",
        f"Real over bare (medians over rounds): rate {r['rps_real_over_bare']:.2f} (per round: "
        f"{', '.join(f'{x:.2f}' for x in r['rps_per_round'])}); CPU per request, bare over "
        f"real: {r['cpu_per_request_bare_over_real']:.2f}; p99 real over bare: "
        f"{r['p99_real_over_bare']:.2f}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
