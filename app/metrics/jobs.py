"""Job gauges read from PostgreSQL at scrape time: the database is the truth about jobs,
and every API process then reports the same numbers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app.db import get_sessionmaker, utcnow
from app.jobs.schemas import JobStatus
from app.jobs.tables import Job

STATUSES = JobStatus.__args__


class JobCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "modelpress_database_up", "1 if the job gauges could be read from the database."
        )
        try:
            with get_sessionmaker()() as session:
                by_status = session.execute(
                    select(Job.status, Job.queue, func.count()).group_by(Job.status, Job.queue)
                ).all()
                oldest: datetime | None = session.scalar(
                    select(func.min(Job.updated_at)).where(Job.status == "queued")
                )
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(
            "modelpress_jobs", "Jobs by status and queue.", labels=["status", "queue"]
        )
        counts = {(status, queue): n for status, queue, n in by_status}
        queues = sorted({q for _, q in counts} | {"cpu", "gpu"})
        for status in STATUSES:
            for queue in queues:
                jobs.add_metric([status, queue], counts.get((status, queue), 0))
        yield jobs
        waiting = GaugeMetricFamily(
            "modelpress_oldest_queued_job_age_seconds",
            "How long the longest-waiting queued job has waited (0 if none): a queue "
            "no worker drains shows here first.",
        )
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=utcnow().tzinfo)
        waiting.add_metric([], (utcnow() - oldest).total_seconds() if oldest else 0.0)
        yield waiting
