"""What a newcomer waits for: a fresh clone's `scripts/serve.sh` until the service is
ready, then the README's curl walkthrough until its job has ended.

    python3 bench/first_run.py [--port 8000] [--keep]

Clones the repository's HEAD into a temporary folder (so `.venv` is created from
nothing, as on a new machine), runs `scripts/serve.sh` there with its own
MODELPRESS_HOME, polls `/readyz`, then runs `scripts/demo/walkthrough.sh` (the
README's blocks, exactly) and reads the job's own times from its events. The 1-minute
load average before and after says how busy the machine was. Results go to
bench/results/first-run-<date>.json. The walkthrough uses port 8000.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


def machine() -> dict:
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--keep", action="store_true", help="keep the clone afterwards")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="modelpress-first-run-"))
    clone = work / "modelpress"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # A clone has no ../shared; the walkthrough must not need it either.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELPRESS_", "VIRTUAL_ENV"))}
    env["MODELPRESS_HOME"] = str(work / "home")
    # Not this checkout's venv: the clone makes its own, from the system's python3.
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    log = open(work / "serve.log", "wb")  # noqa: SIM115
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    serve = subprocess.Popen(
        ["bash", "scripts/serve.sh", "--port", str(args.port)],
        cwd=clone,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    result: dict = {
        "benchmark": "first-run",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_1m_before": round(load_before, 2),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True
        ).stdout.strip(),
    }
    try:
        while not ready(args.port):
            if serve.poll() is not None:
                raise SystemExit(f"serve.sh exited {serve.returncode}; see {work / 'serve.log'}")
            if time.monotonic() - started > 1800:
                raise SystemExit("not ready after 30 minutes")
            time.sleep(1)
        result["serve_to_ready_s"] = round(time.monotonic() - started, 1)
        print(f"ready after {result['serve_to_ready_s']} s", file=sys.stderr)
        t0 = time.monotonic()
        walk = subprocess.run(
            ["bash", "scripts/demo/walkthrough.sh"],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
        )
        result["walkthrough_s"] = round(time.monotonic() - t0, 1)
        result["walkthrough_exit"] = walk.returncode
        result["walkthrough_tail"] = walk.stdout[-1500:] + walk.stderr[-1500:]
        job = json.loads((clone / "job.json").read_text())
        created = datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
        finished = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
        result["job"] = {
            "status": job["status"],
            "post_to_end_s": round((finished - created).total_seconds(), 1),
            "metrics": job.get("metrics"),
        }
    finally:
        result["load_1m_after"] = round(os.getloadavg()[0], 2)
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results" / f"first-run-{result['date'][:10]}.json"
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    out.write_text(json.dumps({"runs": [*runs, result]}, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "walkthrough_tail"}, indent=2))


if __name__ == "__main__":
    main()
