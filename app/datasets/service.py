"""Datasets: upload and validate, read, list, delete (keyword-only functions)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.datasets.labels import label_warnings
from app.datasets.parse import FORMATS, ParseOptions, parse_dataset
from app.datasets.splits import ParsedDataset
from app.datasets.tables import Dataset
from app.errors import ProblemError
from app.ids import new_id
from app.jobs.tables import Job
from app.pagination import keyset
from app.quotas import ACTIVE, check_storage_quota
from app.settings import Settings
from app.storage import Storage, file_digest
from app.teacher_cache.service import remove_entries_of
from app.tenancy import get_owned


def split_key(dataset_id: str, split: str) -> str:
    return f"datasets/{dataset_id}/splits/{split}.jsonl"


def parse_label_names(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    if raw.startswith("["):
        try:
            names = json.loads(raw)
        except ValueError as e:
            raise ProblemError(
                422, "validation_error", "label_names is not a JSON array.", param="label_names"
            ) from e
    else:
        names = [p.strip() for p in raw.split(",")]
    if (
        not isinstance(names, list)
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
        or len(names) < 2
    ):
        raise ProblemError(
            422,
            "validation_error",
            "label_names must list two or more distinct non-empty names, as a JSON array "
            'or comma-separated ("negative,positive").',
            param="label_names",
        )
    return names


def create_dataset(
    *,
    session: Session,
    storage: Storage,
    settings: Settings,
    tenant: str,
    path: Path,
    filename: str,
    fmt: str,
    name: str | None,
    options: ParseOptions,
) -> tuple[Dataset, ParsedDataset]:
    """Check the whole file, then store it and its normalised splits, then the row.

    Returns the row and what parsing found (columns used, duplicates, IOB1 tags
    rewritten), which is reported in the upload's response only.
    """
    if fmt not in FORMATS:
        raise ProblemError(
            422,
            "validation_error",
            f"format must be one of {', '.join(FORMATS)}.",
            param="format",
        )
    check_storage_quota(
        session=session, settings=settings, tenant=tenant, incoming=path.stat().st_size
    )
    workdir = Path(tempfile.mkdtemp(prefix="modelpress-ds-"))
    dataset_id = new_id("ds")
    written: list[str] = []
    try:
        parsed = parse_dataset(path, fmt, workdir / "splits", options)
        size, sha = file_digest(path)
        source_key = f"datasets/{dataset_id}/source.{fmt}"
        storage.put_file(source_key, path)
        written.append(source_key)
        for split, split_path in parsed.splits.items():
            key = split_key(dataset_id, split)
            storage.put_file(key, split_path)
            written.append(key)
        row = Dataset(
            id=dataset_id,
            tenant=tenant,
            name=name,
            filename=filename,
            format=fmt,
            status="ready",
            task_hint=parsed.task,
            num_rows=sum(parsed.counts.values()),
            splits=parsed.counts,
            label_names=parsed.label_names,
            label_counts=parsed.label_counts,
            warnings=label_warnings(parsed.label_counts),
            split_generated=parsed.split_generated,
            storage_key=source_key,
            size_bytes=size,
            sha256=sha,
        )
        session.add(row)
        session.commit()
        return row, parsed
    except BaseException:
        session.rollback()
        for key in written:  # nothing half-written survives a failure
            storage.delete(key)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def get_dataset(*, session: Session, tenant: str, dataset_id: str) -> Dataset:
    return get_owned(session, Dataset, dataset_id, tenant=tenant, kind="dataset")


def list_datasets(
    *, session: Session, tenant: str, limit: int, after: str | None
) -> tuple[list[Dataset], bool]:
    query = select(Dataset).where(Dataset.tenant == tenant)
    return keyset(session, query, Dataset.id, limit=limit, after=after)


def delete_dataset(*, session: Session, storage: Storage, tenant: str, dataset_id: str) -> None:
    """Delete a dataset unless a queued or running job needs it. Finished jobs keep their
    request, metrics and artifacts; their dataset reference becomes null. The teachers
    fine-tuned on it and cached go with it."""
    row = get_dataset(session=session, tenant=tenant, dataset_id=dataset_id)
    # Locked first, as for models (app/models/service.py delete_model).
    session.execute(select(Dataset.id).where(Dataset.id == dataset_id).with_for_update())
    in_use = session.execute(
        select(Job.id, Job.status)
        .where(Job.dataset_id == dataset_id, Job.status.in_(ACTIVE))
        .order_by(Job.id)
        .limit(1)
    ).one_or_none()
    if in_use:
        session.rollback()
        raise ProblemError(
            409,
            "dataset_in_use",
            f"Dataset {dataset_id} is used by job {in_use.id}, which is {in_use.status}; "
            f"wait for it to finish or cancel it (POST /v1/jobs/{in_use.id}/cancel), then "
            "delete the dataset.",
        )
    cached = remove_entries_of(session=session, dataset_id=dataset_id)
    session.delete(row)
    session.commit()
    storage.delete_prefix(f"datasets/{dataset_id}/")
    for key in cached:
        storage.delete(key)
