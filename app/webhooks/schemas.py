"""Request and response schemas for webhooks (separate from the tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

EventType = Literal["job.running", "job.succeeded", "job.failed", "job.cancelled", "job.progress"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
# job.progress fires on every percent of progress: only for those who ask for it.
DEFAULT_EVENTS = [e for e in EVENT_TYPES if e != "job.progress"]
DeliveryStatus = Literal["pending", "succeeded", "failed"]

EXAMPLE_WEBHOOK = {
    "url": "https://ml-platform.example.com/hooks/modelpress",
    "events": ["job.succeeded", "job.failed"],
    "description": "tell the model registry",
}


def _unique(events: list[str]) -> list[str]:
    if not events:
        raise ValueError("name at least one event type")
    return list(dict.fromkeys(events))


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_WEBHOOK]})

    url: str = Field(
        max_length=2048,
        description="Where deliveries are POSTed. Checked when created and again before "
        "every delivery against the address it resolves to (MODELPRESS_URL_ALLOWED_*).",
    )
    events: list[EventType] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        description="Event types to deliver; default every type but job.progress.",
    )
    description: str | None = Field(None, max_length=500)

    _events = field_validator("events")(_unique)


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": True}]})

    url: str | None = Field(None, max_length=2048)
    events: list[EventType] | None = None
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = Field(
        None, description="true re-enables a webhook disabled after failed deliveries."
    )

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _unique(v)


class WebhookRead(BaseModel):
    id: str
    object: Literal["webhook"] = "webhook"
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="Why deliveries stopped, when disabled.")
    consecutive_failures: int = Field(description="Failed attempts since the last success.")
    created_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="Signs every delivery (Modelpress-Signature); shown only here, once."
    )


class AttemptRead(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered.")
    latency_ms: float | None
    error: str | None


class DeliveryRead(BaseModel):
    id: str = Field(description="Also sent as Modelpress-Delivery-Id: de-duplicate on it.")
    object: Literal["webhook_delivery"] = "webhook_delivery"
    webhook_id: str
    event_type: str
    event_id: int = Field(description="The job event that caused it (GET …/events).")
    job_id: str
    status: DeliveryStatus
    attempts: list[AttemptRead]
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The body as sent.")
