"""The API's resources as dataclasses.

Built with ``from_dict``, which keeps only the fields named here, so a newer server that
adds fields does not break an older client; ``raw`` keeps the whole answer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

JobStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
TERMINAL: tuple[str, ...] = ("succeeded", "failed", "cancelled")

T = TypeVar("T")


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)} - {"raw"}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class Model:
    id: str
    name: str | None
    filename: str
    archive_format: str
    architecture: str | None
    model_type: str | None
    num_parameters: int
    has_task_head: bool
    num_labels: int | None
    size_bytes: int
    sha256: str
    created_at: datetime | None
    head_task: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Model:
        kw = _known(cls, data)
        kw["created_at"] = _time(kw.get("created_at"))
        return cls(**kw, raw=data)


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str | None
    filename: str
    format: str
    status: str
    task_hint: str | None
    num_rows: int
    splits: dict[str, int]
    split_generated: bool
    label_names: list[str]
    size_bytes: int
    sha256: str
    created_at: datetime | None
    # Only in the upload's answer: columns used, duplicates, IOB1 tags converted.
    ingest: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dataset:
        kw = _known(cls, data)
        kw["created_at"] = _time(kw.get("created_at"))
        return cls(**kw, raw=data)


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    id: str
    name: str | None
    status: JobStatus
    phase: str | None
    progress: float
    attempt: int
    queue: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    # Open shapes: the request with defaults filled in, and the engine's report.
    request: dict[str, Any]
    metrics: dict[str, Any] | None
    error: JobError | None
    # A sweep's candidate: the sweep's id (its candidates: list_jobs(parent_id=...)).
    parent_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        kw = _known(cls, data)
        for key in ("created_at", "started_at", "finished_at"):
            kw[key] = _time(kw.get(key))
        err = kw.get("error")
        kw["error"] = JobError(code=err["code"], message=err.get("message", "")) if err else None
        return cls(**kw, raw=data)


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    attempt: int
    data: dict[str, Any]
    created_at: datetime | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        kw = _known(cls, data)
        kw["created_at"] = _time(kw.get("created_at"))
        return cls(**kw)


@dataclass(frozen=True)
class Artifact:
    name: str
    kind: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    download_url: str
    created_at: datetime | None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        kw = _known(cls, data)
        kw["created_at"] = _time(kw.get("created_at"))
        return cls(**kw)


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    consecutive_failures: int
    created_at: datetime | None
    # Only in the answer to create: the signing secret (whsec_…), shown once.
    secret: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Webhook:
        kw = _known(cls, data)
        kw["created_at"] = _time(kw.get("created_at"))
        return cls(**kw, raw=data)


@dataclass(frozen=True)
class DeliveryAttempt:
    attempt: int
    at: datetime | None
    status_code: int | None
    latency_ms: float | None
    error: str | None


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    webhook_id: str
    event_type: str
    event_id: int
    job_id: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: list[DeliveryAttempt]
    created_at: datetime | None
    delivered_at: datetime | None
    payload: dict[str, Any] | None = None  # the body as sent

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebhookDelivery:
        kw = _known(cls, data)
        kw["created_at"] = _time(kw.get("created_at"))
        kw["delivered_at"] = _time(kw.get("delivered_at"))
        kw["attempts"] = [
            DeliveryAttempt(**{**_known(DeliveryAttempt, a), "at": _time(a.get("at"))})
            for a in kw.get("attempts") or []
        ]
        return cls(**kw)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``after`` for the next one."""

    data: list[T]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True)
class Progress:
    """What ``Client.wait`` reports as a job moves: its status, phase and progress
    (0..1), and the event that changed them (None for the first report)."""

    job_id: str
    status: str
    phase: str | None
    progress: float
    event: Event | None = None
