from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from app.datasets import service
from app.datasets.schemas import DatasetRead
from app.deps import CurrentTenant, SessionDep, SettingsDep, StorageDep
from app.errors import problem_responses
from app.pagination import AfterQuery, LimitQuery, Page
from app.uploads import spooled_upload

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=problem_responses(401, 403))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRead,
    responses=problem_responses(400, 413, 422),
    summary="Upload a dataset",
    description="JSONL with one object per line: a text column and a label column "
    "(integers or strings), and optionally `split` (train/validation/...). Without a held-out "
    "split, 10% of the rows are held out with a fixed seed. Example: "
    "`curl -F file=@sst2.jsonl -F format=jsonl http://localhost:8000/v1/datasets`.",
)
def upload_dataset(
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    response: Response,
    file: Annotated[UploadFile, File(description="The data file.")],
    format: Annotated[str, Form(description="jsonl (csv, tsv, parquet, conll: planned)")] = "jsonl",
    name: Annotated[str | None, Form(max_length=200)] = None,
    text_column: Annotated[str, Form(min_length=1, max_length=100)] = "text",
    label_column: Annotated[str, Form(min_length=1, max_length=100)] = "label",
    label_names: Annotated[
        str | None,
        Form(description='Names of label ids 0..n-1: JSON array or "neg,pos".'),
    ] = None,
) -> DatasetRead:
    names = service.parse_label_names(label_names)
    with spooled_upload(file, max_bytes=settings.max_upload_bytes) as path:
        row = service.create_dataset(
            session=session,
            storage=storage,
            settings=settings,
            tenant=tenant,
            path=path,
            filename=file.filename or "data",
            fmt=format,
            name=name,
            text_column=text_column,
            label_column=label_column,
            label_names=names,
        )
    response.headers["Location"] = f"/v1/datasets/{row.id}"
    return DatasetRead.model_validate(row, from_attributes=True)


@router.get("", response_model=Page[DatasetRead], responses=problem_responses(400, 422))
def list_datasets(
    session: SessionDep, tenant: CurrentTenant, limit: LimitQuery = 20, after: AfterQuery = None
) -> Page[DatasetRead]:
    rows, has_more = service.list_datasets(session=session, tenant=tenant, limit=limit, after=after)
    return Page[DatasetRead].of(
        rows, has_more, lambda r: DatasetRead.model_validate(r, from_attributes=True)
    )


@router.get("/{dataset_id}", response_model=DatasetRead, responses=problem_responses(404))
def get_dataset(session: SessionDep, tenant: CurrentTenant, dataset_id: str) -> DatasetRead:
    row = service.get_dataset(session=session, tenant=tenant, dataset_id=dataset_id)
    return DatasetRead.model_validate(row, from_attributes=True)


@router.delete(
    "/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 409)
)
def delete_dataset(
    session: SessionDep, storage: StorageDep, tenant: CurrentTenant, dataset_id: str
) -> Response:
    service.delete_dataset(session=session, storage=storage, tenant=tenant, dataset_id=dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
