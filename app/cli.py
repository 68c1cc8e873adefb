"""``modelpress``: run the service, its pieces, or its migrations.

modelpress serve     embedded mode: migrations, a Celery worker and the API together
modelpress api       the HTTP API only (production)
modelpress worker    a Celery worker only (production)
modelpress migrate   apply the database migrations and create the storage bucket
modelpress compress SPEC.yaml --out DIR   the engine on a spec file, without the service
modelpress models|datasets|jobs|artifacts …   a remote service, through the Python client
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from app.settings import Settings, get_settings

log = logging.getLogger("modelpress")


def migrate(settings: Settings, *, wait_s: float = 60.0) -> None:
    """Apply migrations and create the bucket, waiting for the database and the store to
    come up (in compose, a one-shot migrate that fails is not retried)."""
    from app.migrate import upgrade
    from app.storage import get_storage

    deadline = time.monotonic() + wait_s
    for step, what in (
        (lambda: upgrade(settings.database_url), "database"),
        (lambda: get_storage().ensure(), "storage"),
    ):
        while True:
            try:
                step()
                break
            except Exception as e:
                if time.monotonic() > deadline or not _transient(e):
                    raise
                log.warning("%s not ready (%s); retrying", what, type(e).__name__)
                time.sleep(2)
    log.info("database migrated and storage ready")


def _transient(exc: Exception) -> bool:
    """Connection failures worth waiting out; anything else is a real error."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import EndpointConnectionError
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError | BotoConnectionError | EndpointConnectionError)


def run_api(settings: Settings, host: str | None, port: int | None) -> None:
    import uvicorn

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level.lower(),
    )


def default_queues(settings: Settings) -> str:
    return "cpu,gpu" if settings.gpu_workers else "cpu"


WEBHOOK_QUEUE = "webhooks"  # workers.celery_app.WEBHOOK_QUEUE, without importing Celery


def worker_argv(queues: str, concurrency: int, loglevel: str, name: str | None = None) -> list[str]:
    # Deliveries wait on the network: threads serve them. Compression jobs get a fresh
    # process each (prefork, one task per child).
    pool = "threads" if queues == WEBHOOK_QUEUE else "prefork"
    return [
        "worker",
        "--pool",
        pool,
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        loglevel,
        "--hostname",
        f"{name or 'modelpress-' + queues.replace(',', '-')}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


def run_worker(
    settings: Settings, queues: str | None, concurrency: int | None, name: str | None = None
) -> None:
    from workers.celery_app import celery_app

    queues = queues or default_queues(settings)
    if WEBHOOK_QUEUE in queues.split(",") and queues != WEBHOOK_QUEUE:
        sys.exit(
            f"error: the {WEBHOOK_QUEUE!r} queue needs a worker of its own "
            f"(--queues {WEBHOOK_QUEUE}): deliveries must not run in a compression worker"
        )
    if concurrency is None:
        webhooks = queues == WEBHOOK_QUEUE
        concurrency = settings.webhook_concurrency if webhooks else settings.worker_concurrency
    celery_app.worker_main(worker_argv(queues, concurrency, settings.log_level, name))


def serve(settings: Settings, host: str | None, port: int | None) -> None:
    """Embedded mode: one command, real worker processes beside the API (one for jobs,
    one for webhook deliveries)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate(settings)
    env = {**os.environ, "MODELPRESS_HOME": str(settings.home)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", *extra], env=env, start_new_session=True
        )
        for extra in ([], ["--queues", WEBHOOK_QUEUE])
    ]
    stopping = threading.Event()

    def watch(worker: subprocess.Popen) -> None:
        code = worker.wait()
        if not stopping.is_set():
            log.error("a worker exited (code %s); stopping the service", code)
            os.kill(os.getpid(), signal.SIGTERM)

    for worker in workers:
        threading.Thread(target=watch, args=(worker,), daemon=True).start()
    log.info(
        "modelpress home: %s; worker pids %s", settings.home, ", ".join(str(w.pid) for w in workers)
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; with the
    # default handler that would kill this process before `finally` stops the workers.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        run_api(settings, host, port)
    finally:
        stopping.set()
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)


def keys(settings: Settings, args: argparse.Namespace) -> int:
    from app.auth import service
    from app.db import session_scope

    if settings.is_sqlite:
        # Embedded mode: the first key may come before the first `serve`.
        from app.migrate import upgrade

        logging.getLogger("alembic").setLevel(logging.WARNING)
        upgrade(settings.database_url)
    with session_scope() as session:
        if args.keys_command == "create":
            try:
                row, key = service.create_key(
                    session=session, tenant=args.tenant, scope=args.scope, name=args.name
                )
            except ValueError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            print(
                f"created {row.id} for tenant {row.tenant}, scope {row.scope} "
                f"(shown once, keep it secret): {key}"
            )
        elif args.keys_command == "list":
            for row in service.list_keys(session=session, tenant=args.tenant):
                state = (
                    f"revoked {row.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if row.revoked_at else "active"
                )
                print(
                    f"{row.id}  {row.tenant}  {row.scope:5}  {row.prefix}…  "
                    f"{row.created_at:%Y-%m-%dT%H:%M:%SZ}  {state}"
                )
        elif args.keys_command == "revoke":
            if not service.revoke_key(session=session, key_id=args.key_id):
                print(f"error: no active key {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="modelpress", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "api"):
        p = sub.add_parser(name)
        p.add_argument("--host")
        p.add_argument("--port", type=int)
    w = sub.add_parser("worker")
    w.add_argument("--queues", help="comma-separated: cpu, gpu (default from settings)")
    w.add_argument("--concurrency", type=int)
    w.add_argument("--name", help="node name before the @ (default modelpress-QUEUES)")
    sub.add_parser("migrate")
    c = sub.add_parser("compress", help="compress a model described by a YAML spec file")
    c.add_argument("spec", help="YAML in the job API's vocabulary, with local paths")
    c.add_argument("--out", required=True, help="folder for the model, report and plots")
    c.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    c.add_argument("--latency-threads", type=int, default=2, help="CPU threads when timing")
    k = sub.add_parser("keys", help="API keys")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="print a new key (the last word of the line)")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--scope", choices=("read", "write", "admin"), default="write")
    kc.add_argument("--name")
    kl = ksub.add_parser("list")
    kl.add_argument("--tenant")
    kr = ksub.add_parser("revoke")
    kr.add_argument("key_id")
    from app import remote_cli, remote_parser

    remote_parser.add_commands(sub)
    args = parser.parse_args(argv)
    if args.command in remote_cli.COMMANDS:
        sys.exit(remote_cli.run(args))
    if args.command == "compress":
        # Imported here: the engine pulls in torch, which the API must never load.
        from workers.compress_cli import run_compress

        sys.exit(
            run_compress(
                args.spec, args.out, device=args.device, latency_threads=args.latency_threads
            )
        )

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        serve(settings, args.host, args.port)
    elif args.command == "api":
        run_api(settings, args.host, args.port)
    elif args.command == "worker":
        run_worker(settings, args.queues, args.concurrency, args.name)
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "keys":
        sys.exit(keys(settings, args))


if __name__ == "__main__":
    main()
