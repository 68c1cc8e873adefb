"""Imports every table so ``Base.metadata`` is complete (Alembic, tests)."""

from app.auth.tables import ApiKey
from app.datasets.tables import Dataset
from app.jobs.tables import Artifact, Job, JobEvent
from app.models.tables import Model
from app.teacher_cache.tables import TeacherCacheEntry
from app.webhooks.tables import Webhook, WebhookAttempt, WebhookDelivery

__all__ = [
    "ApiKey",
    "Artifact",
    "Dataset",
    "Job",
    "JobEvent",
    "Model",
    "TeacherCacheEntry",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
]
