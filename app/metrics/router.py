from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from app.metrics.http import REGISTRY as HTTP_REGISTRY
from app.metrics.jobs import JobCollector

router = APIRouter(tags=["health"])
_jobs = CollectorRegistry(auto_describe=False)
_jobs.register(JobCollector())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    operation_id="getMetrics",
    description="Jobs by status and queue (read from the database at scrape time), the "
    "age of the oldest queued job, and this API process's request counts and durations by "
    "route. Aggregates only, no tenant data: no API key needed, like /healthz.",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics() -> Response:
    body = generate_latest(_jobs) + generate_latest(HTTP_REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
