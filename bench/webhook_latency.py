"""Webhook delivery latency after a job ends, through the real service on loopback.

    python bench/webhook_latency.py [--jobs 200] [--gap-ms 50]

Starts what production runs (the API with `modelpress api`, a webhooks worker with
`modelpress worker --queues webhooks`) on the local PostgreSQL (a fresh database) and
Redis (database 11), registers a webhook for `job.cancelled` on a receiver in this
process, then ends jobs one after another by cancelling them while queued (the cheapest
way a job ends; a job that succeeds on a worker commits its end and sends its delivery
the same way). For each, latency = when the receiver got the signed POST minus the
job's `finished_at` (one clock: one machine). Results go to
bench/results/webhook-latency-<date>.json with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.net import percentile  # noqa: E402
from bench.service import bench_service, redis_url  # noqa: E402

REDIS = redis_url(11)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=50.0, help="pause between jobs")
    args = parser.parse_args()

    from bench.common import load_1m, machine
    from tests.tiny import make_tiny_bert, make_tiny_dataset
    from tests.webhooks.receiver import running_receiver

    env = {
        "MODELPRESS_URL_ALLOWED_SCHEMES": '["http", "https"]',
        "MODELPRESS_URL_ALLOW_PRIVATE": "true",
    }
    with (
        bench_service("webhooks", redis=REDIS, s3=False, env=env) as svc,
        running_receiver() as rx,
        svc.client() as mp,
    ):
        svc.start("worker", "--queues", "webhooks")
        teacher = make_tiny_bert(svc.home / "tiny")
        data = make_tiny_dataset(svc.home / "tiny.jsonl", n=50)
        model = mp.upload_model(teacher)
        dataset = mp.upload_dataset(data, format="jsonl")
        hook = mp.create_webhook(rx.url("/hook"), events=["job.cancelled"])
        time.sleep(5)  # the worker's start-up, so the first job is not timed against it
        body = {
            "task": "sequence-classification",
            "teacher": {"model_id": model.id},
            "dataset": {"dataset_id": dataset.id},
            "target": {"params_ratio": 0.5},
            # no worker consumes this queue here: every job stays queued until cancelled
            "accelerator": "cpu",
        }
        ended: dict[str, datetime] = {}
        for _ in range(args.jobs):
            job = mp.create_job(body)
            ended[job.id] = _parse(mp.cancel_job(job.id).finished_at)
            time.sleep(args.gap_ms / 1000)
        deadline = time.monotonic() + 120
        while len(rx.on("/hook")) < args.jobs and time.monotonic() < deadline:
            time.sleep(0.2)
        got = rx.on("/hook")
        latencies, verified = [], 0
        from app.webhooks.signing import verify

        for g in got:
            payload = json.loads(g.body)
            job_id = payload["data"]["job"]["id"]
            latencies.append((g.at - ended[job_id].timestamp()) * 1000)
            verified += verify(hook.secret, g.body, g.headers["Modelpress-Signature"])
        attempts = [len(d.attempts) for d in mp.iter_deliveries(hook.id)]
        result = {
            "benchmark": "webhook-latency",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {**machine(threads=1), "load_1m_after": load_1m()},
            "setup": "API (modelpress api) + webhooks worker (4 threads) + receiver on "
            "loopback; PostgreSQL and Redis local; jobs ended by cancelling while queued",
            "jobs": args.jobs,
            "gap_ms": args.gap_ms,
            "delivered": len(got),
            "signatures_verified": verified,
            "attempts_per_delivery_max": max(attempts) if attempts else None,
            "latency_ms": {
                "median": round(statistics.median(latencies), 1),
                "p90": round(percentile(latencies, 0.90), 1),
                "p99": round(percentile(latencies, 0.99), 1),
                "max": round(max(latencies), 1),
                "min": round(min(latencies), 1),
            },
        }
    out = ROOT / "bench" / "results" / f"webhook-latency-{result['date'][:10]}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _parse(value) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


if __name__ == "__main__":
    main()
