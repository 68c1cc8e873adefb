from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from app.deps import CurrentTenant, SessionDep, SettingsDep, StorageDep
from app.errors import problem_responses
from app.models import service
from app.models.schemas import ModelRead
from app.pagination import AfterQuery, LimitQuery, Page
from app.uploads import received

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problem_responses(401, 403))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelRead,
    responses=problem_responses(400, 413, 422),
    summary="Upload a teacher model",
    description="A `save_pretrained` folder packed as `.tar.gz` or `.zip`, with safetensors "
    "weights, `config.json` and the tokenizer, given either as `file` (an upload) or as "
    "`uri`: `s3://<bucket>/<key>` of such an archive already in this service's S3 store "
    "(the configured bucket, outside the service's own `models/`, `datasets/` and `jobs/` "
    "folders) or in a bucket the operator lists (`MODELPRESS_INPUT_BUCKETS`). An archive "
    "by `uri` is copied into the store and checked exactly as an upload; a service whose "
    "store is a local folder and that lists no bucket refuses `uri`. Examples: "
    "`curl -F file=@minilm.tar.gz -F name=minilm http://localhost:8000/v1/models`, "
    "`curl -F uri=s3://ml-store/teams/nlp/minilm.tar.gz http://localhost:8000/v1/models`.",
)
def upload_model(
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    response: Response,
    file: Annotated[UploadFile | None, File(description="The packed model folder.")] = None,
    uri: Annotated[
        str | None,
        Form(
            max_length=2048,
            description="Instead of `file`: `s3://<bucket>/<key>` of the packed folder in "
            "this service's object store or a bucket in MODELPRESS_INPUT_BUCKETS.",
        ),
    ] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> ModelRead:
    with received(
        file=file, uri=uri, kind="model", what="model", storage=storage, settings=settings
    ) as (path, filename):
        row = service.create_model(
            session=session,
            storage=storage,
            settings=settings,
            tenant=tenant,
            path=path,
            filename=filename,
            name=name,
        )
    response.headers["Location"] = f"/v1/models/{row.id}"
    return ModelRead.model_validate(row, from_attributes=True)


@router.get(
    "",
    response_model=Page[ModelRead],
    responses=problem_responses(400, 422),
    summary="List models, newest first",
    description="A page of this tenant's uploaded teachers, newest first. Pass "
    "`next_cursor` as `after` for the next page while `has_more` is true.",
)
def list_models(
    session: SessionDep, tenant: CurrentTenant, limit: LimitQuery = 20, after: AfterQuery = None
) -> Page[ModelRead]:
    rows, has_more = service.list_models(session=session, tenant=tenant, limit=limit, after=after)
    return Page[ModelRead].of(
        rows, has_more, lambda r: ModelRead.model_validate(r, from_attributes=True)
    )


@router.get(
    "/{model_id}",
    response_model=ModelRead,
    responses=problem_responses(404),
    summary="Get a model",
    description="An uploaded teacher: its architecture, parameter count, and whether it has "
    "a task head (`head_task`, `num_labels`), which decides whether a job trains a head "
    "first.",
)
def get_model(session: SessionDep, tenant: CurrentTenant, model_id: str) -> ModelRead:
    row = service.get_model(session=session, tenant=tenant, model_id=model_id)
    return ModelRead.model_validate(row, from_attributes=True)


@router.delete(
    "/{model_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 409),
    summary="Delete a model",
)
def delete_model(
    session: SessionDep, storage: StorageDep, tenant: CurrentTenant, model_id: str
) -> Response:
    service.delete_model(session=session, storage=storage, tenant=tenant, model_id=model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
