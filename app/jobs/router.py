from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from app.deps import CurrentTenant, SessionDep, SettingsDep, StorageDep
from app.errors import ProblemError, problem_responses
from app.jobs import events, service
from app.jobs.schemas import (
    EXAMPLE_JOB,
    EXAMPLE_ONNX_JOB,
    EXAMPLE_SPEEDUP_JOB,
    ArtifactList,
    ArtifactRead,
    EventList,
    EventRead,
    JobCreate,
    JobCreated,
    JobRead,
    JobStatus,
)
from app.jobs.tables import Artifact, Job
from app.pagination import AfterQuery, LimitQuery, Page

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(401, 403))


def to_read(job: Job) -> JobRead:
    return JobRead.of(job)


def _artifact_read(art: Artifact, request: Request, settings_url: str) -> ArtifactRead:
    base = settings_url.rstrip("/") if settings_url else str(request.base_url).rstrip("/")
    return ArtifactRead(
        name=art.name,
        kind=art.kind,
        filename=art.filename,
        content_type=art.content_type,
        size_bytes=art.size_bytes,
        sha256=art.sha256,
        download_url=f"{base}/v1/jobs/{art.job_id}/artifacts/{art.name}",
        created_at=art.created_at,
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobCreated,
    responses=problem_responses(400, 409, 413, 415, 422),
    summary="Create a compression job",
    description="Queues a job and answers 202 with its `Location`. With an `Idempotency-Key`, "
    "the same key and body return the same job; another body with that key is a 409. "
    "`warnings` names what the request allows but may not mean (a speed target the "
    "allowed structures can only overshoot, with the steps they reach).",
)
def create_job(
    session: SessionDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    response: Response,
    body: Annotated[
        JobCreate,
        Body(
            openapi_examples={
                "half": {"value": EXAMPLE_JOB},
                "twice_as_fast": {"value": EXAMPLE_SPEEDUP_JOB},
                "int8_onnx": {"value": EXAMPLE_ONNX_JOB},
            }
        ),
    ],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=255, min_length=1)
    ] = None,
) -> JobCreated:
    job, _created = service.create_job(
        session=session,
        settings=settings,
        tenant=tenant,
        body=body,
        idempotency_key=idempotency_key,
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    warnings = service.creation_warnings(session=session, job_id=job.id)
    return JobCreated(**dict(to_read(job)), warnings=warnings)


@router.get(
    "",
    response_model=Page[JobRead],
    responses=problem_responses(400, 422),
    summary="List jobs, newest first",
    description="A page of this tenant's jobs, newest first, optionally only those in one "
    "`status`. Pass `next_cursor` as `after` for the next page while `has_more` is true. "
    "A sweep's candidates (its children) are listed with `parent_id` set to the sweep's "
    "id, and not without it.",
)
def list_jobs(
    session: SessionDep,
    tenant: CurrentTenant,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status.")] = None,
    limit: LimitQuery = 20,
    after: AfterQuery = None,
    parent_id: Annotated[
        str | None, Query(description="The candidates (child jobs) of this sweep.")
    ] = None,
) -> Page[JobRead]:
    rows, has_more = service.list_jobs(
        session=session,
        tenant=tenant,
        status=status,
        limit=limit,
        after=after,
        parent_id=parent_id,
    )
    return Page[JobRead].of(rows, has_more, to_read)


@router.get(
    "/{job_id}",
    response_model=JobRead,
    responses=problem_responses(404),
    summary="Get a job",
    description="The job as it is now: `status`, `phase` and `progress` while it runs; "
    "`metrics` (the report: teacher and student scores, size, latency, retention and "
    "speed-ups) once it has succeeded, `error` once it has failed. Poll it, or follow "
    "`GET /v1/jobs/{job_id}/events` with `Accept: text/event-stream`.",
)
def get_job(session: SessionDep, tenant: CurrentTenant, job_id: str) -> Response:
    job = to_read(service.get_job(session=session, tenant=tenant, job_id=job_id))
    # The connection goes back to the pool from this worker thread: the dependency then
    # has nothing left to close, and the request one trip to a worker thread fewer.
    session.close()
    # The JSON made here, in the route's worker thread: returned as a model, FastAPI
    # would validate it again in a second trip to a worker thread. This is the route
    # clients poll; the bytes are those FastAPI would send (response_model documents
    # them).
    return Response(job.model_dump_json(by_alias=True), media_type="application/json")


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobCreated,
    responses=problem_responses(404, 409),
    summary="Cancel a job",
    description="A queued job is cancelled at once; a running one becomes `cancelling` and "
    "stops at its next training step.",
)
def cancel_job(
    session: SessionDep, storage: StorageDep, tenant: CurrentTenant, job_id: str
) -> JobRead:
    return to_read(
        service.cancel_job(session=session, tenant=tenant, job_id=job_id, storage=storage)
    )


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 409),
    summary="Delete a job",
    description="Deletes a finished job (succeeded, failed or cancelled): the job, its "
    "events and its artifacts, stored bytes included. A queued or running job is a 409 "
    "`job_active`: cancel it first.",
)
def delete_job(
    session: SessionDep, storage: StorageDep, tenant: CurrentTenant, job_id: str
) -> Response:
    service.delete_job(session=session, storage=storage, tenant=tenant, job_id=job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{job_id}/events",
    response_model=EventList,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "JSON page, or with `Accept: text/event-stream` a live stream: "
            "one `id:`/`event:`/`data:` message per event, ending when the job has ended.",
        },
        **problem_responses(404, 422),
    },
    summary="List or stream a job's events",
    description="Every status, phase and progress change of the job, its checkpoints and "
    "the engine's log lines, oldest first; `order=desc` for the newest first (the last "
    "few: `?order=desc&limit=5`). Pass `next_cursor` as `after` for the next page, in "
    "the same order. With `Accept: text/event-stream`, a live stream from `after` (or "
    "`Last-Event-ID`) on, oldest first, until the job ends.",
    operation_id="listJobEvents",
)
def list_events(
    request: Request,
    session: SessionDep,
    tenant: CurrentTenant,
    job_id: str,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            description="Cursor: `next_cursor` of the previous page (an event id); the page "
            "goes on from there in the listing order.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size (1-1000).")] = 100,
    order: Annotated[
        Literal["asc", "desc"],
        Query(description="`asc`: oldest first; `desc`: newest first. JSON pages only."),
    ] = "asc",
) -> Response:
    if "text/event-stream" in request.headers.get("accept", ""):
        service.get_job(session=session, tenant=tenant, job_id=job_id)  # 404 before streaming
        last = request.headers.get("last-event-id", "")
        start = int(last) if last.isdigit() else (after or 0)
        return StreamingResponse(
            events.stream(job_id=job_id, after=start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
    rows, has_more = service.list_events(
        session=session,
        tenant=tenant,
        job_id=job_id,
        after=after,
        limit=limit,
        newest_first=order == "desc",
    )
    return JSONResponse(
        EventList(
            data=[EventRead.model_validate(e, from_attributes=True) for e in rows],
            has_more=has_more,
            next_cursor=str(rows[-1].id) if has_more else None,
        ).model_dump(mode="json")
    )


@router.get(
    "/{job_id}/artifacts",
    response_model=ArtifactList,
    responses=problem_responses(404),
    summary="List a job's artifacts",
    description="What a succeeded job published: the student (`model`, a .tar.gz that "
    "unpacks into a folder `transformers` loads, with its model card and plots), "
    "`report` (JSON), `model-card` (Markdown) and the plots, each with its size, "
    "SHA-256 and `download_url`. Empty until the job has succeeded.",
    operation_id="listJobArtifacts",
)
def list_artifacts(
    session: SessionDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    job_id: str,
    request: Request,
) -> ArtifactList:
    rows = service.list_artifacts(session=session, tenant=tenant, job_id=job_id)
    return ArtifactList(data=[_artifact_read(a, request, settings.public_url) for a in rows])


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The bytes."},
        307: {"description": "With redirect=true: a short-lived pre-signed URL."},
        **problem_responses(404, 410),
    },
    summary="Download an artifact",
    description="The artifact's bytes, with `Content-Length`, `ETag` and "
    "`X-Checksum-SHA256` to check them; with `redirect=true` a 307 to a short-lived "
    "pre-signed URL of the object store instead. 410 once the artifacts expired.",
)
def download_artifact(
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    job_id: str,
    name: str,
    redirect: Annotated[
        bool,
        Query(
            description="Answer 307 to a pre-signed URL of the object store, valid for "
            "MODELPRESS_PRESIGN_SECONDS, when the store can sign one; else stream."
        ),
    ] = False,
) -> Response:
    art = service.get_artifact(session=session, tenant=tenant, job_id=job_id, name=name)
    if redirect:
        url = storage.presign(
            art.storage_key, expires_s=settings.presign_seconds, filename=art.filename
        )
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    if storage.size(art.storage_key) is None:
        # Checked before streaming starts: a failure mid-stream cannot become a problem+json.
        raise ProblemError(
            410, "artifact_gone", f"The stored bytes of artifact {name!r} are no longer there."
        )
    return StreamingResponse(
        storage.iter_bytes(art.storage_key),
        media_type=art.content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{art.filename}"',
            "Content-Length": str(art.size_bytes),
            "ETag": f'"{art.sha256}"',
            "X-Checksum-SHA256": art.sha256,
        },
    )
