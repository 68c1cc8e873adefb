"""``modelpress models|datasets|jobs|artifacts …``: a remote modelpress service, through
the Python client (clients/python, imported only when one of these commands runs, so
the server never needs it).

The service and the key: ``--url`` / ``--api-key``, else ``MODELPRESS_URL`` /
``MODELPRESS_API_KEY``. ``get`` and ``list`` print JSON; the other commands print
short lines, and progress (uploads, downloads, ``--wait``) goes to stderr as one
updating line.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from app.sweeps.report import sweep_table

COMMANDS = ("models", "datasets", "jobs", "artifacts")

EXIT_ERROR = 1  # the service refused the request, or could not be reached
EXIT_USAGE = 2  # no URL or key, or a wrong spec file
EXIT_FAILED = 3  # the job failed (its error code and message on stderr)
EXIT_CANCELLED = 4  # the job was cancelled
EXIT_TIMEOUT = 5  # --timeout passed before the job ended
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""exit status: 0 done; {EXIT_ERROR} the service refused the request or could \
not be reached; {EXIT_USAGE} no URL or key, or a wrong spec file; with --wait: \
{EXIT_FAILED} the job failed, {EXIT_CANCELLED} it was cancelled, {EXIT_TIMEOUT} --timeout \
passed first"""


class UsageError(Exception):
    pass


# ----------------------------------------------------------------- output


class Bar:
    """One updating line on stderr: ``[#####-----]  42%  running · distilling``."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.last = ""

    def show(self, fraction: float, text: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = round(fraction * self.width)
        line = f"[{'#' * filled}{'-' * (self.width - filled)}] {fraction:4.0%}  {text}"
        if line != self.last:
            pad = " " * max(len(self.last) - len(line), 0)
            self.stream.write(f"\r{line}{pad}")
            self.stream.flush()
            self.last = line

    def done(self) -> None:
        if self.last:
            self.stream.write("\n")
            self.stream.flush()
            self.last = ""


def _bytes_bar(label: str) -> Callable[[int, int], None]:
    bar = Bar()

    def update(sent: int, total: int) -> None:
        bar.show(sent / total if total else 1.0, f"{label} ({sent / 1e6:.1f}/{total / 1e6:.1f} MB)")
        if sent >= total:
            bar.done()

    return update


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=_json_default))


def _raw(resource: Any) -> Any:
    raw = getattr(resource, "raw", None)
    return raw if raw else dataclasses.asdict(resource)


def _err(message: str) -> None:
    print(message, file=sys.stderr)


# ---------------------------------------------------------------- commands


def _client(args: argparse.Namespace) -> Any:
    url = args.url or os.environ.get("MODELPRESS_URL")
    key = args.api_key or os.environ.get("MODELPRESS_API_KEY")
    missing = [
        text
        for text, value in (
            ("the service URL (--url or MODELPRESS_URL)", url),
            ("an API key (--api-key or MODELPRESS_API_KEY; `modelpress keys create`)", key),
        )
        if not value
    ]
    if missing:
        raise UsageError("give " + " and ".join(missing))
    try:
        from modelpress_client import Client
    except ImportError as e:
        raise UsageError(
            "the remote commands need the client: pip install -e clients/python"
        ) from e

    def retrying(info: Any) -> None:
        why = f"HTTP {info.status}" if info.status else info.error
        _err(f"{why}: retrying in {info.wait_s:.1f} s (try {info.attempt + 1})")

    return Client(url, api_key=key, on_retry=retrying)


def models(args: argparse.Namespace, mp: Any) -> int:
    if args.action == "upload":
        m = mp.upload_model(Path(args.path), name=args.name, on_progress=_bytes_bar("uploading"))
        print(f"{m.id}  {m.filename}  {m.architecture}  {m.num_parameters} parameters")
    elif args.action == "get":
        _print_json(mp.get_model(args.id).raw)
    elif args.action == "list":
        _print_json([m.raw for m in itertools.islice(mp.iter_models(), args.limit)])
    elif args.action == "delete":
        mp.delete_model(args.id)
        print(f"deleted {args.id}")
    return 0


def datasets(args: argparse.Namespace, mp: Any) -> int:
    if args.action == "upload":
        from app.remote_spec import SpecError, format_of

        path = Path(args.path)
        try:
            fmt = format_of(path, args.format)
        except SpecError as e:
            raise UsageError(e.messages[0].replace("dataset.format", "--format")) from e
        ds = mp.upload_dataset(
            path,
            format=fmt,
            name=args.name,
            task=args.task,
            text_column=args.text_column,
            label_column=args.label_column,
            label_names=args.label_names.split(",") if args.label_names else None,
            on_progress=_bytes_bar("uploading"),
        )
        splits = ", ".join(f"{k} {v}" for k, v in ds.splits.items())
        print(f"{ds.id}  {ds.filename}  {ds.task_hint}  {ds.num_rows} rows ({splits})")
    elif args.action == "get":
        _print_json(mp.get_dataset(args.id).raw)
    elif args.action == "list":
        _print_json([d.raw for d in itertools.islice(mp.iter_datasets(), args.limit)])
    elif args.action == "delete":
        mp.delete_dataset(args.id)
        print(f"deleted {args.id}")
    return 0


def jobs(args: argparse.Namespace, mp: Any) -> int:
    if args.action == "create":
        from app import remote_spec

        spec = Path(args.spec)
        plan = remote_spec.Plan(remote_spec.load(spec), spec.resolve().parent)
        body = plan.upload(mp, _bytes_bar)
        job = mp.create_job(body, idempotency_key=args.idempotency_key)
        print(f"{job.id}  {job.status}")
        return follow(mp, job.id, args.timeout) if args.wait else 0
    if args.action == "wait":
        return follow(mp, args.id, args.timeout)
    if args.action == "get":
        _print_json(mp.get_job(args.id).raw)
    elif args.action == "list":
        found = mp.iter_jobs(
            status=args.status, page_size=min(args.limit, 100), parent_id=args.parent
        )
        _print_json([j.raw for j in itertools.islice(found, args.limit)])
    elif args.action == "cancel":
        job = mp.cancel_job(args.id)
        print(f"{job.id}  {job.status}")
    elif args.action == "delete":
        mp.delete_job(args.id)
        print(f"deleted {args.id}")
    elif args.action == "events":
        events = mp.stream_events(args.id) if args.follow else mp.iter_events(args.id)
        for event in events:  # one JSON object a line, as they come
            print(json.dumps(dataclasses.asdict(event), default=_json_default), flush=True)
    return 0


def follow(mp: Any, job_id: str, timeout: float | None) -> int:
    """Show the job's progress until it ends; the exit status says how it ended."""
    from modelpress_client import WaitTimeout

    bar = Bar()

    def show(p: Any) -> None:
        bar.show(p.progress, p.status + (f" · {p.phase}" if p.phase else ""))

    try:
        job = mp.wait(job_id, on_progress=show, timeout=timeout)
    except KeyboardInterrupt:
        bar.done()
        _err(f"interrupted; job {job_id} goes on (`modelpress jobs cancel {job_id}` stops it)")
        return EXIT_INTERRUPTED
    except WaitTimeout as e:
        bar.done()
        state = e.job.status if e.job is not None else "unknown"
        _err(f"error: job {job_id} had not ended after {timeout} s (it is {state})")
        return EXIT_TIMEOUT
    bar.done()
    if job.status == "succeeded":
        print(f"{job.id}  succeeded")
        sweep = (job.metrics or {}).get("sweep")
        if sweep:
            print(sweep_table(sweep))
        return 0
    if job.status == "cancelled":
        _err(f"job {job.id} was cancelled")
        return EXIT_CANCELLED
    error = job.error
    code, message = (error.code, error.message) if error else ("unknown", "no error recorded")
    _err(f"error: job {job.id} failed: {code}: {message}")
    return EXIT_FAILED


def artifacts(args: argparse.Namespace, mp: Any) -> int:
    if args.action == "list":
        _print_json([dataclasses.asdict(a) for a in mp.list_artifacts(args.job)])
    elif args.action == "download":
        path = mp.download_artifact(
            args.job, args.name, args.output, on_progress=_bytes_bar(f"downloading {args.name}")
        )
        print(f"{path}  ({path.stat().st_size} bytes, sha256 checked)")
    return 0


HANDLERS = {"models": models, "datasets": datasets, "jobs": jobs, "artifacts": artifacts}


def run(args: argparse.Namespace) -> int:
    from app.remote_spec import SpecError

    try:
        with _client(args) as mp:
            return HANDLERS[args.command](args, mp)
    except (UsageError, SpecError) as e:
        for message in getattr(e, "messages", None) or [str(e)]:
            _err(f"error: {message}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:
        from modelpress_client import ModelpressError

        if not isinstance(e, ModelpressError):
            raise
        _err(f"error: {e}")
        return EXIT_ERROR
