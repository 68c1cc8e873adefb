from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from app.datasets import service
from app.datasets.columns import ColumnRequest
from app.datasets.parse import ParseOptions
from app.datasets.schemas import DatasetIngest, DatasetRead, TaskHint
from app.deps import CurrentTenant, SessionDep, SettingsDep, StorageDep
from app.errors import problem_responses
from app.pagination import AfterQuery, LimitQuery, Page
from app.uploads import received

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=problem_responses(401, 403))


_DESCRIPTION = """\
Upload a dataset file. It is checked whole before the dataset is `ready`; any problem
is a `422` whose `detail` names the line (or Parquet row) and the column, and nothing
is kept.

**Formats** (`format`):
- `jsonl`: one JSON object per line.
- `csv` (RFC 4180 quoting) and `tsv` (tab-separated, no quoting, as GLUE's SST-2
  files): a header line, then one row per line; text classification only.
- `parquet`: read a batch of rows at a time; list columns for token classification.
- `conll`: CoNLL column files (CoNLL-2003: `EU NNP I-NP I-ORG`), one token per line, a
  blank line between sentences, `-DOCSTART-` lines skipped; token classification. The
  tag is the last column unless `tag_index` says otherwise.

**Tasks** (`task_hint`): `sequence-classification` (a text column and a label column:
integers, or strings named in sorted order) or `token-classification` (a tokens list
and a tags list per sentence: IOB tag names, or ids with `label_names`). The task is
`task` when given, else follows from the column fields given, else from the columns
found (a `tokens`/`words` column means token classification).

**Columns**, when not named: text `text`, `sentence`, `content`; label `label`,
`labels`, `target`; tokens `tokens`, `words`; tags `tags`, `ner_tags`, `labels`
(case-insensitive). A 422 lists the columns found when none matches.

**Tags** are IOB2 (`O`, `B-PER`, `I-PER`); IOB1 files (CoNLL-2003) are converted: an
`I-X` that starts an entity becomes `B-X` (`ingest.iob1_converted` counts them).

**Splits**: a `split` column (train/validation/...) is kept; rows without one go to
the `split` form field (default `train`). When every row is `train`, 10% are held out
as `validation` with a fixed seed. Duplicate rows are kept and counted
(`ingest.duplicate_rows`).

**By URI**: instead of `file`, `uri` = `s3://<bucket>/<key>` of the file already in
this service's S3 store (outside its own `models/`, `datasets/` and `jobs/` folders) or in
a bucket the operator lists (`MODELPRESS_INPUT_BUCKETS`); it is copied in and checked
exactly as an upload.

Example: `curl -F file=@eng.train -F format=conll http://localhost:8000/v1/datasets`,
`curl -F uri=s3://ml-store/teams/nlp/sst2.jsonl http://localhost:8000/v1/datasets`.
"""


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRead,
    responses=problem_responses(400, 413, 422),
    summary="Upload a dataset",
    description=_DESCRIPTION,
)
def upload_dataset(
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    response: Response,
    file: Annotated[UploadFile | None, File(description="The data file.")] = None,
    uri: Annotated[
        str | None,
        Form(
            max_length=2048,
            description="Instead of `file`: `s3://<bucket>/<key>` of the data file in this "
            "service's object store or a bucket in MODELPRESS_INPUT_BUCKETS.",
        ),
    ] = None,
    format: Annotated[
        str, Form(description="jsonl, csv, tsv, parquet or conll.", examples=["jsonl"])
    ] = "jsonl",
    name: Annotated[str | None, Form(max_length=200)] = None,
    task: Annotated[
        TaskHint | None,  # type: ignore[valid-type]
        Form(description="What the data is for; detected when not given."),
    ] = None,
    text_column: Annotated[
        str | None, Form(min_length=1, max_length=100, description="Classification: the text.")
    ] = None,
    label_column: Annotated[
        str | None,
        Form(min_length=1, max_length=100, description="Classification: the label."),
    ] = None,
    tokens_column: Annotated[
        str | None,
        Form(
            min_length=1,
            max_length=100,
            description="Token classification: the list of words of a sentence.",
        ),
    ] = None,
    tags_column: Annotated[
        str | None,
        Form(
            min_length=1,
            max_length=100,
            description="Token classification: the list of IOB tags (names or ids).",
        ),
    ] = None,
    tag_index: Annotated[
        int | None,
        Form(
            ge=1,
            le=100,
            description="CoNLL: the column of the tag, 0 being the token (default: the last).",
        ),
    ] = None,
    split: Annotated[
        str | None,
        Form(
            pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
            max_length=64,
            description="The split of rows that name none (default train; a whole CoNLL "
            "file is one split).",
        ),
    ] = None,
    label_names: Annotated[
        str | None,
        Form(
            description='Names of label ids 0..n-1: JSON array or "neg,pos"; for token '
            'classification the tag names, e.g. "O,B-PER,I-PER".'
        ),
    ] = None,
) -> DatasetRead:
    options = ParseOptions(
        columns=ColumnRequest(
            task=task,
            text=text_column,
            label=label_column,
            tokens=tokens_column,
            tags=tags_column,
        ),
        label_names=service.parse_label_names(label_names),
        tag_index=tag_index,
        split=split,
    )
    with received(
        file=file, uri=uri, kind="dataset", what="data file", storage=storage, settings=settings
    ) as (path, filename):
        row, parsed = service.create_dataset(
            session=session,
            storage=storage,
            settings=settings,
            tenant=tenant,
            path=path,
            filename=filename,
            fmt=format,
            name=name,
            options=options,
        )
    response.headers["Location"] = f"/v1/datasets/{row.id}"
    body = DatasetRead.model_validate(row, from_attributes=True)
    body.ingest = DatasetIngest(
        columns=parsed.columns,
        duplicate_rows=parsed.duplicate_rows,
        iob1_converted=parsed.iob1_converted,
    )
    return body


@router.get(
    "",
    response_model=Page[DatasetRead],
    responses=problem_responses(400, 422),
    summary="List datasets, newest first",
    description="A page of this tenant's datasets, newest first. Pass `next_cursor` as "
    "`after` for the next page while `has_more` is true.",
)
def list_datasets(
    session: SessionDep, tenant: CurrentTenant, limit: LimitQuery = 20, after: AfterQuery = None
) -> Page[DatasetRead]:
    rows, has_more = service.list_datasets(session=session, tenant=tenant, limit=limit, after=after)
    return Page[DatasetRead].of(
        rows, has_more, lambda r: DatasetRead.model_validate(r, from_attributes=True)
    )


@router.get(
    "/{dataset_id}",
    response_model=DatasetRead,
    responses=problem_responses(404),
    summary="Get a dataset",
    description="A dataset: its splits and rows, label names, the label counts of each "
    "split, and `warnings` about what would make a job on it go wrong (such as an eval "
    "split with labels its training split lacks).",
)
def get_dataset(session: SessionDep, tenant: CurrentTenant, dataset_id: str) -> DatasetRead:
    row = service.get_dataset(session=session, tenant=tenant, dataset_id=dataset_id)
    return DatasetRead.model_validate(row, from_attributes=True)


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404, 409),
    summary="Delete a dataset",
)
def delete_dataset(
    session: SessionDep, storage: StorageDep, tenant: CurrentTenant, dataset_id: str
) -> Response:
    service.delete_dataset(session=session, storage=storage, tenant=tenant, dataset_id=dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
