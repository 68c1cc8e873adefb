from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from app.deps import CurrentTenant, SessionDep, SettingsDep, StorageDep
from app.errors import problem_responses
from app.models import service
from app.models.schemas import ModelRead
from app.pagination import AfterQuery, LimitQuery, Page
from app.uploads import spooled_upload

router = APIRouter(prefix="/v1/models", tags=["models"], responses=problem_responses(401, 403))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelRead,
    responses=problem_responses(400, 413, 422),
    summary="Upload a teacher model",
    description="A `save_pretrained` folder packed as `.tar.gz` or `.zip`, with safetensors "
    "weights, `config.json` and the tokenizer. Example: "
    "`curl -F file=@minilm.tar.gz -F name=minilm http://localhost:8000/v1/models`.",
)
def upload_model(
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    response: Response,
    file: Annotated[UploadFile, File(description="The packed model folder.")],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> ModelRead:
    with spooled_upload(file, max_bytes=settings.max_upload_bytes) as path:
        row = service.create_model(
            session=session,
            storage=storage,
            settings=settings,
            tenant=tenant,
            path=path,
            filename=file.filename or "model",
            name=name,
        )
    response.headers["Location"] = f"/v1/models/{row.id}"
    return ModelRead.model_validate(row, from_attributes=True)


@router.get("", response_model=Page[ModelRead], responses=problem_responses(400, 422))
def list_models(
    session: SessionDep, tenant: CurrentTenant, limit: LimitQuery = 20, after: AfterQuery = None
) -> Page[ModelRead]:
    rows, has_more = service.list_models(session=session, tenant=tenant, limit=limit, after=after)
    return Page[ModelRead].of(
        rows, has_more, lambda r: ModelRead.model_validate(r, from_attributes=True)
    )


@router.get("/{model_id}", response_model=ModelRead, responses=problem_responses(404))
def get_model(session: SessionDep, tenant: CurrentTenant, model_id: str) -> ModelRead:
    row = service.get_model(session=session, tenant=tenant, model_id=model_id)
    return ModelRead.model_validate(row, from_attributes=True)


@router.delete(
    "/{model_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 409)
)
def delete_model(
    session: SessionDep, storage: StorageDep, tenant: CurrentTenant, model_id: str
) -> Response:
    service.delete_model(session=session, storage=storage, tenant=tenant, model_id=model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
