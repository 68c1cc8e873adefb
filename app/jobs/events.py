"""Server-sent events for a job: its event rows as they are written, until it ends."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from sqlalchemy import select

from app.db import session_scope
from app.jobs.schemas import TERMINAL, EventRead
from app.jobs.tables import Job, JobEvent

POLL_S = 1.0
KEEPALIVE_S = 15.0
BATCH = 500


def stream(*, job_id: str, after: int, poll_s: float = POLL_S) -> Iterator[str]:
    """Sync on purpose: Starlette runs it in a thread, and each poll is a short query
    in its own session, so a slow client holds no connection from the pool."""
    last_sent = time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        with session_scope() as session:
            # Status first: a job's last event commits with its final status, so a
            # terminal status seen here means its events are all visible to the next query.
            status = session.scalar(select(Job.status).where(Job.id == job_id))
            rows = list(
                session.scalars(
                    select(JobEvent)
                    .where(JobEvent.job_id == job_id, JobEvent.id > after)
                    .order_by(JobEvent.id)
                    .limit(BATCH)
                )
            )
        for row in rows:
            after = row.id
            body = EventRead.model_validate(row, from_attributes=True).model_dump(mode="json")
            yield f"id: {row.id}\nevent: {row.type}\ndata: {json.dumps(body)}\n\n"
            last_sent = time.monotonic()
        if len(rows) == BATCH:
            continue
        if status is None or status in TERMINAL:
            yield "event: end\ndata: {}\n\n"
            return
        if time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        time.sleep(poll_s)
