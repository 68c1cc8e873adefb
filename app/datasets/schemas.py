from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from app.jobspec import vocabulary

# What an upload's data is for: a task of the vocabulary.
TaskHint = Literal[vocabulary.TASKS]  # type: ignore[valid-type]


class DatasetIngest(BaseModel):
    """What the upload found and changed; in the upload's response only (not stored)."""

    columns: dict[str, str] = Field(
        description="The file's column for each role: text and label, or tokens and tags."
    )
    duplicate_rows: int = Field(
        description="Rows identical to an earlier row (text and label, or tokens and "
        "tags); kept, since they may be meant, but counted."
    )
    iob1_converted: int = Field(
        description="Tags rewritten from IOB1 to IOB2: an I-X that starts an entity became "
        "B-X (0 when the tags were IOB2 already, and for classification)."
    )


class DatasetWarning(BaseModel):
    """Something the upload found that may make a job on this dataset go wrong."""

    code: str = Field(description="labels_missing_from_train: see message.")
    split: str | None = Field(description="The split it is about.")
    labels: list[str] = Field(default_factory=list, description="The labels it is about.")
    message: str


class DatasetRead(BaseModel):
    id: str
    object: Literal["dataset"] = "dataset"
    name: str | None
    filename: str
    format: str
    status: Literal["ready"]
    task_hint: TaskHint | None = Field(  # type: ignore[valid-type]
        description="What the data is for: text and label rows (sequence-classification) "
        "or sentences of tokens with one IOB2 tag each (token-classification)."
    )
    num_rows: int
    splits: dict[str, int] = Field(description="Rows per split.")
    split_generated: bool = Field(
        description="True when the held-out split was drawn by modelpress (seed 0, 10%)."
    )
    label_names: list[str] = Field(
        description="Names of the label ids (classification) or of the tag ids, IOB2 tags "
        "such as O, B-PER, I-PER (token classification)."
    )
    label_counts: dict[str, dict[str, int]] | None = Field(
        None,
        description="Per split, rows per label (tags per tag for token classification), "
        "0 for a label the split lacks. Null for datasets uploaded before this was counted.",
    )
    warnings: list[DatasetWarning] = Field(
        default_factory=list,
        description="What may make a job on it go wrong, e.g. `labels_missing_from_train`: "
        "an eval split with labels the train split lacks (a job evaluating on that split "
        "is refused unless it sets `dataset.allow_unseen_labels`).",
    )
    size_bytes: int
    sha256: str
    created_at: datetime
    ingest: DatasetIngest | None = Field(
        None,
        description="Only in the response to the upload: the columns used, duplicates "
        "counted, IOB1 tags converted. Null when the dataset is read later.",
    )

    @field_validator("warnings", mode="before")
    @classmethod
    def _none_is_none_found(cls, value: object) -> object:
        return [] if value is None else value

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "ds_01jd8x6m5v2n3k4p5q6r7s8t9v",
                    "object": "dataset",
                    "name": "sst2-sample",
                    "filename": "sst2.jsonl",
                    "format": "jsonl",
                    "status": "ready",
                    "task_hint": "sequence-classification",
                    "num_rows": 600,
                    "splits": {"train": 540, "validation": 60},
                    "split_generated": True,
                    "label_names": ["negative", "positive"],
                    "label_counts": {
                        "train": {"negative": 268, "positive": 272},
                        "validation": {"negative": 31, "positive": 29},
                    },
                    "warnings": [],
                    "size_bytes": 61234,
                    "sha256": "3b1f…",
                    "created_at": "2026-11-27T21:00:00Z",
                    "ingest": {
                        "columns": {"text": "sentence", "label": "label"},
                        "duplicate_rows": 2,
                        "iob1_converted": 0,
                    },
                }
            ]
        }
    }
