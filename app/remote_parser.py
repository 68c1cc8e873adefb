"""The argparse side of the remote commands (app/remote_cli.py runs them)."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli import HelpFormatter, wrap
from app.jobspec import vocabulary
from app.remote_cli import EXIT_CODES

JOB_STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")


def _connection() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help="the service, e.g. http://localhost:8000 (default: $MODELPRESS_URL)"
    )
    common.add_argument(
        "--api-key", help="an API key of the service (default: $MODELPRESS_API_KEY)"
    )
    return common


def _group(sub: Any, name: str, help: str) -> Any:
    group = sub.add_parser(
        name, help=help, description=wrap(help), epilog=EXIT_CODES, formatter_class=HelpFormatter
    )
    return group.add_subparsers(dest="action", required=True, metavar="ACTION")


def _leaf(actions: Any, name: str, help: str, common: argparse.ArgumentParser) -> Any:
    return actions.add_parser(
        name, help=help, description=wrap(help), parents=[common], formatter_class=HelpFormatter
    )


def _listing(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--limit", type=int, default=20, help=f"at most this many {what}, newest first"
    )


def add_commands(sub: Any) -> None:
    """Register ``models``, ``datasets``, ``jobs`` and ``artifacts`` on the CLI."""
    common = _connection()

    m = _group(sub, "models", "teacher models on a remote service")
    upload_help = "upload a save_pretrained folder (packed on the way), or a .tar.gz/.zip of one"
    p = _leaf(m, "upload", upload_help, common)
    p.add_argument("path", help="the folder or archive")
    p.add_argument("--name", help="a name to find it by")
    _leaf(m, "get", "print a model as JSON", common).add_argument("id", help="mdl_…")
    _listing(_leaf(m, "list", "print models as a JSON array", common), "models")
    _leaf(m, "delete", "delete a model", common).add_argument("id", help="mdl_…")

    d = _group(sub, "datasets", "datasets on a remote service")
    p = _leaf(d, "upload", "upload a data file", common)
    p.add_argument("path", help="the file")
    p.add_argument(
        "--format",
        choices=("jsonl", "csv", "tsv", "parquet", "conll"),
        help="the file's format (default: from its suffix)",
    )
    p.add_argument("--name", help="a name to find it by")
    p.add_argument(
        "--task",
        choices=vocabulary.TASKS,
        help="what the data is for (default: detected)",
    )
    p.add_argument("--text-column", help="classification: the text column")
    p.add_argument("--label-column", help="classification: the label column")
    p.add_argument("--label-names", help='names of label ids 0..n-1, e.g. "negative,positive"')
    _leaf(d, "get", "print a dataset as JSON", common).add_argument("id", help="ds_…")
    _listing(_leaf(d, "list", "print datasets as a JSON array", common), "datasets")
    _leaf(d, "delete", "delete a dataset", common).add_argument("id", help="ds_…")

    j = _group(sub, "jobs", "compression jobs on a remote service")
    p = _leaf(
        j,
        "create",
        "create a job from a spec file: the YAML that modelpress compress reads, whose "
        "teacher and dataset are uploaded first when they are local paths, or name "
        "{model_id: …} / {dataset_id: …}",
        common,
    )
    p.add_argument("spec", help="the YAML spec file")
    p.add_argument("--wait", action="store_true", help="follow the job to its end, with a bar")
    p.add_argument(
        "--timeout",
        type=float,
        help="with --wait: give up after this many seconds (default: no limit)",
    )
    p.add_argument(
        "--idempotency-key",
        help="send this key (default: a new one); the same key and spec give the same job",
    )
    p = _leaf(j, "wait", "follow a job to its end, with a progress bar", common)
    p.add_argument("id", help="job_…")
    p.add_argument(
        "--timeout", type=float, help="give up after this many seconds (default: no limit)"
    )
    _leaf(j, "get", "print a job as JSON", common).add_argument("id", help="job_…")
    p = _leaf(j, "list", "print jobs as a JSON array", common)
    _listing(p, "jobs")
    p.add_argument("--status", choices=JOB_STATUSES, help="only jobs in this status")
    p.add_argument(
        "--parent",
        metavar="JOB_ID",
        help="the candidates (child jobs) of this sweep instead of the jobs submitted",
    )
    _leaf(j, "cancel", "cancel a queued or running job", common).add_argument("id", help="job_…")
    _leaf(j, "delete", "delete a finished job and its artifacts", common).add_argument(
        "id", help="job_…"
    )
    p = _leaf(j, "events", "print a job's events, one JSON object a line", common)
    p.add_argument("id", help="job_…")
    p.add_argument("--follow", action="store_true", help="keep printing until the job ends")

    a = _group(sub, "artifacts", "what a succeeded job produced")
    _leaf(a, "list", "print a job's artifacts as a JSON array", common).add_argument(
        "job", help="job_…"
    )
    p = _leaf(a, "download", "download an artifact, checked against its sha256", common)
    p.add_argument("job", help="job_…")
    p.add_argument("name", help="model, report, model-card, teacher-vs-student, …")
    p.add_argument(
        "-o", "--output", help="a file, or a folder for it (default: the current folder)"
    )
