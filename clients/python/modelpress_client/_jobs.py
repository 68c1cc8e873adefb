"""Jobs, their events (a page, or a live stream) and their artifacts."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from modelpress_client._base import Base
from modelpress_client._http import RetryInfo
from modelpress_client._uploads import ProgressCallback
from modelpress_client.errors import (
    ChecksumMismatch,
    ConnectionFailed,
    NotFound,
    ServiceUnavailable,
    WaitTimeout,
)
from modelpress_client.sse import iter_sse
from modelpress_client.types import Artifact, Event, Job, JobStatus, Page, Progress

# Between messages the server sends a keep-alive every 15 s; a longer silence is a
# connection gone dead, and the stream reconnects.
STREAM_READ_TIMEOUT_S = 45.0
DEFAULT_RECONNECT_S = 2.0
DOWNLOAD_CHUNK = 1024 * 1024


class JobsMixin(Base):
    # ------------------------------------------------------------------ jobs

    def create_job(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> Job:
        """Queue a job (the body of POST /v1/jobs). An ``Idempotency-Key`` is always sent
        (a new uuid4 unless given) and the same key is reused by this call's retries, so
        a retry after a lost answer returns the job the first try created."""
        key = idempotency_key or str(uuid.uuid4())
        data = self._t.json(
            "POST", "/v1/jobs", json=dict(body), headers={"Idempotency-Key": key}, idempotent=True
        )
        return Job.from_dict(data)

    def get_job(self, job_id: str) -> Job:
        return Job.from_dict(self._t.json("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 20,
        after: str | None = None,
        parent_id: str | None = None,
    ) -> Page[Job]:
        """One page, newest first: the jobs submitted, or a sweep's candidates."""
        params = {"status": status, "limit": limit, "after": after, "parent_id": parent_id}
        return self._page("/v1/jobs", Job.from_dict, params)

    def iter_jobs(
        self,
        *,
        status: JobStatus | None = None,
        page_size: int = 100,
        parent_id: str | None = None,
    ) -> Iterator[Job]:
        """Every job (or a sweep's candidates), newest first, a page at a time."""
        params = {"status": status, "limit": page_size, "parent_id": parent_id}
        return self._iterate("/v1/jobs", Job.from_dict, params)

    def cancel_job(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one becomes ``cancelling``."""
        # Cancelling twice is the same as once: safe to retry.
        return Job.from_dict(self._t.json("POST", f"/v1/jobs/{job_id}/cancel", idempotent=True))

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job with its events and artifacts (409 ``job_active`` while
        it is queued or running)."""
        self._t.send("DELETE", f"/v1/jobs/{job_id}")

    # ---------------------------------------------------------------- events

    def list_events(
        self, job_id: str, *, after: int | None = None, limit: int = 100
    ) -> Page[Event]:
        """One page of the job's events, oldest first."""
        return self._page(
            f"/v1/jobs/{job_id}/events", Event.from_dict, {"after": after, "limit": limit}
        )

    def iter_events(self, job_id: str, *, after: int | None = None) -> Iterator[Event]:
        """Every event there is now, oldest first (see ``stream_events`` to follow)."""
        params = {"after": after, "limit": 1000}
        return self._iterate(f"/v1/jobs/{job_id}/events", Event.from_dict, params)

    def stream_events(
        self,
        job_id: str,
        *,
        after: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """The job's events live (server-sent events), until the job has ended.

        A dropped connection is resumed with ``Last-Event-ID``, so no event is lost or
        repeated; after ``max_retries`` reconnections in a row that bring nothing,
        ``ConnectionFailed``. Past ``timeout`` seconds, ``WaitTimeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_id = after
        reconnect_s = DEFAULT_RECONNECT_S
        failures = 0
        path = f"/v1/jobs/{job_id}/events"
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            read_s = STREAM_READ_TIMEOUT_S
            if deadline is not None:
                read_s = max(min(read_s, deadline - time.monotonic()), 0.1)
            try:
                with self._t.stream(
                    "GET",
                    path,
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=read_s),
                ) as response:
                    if not response.headers.get("content-type", "").startswith("text/event-stream"):
                        raise ConnectionFailed(
                            "the server answered the event stream with "
                            f"{response.headers.get('content-type')!r}",
                            code="stream_unsupported",
                        )
                    for message in iter_sse(response.iter_lines()):
                        if message.retry is not None:
                            reconnect_s = message.retry / 1000
                        if message.event == "end":
                            return
                        if message.id is not None and message.data:
                            event = Event.from_dict(json.loads(message.data))
                            last_id, failures = event.id, 0
                            yield event
                        _check(deadline, job_id)
            except httpx.TransportError as e:
                reason = f"{type(e).__name__}: {e}"
            else:
                reason = "the stream closed before its end"  # resumed as after a drop
            _check(deadline, job_id)
            failures += 1
            if failures > self._t.max_retries:
                raise ConnectionFailed(
                    f"the event stream of {job_id} broke {failures} times in a row ({reason})",
                    code="connection_failed",
                )
            wait = min(reconnect_s, self._t.max_retry_wait)
            self._t.pause(RetryInfo("GET", self._t.url(path), failures, wait, None, reason))

    def wait(
        self,
        job_id: str,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 2.0,
        stream: bool = True,
    ) -> Job:
        """Block until the job has ended and return it (whatever its status: check
        ``job.status`` and ``job.error``). ``on_progress`` is called whenever its status,
        phase or progress changes, from the event stream, or from polling when the
        stream cannot be had (``stream=False`` polls from the start)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # The events so far first, then the job: the stream starts after them and the
        # job's state already holds them, so nothing old is replayed over it.
        seen = None
        if stream:
            for seen_event in self.iter_events(job_id):
                seen = seen_event.id
        job = self.get_job(job_id)
        last = Progress(job.id, job.status, job.phase, job.progress)
        if on_progress is not None:
            on_progress(last)
        if job.done:
            return job
        if stream:
            try:
                remaining = None if deadline is None else deadline - time.monotonic()
                for event in self.stream_events(job_id, after=seen, timeout=remaining):
                    now = _advance(last, event)
                    if _key(now) != _key(last) and on_progress is not None:
                        on_progress(now)
                    last = now
                return self.get_job(job_id)
            except (ConnectionFailed, ServiceUnavailable):
                pass  # fall back to polling below
            except WaitTimeout as e:
                e.job = self.get_job(job_id)
                raise
        while True:
            job = self.get_job(job_id)
            now = Progress(job.id, job.status, job.phase, job.progress)
            if _key(now) != _key(last):
                if on_progress is not None:
                    on_progress(now)
                last = now
            if job.done:
                return job
            if deadline is not None and time.monotonic() + poll_interval > deadline:
                raise WaitTimeout(f"job {job_id} is still {job.status} after {timeout} s", job=job)
            time.sleep(poll_interval)

    # ------------------------------------------------------------- artifacts

    def list_artifacts(self, job_id: str) -> list[Artifact]:
        body = self._t.json("GET", f"/v1/jobs/{job_id}/artifacts")
        return [Artifact.from_dict(a) for a in body["data"]]

    def download_artifact(
        self,
        job_id: str,
        name: str,
        path: str | Path | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Stream an artifact to ``path`` (a file, or a folder to put it in under its own
        filename; default the current folder) and check its sha256 and size against the
        artifact list. The file appears only once whole and checked."""
        listed = {a.name: a for a in self.list_artifacts(job_id)}
        if name not in listed:
            raise NotFound(
                f"job {job_id} has no artifact {name!r}; it has {sorted(listed)}",
                status=404,
                code="artifact_not_found",
                param="name",
            )
        art = listed[name]
        dest = Path(path) if path is not None else Path.cwd()
        if dest.is_dir():
            dest = dest / art.filename
        part = dest.with_name(dest.name + ".part")
        tries = 0
        while True:
            tries += 1
            try:
                digest, size = self._fetch_to(job_id, name, part, art.size_bytes, on_progress)
                break
            except httpx.TransportError as e:
                # A connection broken mid-body: the download starts again from zero.
                part.unlink(missing_ok=True)
                if tries > self._t.max_retries:
                    raise ConnectionFailed(
                        f"downloading {name} of {job_id} failed: {e}", code="connection_failed"
                    ) from e
                time.sleep(self._t.backoff(tries))
        if digest != art.sha256 or size != art.size_bytes:
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"artifact {name} of {job_id}: got {size} bytes with sha256 {digest}, the "
                f"list says {art.size_bytes} bytes with sha256 {art.sha256}",
                code="checksum_mismatch",
            )
        part.replace(dest)
        return dest

    def _fetch_to(
        self,
        job_id: str,
        name: str,
        part: Path,
        total: int,
        on_progress: ProgressCallback | None,
    ) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        with (
            self._t.stream("GET", f"/v1/jobs/{job_id}/artifacts/{name}") as response,
            open(part, "wb") as out,
        ):
            for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if on_progress is not None:
                    on_progress(size, total)
        return digest.hexdigest(), size


def _check(deadline: float | None, job_id: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitTimeout(f"job {job_id} had not ended when the time ran out")


def _key(p: Progress) -> tuple[str, str | None, float]:
    return p.status, p.phase, p.progress


def _advance(state: Progress, event: Event) -> Progress:
    """The job's state after one of its events."""
    status, phase, progress = state.status, state.phase, state.progress
    if event.type == "status":
        status = event.data.get("status", status)
    elif event.type == "phase":
        phase = event.data.get("phase", phase)
    elif event.type == "progress":
        progress = float(event.data.get("progress", progress))
    if status == "succeeded":
        progress = 1.0
    return Progress(state.job_id, status, phase, progress, event)
