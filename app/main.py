"""The FastAPI application."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app import broker, db, errors
from app.datasets.router import router as datasets_router
from app.guard import GuardMiddleware
from app.health.router import router as health_router
from app.jobs.router import router as jobs_router
from app.metrics.http import HttpMetricsMiddleware
from app.metrics.router import router as metrics_router
from app.models.router import router as models_router
from app.settings import get_settings
from app.webhooks.router import router as webhooks_router

# How long start-up waits for the database's first connection before it goes on without.
WARM_UP_SECONDS = 5.0

DESCRIPTION = """
modelpress compresses transformer models: send a teacher model, a dataset and a target
(how much smaller), get back a distilled, pruned student with an honest report.

Every `/v1` route needs `Authorization: Bearer <api key>` (`modelpress keys create`);
keys with scope `read` may only read.

Errors are RFC 9457 `application/problem+json` with a stable `code` and, where a field
is at fault, `param`.
"""


def operation_id(route: APIRoute) -> str:
    """The operationId, which generated clients name their methods after: the route
    function's name in camelCase (create_job -> createJob). FastAPI's default
    (create_job_v1_jobs_post) repeats the path and method; a route whose function name is
    no good name for the method sets operation_id= itself."""
    head, *rest = route.name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # The database driver loads on the first connection, the broker's client on the
    # first job: both here, not in a request.
    broker.warm_up()
    with anyio.move_on_after(WARM_UP_SECONDS):
        if not await anyio.to_thread.run_sync(db.warm_up, abandon_on_cancel=True):
            logging.getLogger("modelpress").warning(
                "the database does not answer yet; requests get 503 until it does"
            )
    # Everything loaded by now (modules, routes, settings, the driver) lives as long as
    # the process: out of the collector's reach, so that a full collection scans what
    # requests keep and not the 110,000-130,000 objects of the imports, a pause of
    # 25-60 ms that every request then in flight waits out (bench/README.md, api_load).
    gc.freeze()
    try:
        yield
    finally:
        # Back in the collector's reach: a process that serves an app more than once
        # (the tests) frees what the earlier ones left.
        gc.unfreeze()


def create_app() -> FastAPI:
    settings = get_settings()  # validated here: a bad setting stops start-up
    logging.basicConfig(level=settings.log_level)
    app = FastAPI(
        title="modelpress",
        version="0.1.0",
        description=DESCRIPTION,
        generate_unique_id_function=operation_id,
        lifespan=_lifespan,
        openapi_tags=[
            {"name": "models", "description": "Teacher models (save_pretrained archives)."},
            {"name": "datasets", "description": "Training and evaluation data."},
            {"name": "jobs", "description": "Compression jobs, their events and artifacts."},
            {
                "name": "webhooks",
                "description": "Signed HTTP callbacks when a job starts, ends or progresses.",
            },
            {"name": "health", "description": "Liveness and readiness."},
        ],
    )
    errors.install(app)
    app.add_middleware(GuardMiddleware)
    # Added last, so outermost: it also counts what the guard refuses.
    app.add_middleware(HttpMetricsMiddleware)
    app.include_router(models_router)
    app.include_router(datasets_router)
    app.include_router(jobs_router)
    app.include_router(webhooks_router)
    app.include_router(health_router)
    app.include_router(metrics_router)
    _problem_json_for_validation_errors(app)
    return app


def _problem_json_for_validation_errors(app: FastAPI) -> None:
    """FastAPI documents its own 422 body on every route with parameters; ours is
    problem+json (errors.py), so the document says so."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
            for operations in schema["paths"].values():
                for operation in operations.values():
                    response = operation.get("responses", {}).get("422")
                    if response is not None:
                        response["content"] = {errors.PROBLEM_JSON: problem}
            for name in ("HTTPValidationError", "ValidationError"):
                schema["components"]["schemas"].pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
