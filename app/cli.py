"""The modelpress command: run the service, its pieces, its migrations, the engine on a
spec file, or a remote service through the Python client (DESCRIPTION says which).

Help texts are plain text (no RST markup: argparse prints them as they are) and show
their defaults (HelpFormatter); tests/test_cli_help.py runs every --help.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable

from app.queues import WEBHOOK_QUEUE
from app.settings import Settings, get_settings

log = logging.getLogger("modelpress")


def migrate(settings: Settings, *, wait_s: float = 60.0) -> None:
    """Apply migrations and create the bucket, waiting for the database and the store to
    come up (in compose, a one-shot migrate that fails is not retried)."""
    _quiet_alembic()
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


def _quiet_alembic() -> None:
    # At every start Alembic logs one INFO line per autogenerate plugin it sets up and two
    # about the database's DDL; none says anything about the migrations, whose "Running
    # upgrade" lines stay.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.migration").addFilter(
        lambda record: not record.getMessage().startswith(("Context impl", "Will assume"))
    )


def _transient(exc: Exception) -> bool:
    """Connection failures worth waiting out; anything else is a real error."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import EndpointConnectionError
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError | BotoConnectionError | EndpointConnectionError)


def run_api(
    settings: Settings,
    host: str | None,
    port: int | None,
    on_started: Callable[[str], None] | None = None,
) -> None:
    """uvicorn.run's single-process path, with ``on_started(url)`` called once the socket
    listens and the application's startup completed."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_started is not None:
                on_started(_url(settings, config.host, config.port))

    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level.lower(),
    )
    server = Server(config)
    # uvicorn re-raises the SIGINT it shut down on; uvicorn.run swallows it too.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE


def _url(settings: Settings, host: str, port: int) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"


def default_queues(settings: Settings) -> str:
    return "cpu,gpu" if settings.gpu_workers else "cpu"


def worker_argv(
    queues: str,
    concurrency: int,
    loglevel: str,
    name: str | None = None,
    *,
    quiet: bool = False,
) -> list[str]:
    # Deliveries wait on the network: threads serve them. Compression jobs get a fresh
    # process each (prefork, one task per child).
    pool = "threads" if queues == WEBHOOK_QUEUE else "prefork"
    return [
        *(["--quiet"] if quiet else []),
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


def torch_threads(concurrency: int, cpus: int | None = None) -> int:
    """Torch (OpenMP) threads for each of a worker's ``concurrency`` job processes: the
    host's cores shared among them. Each process would otherwise start one thread per
    core, and W pools on C cores spin-wait on each other (in the test suite, two such
    pools on two cores made a job run 5 times slower)."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, concurrency))


def run_worker(
    settings: Settings,
    queues: str | None,
    concurrency: int | None,
    name: str | None = None,
    *,
    quiet: bool = False,
) -> None:
    # The one command that starts the worker: the CLI is the entry point of the API and
    # the worker both, so it alone imports workers/ (lazily, for these commands only;
    # tests/app/test_layering.py lists it).
    from workers.celery_app import celery_app

    queues = queues or default_queues(settings)
    # Under serve, one explanation is enough: the jobs worker gives it.
    beside_another = READY_FD in os.environ and queues == WEBHOOK_QUEUE
    _explain_root(celery_app.conf.accept_content, say=not beside_another)
    _report_ready()
    if settings.broker_url.startswith("filesystem://"):
        # kombu warns that the URL names no host; the filesystem transport needs none.
        logging.getLogger("kombu.connection").addFilter(
            lambda record: "No hostname was supplied" not in record.getMessage()
        )

    if WEBHOOK_QUEUE in queues.split(",") and queues != WEBHOOK_QUEUE:
        sys.exit(
            f"error: the {WEBHOOK_QUEUE!r} queue needs a worker of its own "
            f"(--queues {WEBHOOK_QUEUE}): deliveries must not run in a compression worker"
        )
    webhooks = queues == WEBHOOK_QUEUE
    if concurrency is None:
        concurrency = settings.webhook_concurrency if webhooks else settings.worker_concurrency
    if not webhooks:
        # Before torch is imported, so the main process and every child it forks have
        # it; an operator's own OMP_NUM_THREADS wins.
        os.environ.setdefault("OMP_NUM_THREADS", str(torch_threads(concurrency)))
        # The engine (torch, transformers: about 5 s here) is imported once, in the main
        # process, before the pool forks: each job's fresh child starts with it loaded
        # instead of importing it again. Nothing runs on torch in this process, so no
        # thread pool exists yet when it forks.
        # So is datasets (pandas, pyarrow), which the engine imports only when it reads a
        # split: every job's child paid 0.5 s for it. It starts no thread on import.
        import datasets  # noqa: F401

        import workers.engine.compress  # noqa: F401
    celery_app.worker_main(worker_argv(queues, concurrency, settings.log_level, name, quiet=quiet))


def _explain_root(accept_content: list[str], *, say: bool = True) -> None:
    """Celery 5 (celery.platforms.check_privileges) refuses to run as root when it
    accepts pickle, unless C_FORCE_ROOT is set, and otherwise prints a 7-line
    SecurityWarning that C_FORCE_ROOT does not silence. The refusal guards against code
    execution by anyone who can write to the broker, which needs pickle; these workers
    accept JSON only (workers/celery_app.py), so as root (a container, a dev machine)
    the warning is replaced by one line that says what is left of the risk. With pickle
    accepted, Celery's own check stays in force."""
    if os.geteuid() != 0 or any("pickle" in c or "python-serialize" in c for c in accept_content):
        return
    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", category=SecurityWarning)
    if say:
        log.info(
            "running as root; Celery's root warning is silenced because workers accept JSON "
            "only (no pickle); in production run them as an unprivileged user, as the "
            "Dockerfile does"
        )


READY_FD = "MODELPRESS_READY_FD"


def _report_ready() -> None:
    """Under ``modelpress serve``: write one byte to the pipe serve passed once this
    worker consumes, so serve says "ready" only when the API and the workers are."""
    fd = os.environ.pop(READY_FD, None)
    if fd is None:
        return
    from celery.signals import worker_ready

    def ready(**_kwargs: object) -> None:
        with contextlib.suppress(OSError):
            os.write(int(fd), b".")
            os.close(int(fd))

    worker_ready.connect(ready, weak=False)


def serve(settings: Settings, host: str | None, port: int | None) -> None:
    """Embedded mode: one command, real worker processes beside the API (one for jobs,
    one for webhook deliveries)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate(settings)
    ready_r, ready_w = os.pipe()
    env = {**os.environ, "MODELPRESS_HOME": str(settings.home), READY_FD: str(ready_w)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--quiet", *extra],
            env=env,
            start_new_session=True,
            pass_fds=(ready_w,),
        )
        for extra in ([], ["--queues", WEBHOOK_QUEUE])
    ]
    os.close(ready_w)
    stopping = threading.Event()
    api_url: list[str] = []
    api_started = threading.Event()

    def announce() -> None:
        # One byte from each worker once it consumes, then the API's start: the line a
        # newcomer needs next is the last of the start-up.
        got = 0
        with os.fdopen(ready_r, "rb", buffering=0) as pipe:
            while got < len(workers):
                chunk = pipe.read(len(workers) - got)
                if not chunk:
                    return  # the workers are gone: the watchdog below says so
                got += len(chunk)
        api_started.wait()
        # A worker logs its own "ready." just after it signals; this line comes last.
        time.sleep(0.5)
        if not stopping.is_set():
            log.info(
                "modelpress is ready at %s; next, create a key: "
                "modelpress keys create --tenant NAME",
                api_url[0],
            )

    def watch(worker: subprocess.Popen) -> None:
        code = worker.wait()
        if not stopping.is_set():
            log.error("a worker exited (code %s); stopping the service", code)
            os.kill(os.getpid(), signal.SIGTERM)

    for worker in workers:
        threading.Thread(target=watch, args=(worker,), daemon=True).start()
    threading.Thread(target=announce, daemon=True).start()
    log.info(
        "modelpress home: %s; worker pids %s", settings.home, ", ".join(str(w.pid) for w in workers)
    )

    def started(url: str) -> None:
        api_url.append(url)
        api_started.set()

    # uvicorn re-raises the signal that stopped it once it has shut down; with the
    # default handler that would kill this process before `finally` stops the workers.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        run_api(settings, host, port, on_started=started)
    finally:
        stopping.set()
        stop_workers(workers, idle_s=settings.shutdown_grace_seconds)


def stop_workers(workers: list[subprocess.Popen], idle_s: float) -> None:
    """SIGTERM to each worker's main process: Celery's warm shutdown stops its pool.
    Sent to the whole process group, the pool's children would die first and Celery
    would log an ERROR for each. A worker still up after ``idle_s`` is busy with a job,
    which warm shutdown would wait for: SIGQUIT, Celery's cold shutdown, ends the job's
    process (its lease runs out and the next start resumes it from its last
    checkpoint); a worker still up 5 s later is killed with its processes."""
    for worker in workers:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGTERM)
    # Cold shutdown has been seen to hang after it requeued the job's message: a short
    # wait, then SIGKILL to the worker's group (its reaper included).
    for grace, then in ((idle_s, signal.SIGQUIT), (5.0, signal.SIGKILL)):
        deadline = time.monotonic() + grace
        for worker in workers:
            try:
                worker.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                if then == signal.SIGQUIT:
                    log.warning(
                        "worker %s is still running a job after %.0f s: stopping it now; "
                        "the job resumes from its last checkpoint at the next start",
                        worker.pid,
                        grace,
                    )
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, then)
                else:
                    log.warning("worker %s did not stop; killing it", worker.pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(worker.pid, then)
        if all(w.poll() is not None for w in workers):
            return


def keys(settings: Settings, args: argparse.Namespace) -> int:
    from app.auth import service
    from app.db import session_scope

    if settings.is_sqlite:
        # Embedded mode: the first key may come before the first `serve`. Silenced before
        # alembic is imported, which logs its plugins' set-up then: the only line this
        # command prints is the key.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        from app.migrate import upgrade

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
            wait = get_settings().api_key_cache_seconds
            print(
                f"revoked {args.key_id}"
                + (f" (API processes refuse it within {wait:g} s)" if wait else "")
            )
    return 0


DESCRIPTION = """\
modelpress makes transformer models smaller and faster: a service (HTTP API, workers)
and the engine behind it.

start here:
  modelpress serve                            the whole service on this machine
  modelpress keys create --tenant NAME        an API key for it (printed once)
  modelpress compress spec.yaml --out run/    the engine on a spec file, no service

run "modelpress COMMAND --help" for a command's options and an example.
"""

COMPRESS_EPILOG = """\
the spec file (YAML): the job API's vocabulary (docs/api.md, POST /v1/jobs), with local
paths where the API takes ids; paths are relative to the spec file.
  task          sequence-classification or token-classification (required)
  teacher       a save_pretrained folder: config.json, safetensors weights, a tokenizer
                (required)
  dataset       path: one file, split as an upload is (a split column, else 10% held
                out with seed 0), with train_split (train) and eval_split (validation);
                or train: and eval: two files. format (default: from the file suffix:
                jsonl, csv, tsv, parquet, conll); columns as at an upload: text_column,
                label_column, tokens_column, tags_column, tag_index (required)
  target        exactly one of: params_ratio (the fraction of the teacher's
                non-embedding parameters to keep), sparsity (the fraction of weights
                zeroed; pattern unstructured or 2:4), speedup (times faster than the
                teacher, CPU latency at batch 1, measured here; runtime pytorch, or
                onnxruntime / onnxruntime-int8 with that format exported) (required);
                min_retention and max_latency_ms (with batch_size, seq_len, budget)
                are sweeps (docs/sweeps.md): here the candidates run one after the
                other, the teacher fine-tuned once; OUT gets the pick, sweep.png and
                candidates/
  strategy      prune_then_distill (default), distill_then_prune or joint
  distillation  temperature (2.0), alpha (0.5: the weight of the label loss),
                hidden_states (true), attention (false)
  pruning       structured (["layers", "ffn"]; any of layers, ffn, hidden, heads),
                unstructured_sparsity (0.0), importance (taylor; or activation, magnitude)
  training      epochs (3), batch_size (32), learning_rate (null: 1e-4 when the
                student keeps under 0.45 of the teacher, else 5e-05),
                max_seq_length (128), seed (0), student_seed (null: seed; the
                student's draws alone, the teacher keeps seed), teacher_epochs (3),
                teacher_learning_rate (5e-05), checkpoint_every_steps (200),
                cache_teacher_logits (false), devices (null: every GPU, or one CPU
                process; data-parallel, batch_size stays the batch of a step),
                gradient_accumulation_steps (1), teacher_cache (true: a service job
                reuses a teacher an earlier job fine-tuned; this command keeps none)
  export        formats (["safetensors"]; any of safetensors, onnx, onnx-int8): each
                format is its own folder in OUT, scored and timed in its runtime;
                keep_candidates (false: a service sweep's other candidates as its
                artifacts; here a sweep always keeps them in OUT/candidates/);
                quantization_aware (0.0: the share of the last round's steps that
                train through the int8 export's rounding; needs onnx-int8)
  label_names   names of the label ids 0..n-1, as at a dataset upload (optional)

example (spec.yaml, beside the teacher folder and the data):
  task: sequence-classification
  teacher: teacher/
  dataset: {path: reviews.jsonl}
  target: {params_ratio: 0.5}
  training: {epochs: 2}

  modelpress compress spec.yaml --out run/

OUT receives data/ (the normalised splits), model/ (loads with the plain transformers
Auto class; model-onnx/, model-onnx-int8/ for those formats), report.json, the model
card README.md and PNG plots; a progress bar runs on stderr, the results table is
printed at the end. Exit status: 0 done, 2 the spec or its inputs are wrong (the
message names the key), 130 stopped with Ctrl-C (once: at the next step; twice: at
once).
"""

KEYS_CREATE_EPILOG = """\
The key is printed once, as the last word of the line, and stored only as a hash: keep
it. Every request sends it as "Authorization: Bearer KEY". In embedded mode (no
MODELPRESS_DATABASE_URL) the migrations run first, so a key can come before the first
"modelpress serve".

example:
  KEY=$(modelpress keys create --tenant search | awk '{print $NF}')
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (examples keep their lines), and every option
    with a default says it, unless its help already does or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or not (action.option_strings or action.nargs in ("?", "*"))
        ):
            return text
        return f"{text} (default: %(default)s)"


def wrap(text: str) -> str:
    """A description filled to the terminal's usual width (HelpFormatter keeps it as is)."""
    return textwrap.fill(text, 88)


def _default(field: str) -> object:
    """A setting's default, read from the class: --help must not fail on a bad env."""
    return Settings.model_fields[field].default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelpress", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, **kwargs: object) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=wrap(help),
            formatter_class=HelpFormatter,
            **kwargs,  # type: ignore[arg-type]
        )

    host, port = _default("api_host"), _default("api_port")
    for name, what in (
        (
            "serve",
            "embedded mode: the migrations, a compression worker, a webhooks worker and "
            "the API in one command; SQLite, a filesystem broker and artifact files "
            "under MODELPRESS_HOME unless MODELPRESS_* settings say otherwise",
        ),
        ("api", "the HTTP API only (production: the migrations ran before, workers apart)"),
    ):
        p = command(name, what)
        p.add_argument(
            "--host", help=f"address to listen on (default: $MODELPRESS_API_HOST, else {host})"
        )
        p.add_argument(
            "--port",
            type=int,
            help=f"port to listen on (default: $MODELPRESS_API_PORT, else {port})",
        )
    w = command(
        "worker",
        "a Celery worker only (production): compression jobs from the cpu and gpu "
        "queues, or webhook deliveries from the webhooks queue (a worker of its own)",
    )
    w.add_argument(
        "--queues",
        help="comma-separated: cpu, gpu, or webhooks alone (default: cpu; cpu,gpu "
        "with MODELPRESS_GPU_WORKERS=true)",
    )
    w.add_argument(
        "--concurrency",
        type=int,
        help="jobs (processes) or deliveries (threads) at once (default: "
        f"$MODELPRESS_WORKER_CONCURRENCY, else {_default('worker_concurrency')}; for "
        f"webhooks $MODELPRESS_WEBHOOK_CONCURRENCY, else {_default('webhook_concurrency')})",
    )
    w.add_argument(
        "--name", help="node name before the @ (default: modelpress-QUEUES, e.g. modelpress-cpu)"
    )
    w.add_argument(
        "--quiet", action="store_true", help="no Celery start-up banner (serve passes it)"
    )
    command(
        "migrate",
        "apply the database migrations (Alembic) and create the storage bucket, waiting "
        "up to 60 s for the database and the store to come up; run before a new release's "
        "API and workers start",
    )
    c = command(
        "compress",
        "the engine on a YAML spec file, without the service",
        epilog=COMPRESS_EPILOG,
    )
    c.add_argument("spec", help="the YAML spec file (its fields below)")
    c.add_argument(
        "--out", required=True, metavar="OUT", help="folder for the model, report and plots"
    )
    c.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to train (auto: cuda when there is one)",
    )
    c.add_argument("--latency-threads", type=int, default=2, help="CPU threads when timing latency")
    k = command(
        "keys",
        "API keys: create, list, revoke (on the server, against its database)",
    )
    ksub = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    def keys_action(name: str, help: str, **kwargs: object) -> argparse.ArgumentParser:
        return ksub.add_parser(
            name,
            help=help,
            description=wrap(help),
            formatter_class=HelpFormatter,
            **kwargs,  # type: ignore[arg-type]
        )

    kc = keys_action(
        "create",
        "create an API key and print it (the last word of the line)",
        epilog=KEYS_CREATE_EPILOG,
    )
    kc.add_argument(
        "--tenant",
        required=True,
        help="the tenant the key belongs to: a name of your choosing; a key sees only its "
        "tenant's models, datasets, jobs and webhooks (another tenant's ids answer 404)",
    )
    kc.add_argument(
        "--scope",
        choices=("read", "write", "admin"),
        default="write",
        help="read: GET only; write: also upload, create, cancel and delete; admin: what "
        "write may (no route asks for more yet)",
    )
    kc.add_argument("--name", help="a label to recognise the key by in keys list (optional)")
    kl = keys_action("list", "list keys: id, tenant, scope, prefix, created, active or revoked")
    kl.add_argument("--tenant", help="only this tenant's keys (default: every tenant)")
    kr = keys_action(
        "revoke",
        "revoke a key: requests with it get 401 from then on (within "
        "MODELPRESS_API_KEY_CACHE_SECONDS on an API process that has just accepted it)",
    )
    kr.add_argument("key_id", help="the key's id (key_…), as keys create and keys list print")
    from app import remote_parser

    remote_parser.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    from app import remote_cli

    args = parser.parse_args(argv)
    if args.command in remote_cli.COMMANDS:
        sys.exit(remote_cli.run(args))
    if args.command == "compress":
        # Imported here: the engine pulls in torch, which the API must never load. The
        # CLI runs the engine locally for this command, so it may import workers/ (one of
        # the entry points tests/app/test_layering.py lists).
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
        run_worker(settings, args.queues, args.concurrency, args.name, quiet=args.quiet)
    elif args.command == "migrate":
        migrate(settings)
    elif args.command == "keys":
        sys.exit(keys(settings, args))


if __name__ == "__main__":
    main()
