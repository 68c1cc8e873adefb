from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from app.models.archive import head_task as _head_task


class ModelRead(BaseModel):
    id: str
    object: Literal["model"] = "model"
    name: str | None
    filename: str
    archive_format: str
    architecture: str | None = Field(description="config.json `architectures[0]`.")
    model_type: str | None
    num_parameters: int = Field(description="Counted from the safetensors headers.")
    has_task_head: bool = Field(description="Whether the weights include a task head.")
    num_labels: int | None = Field(description="Outputs of the task head (rows of its last layer).")
    size_bytes: int
    sha256: str
    created_at: datetime

    @computed_field(  # type: ignore[prop-decorator]
        description="What the task head was made for: `sequence-classification`, "
        "`token-classification`, `other`, or null without a head. A job whose task, or "
        "label count, differs from the head's trains a new head first "
        "(`training.teacher_epochs`)."
    )
    @property
    def head_task(self) -> str | None:
        return _head_task(self.architecture, has_task_head=self.has_task_head)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "id": "mdl_01jd8x6m5v2n3k4p5q6r7s8t9v",
                    "object": "model",
                    "name": "minilm",
                    "filename": "minilm.tar.gz",
                    "archive_format": "tar.gz",
                    "architecture": "BertModel",
                    "model_type": "bert",
                    "num_parameters": 22713216,
                    "has_task_head": False,
                    "num_labels": None,
                    "head_task": None,
                    "size_bytes": 83886080,
                    "sha256": "9f2c…",
                    "created_at": "2026-11-27T21:00:00Z",
                }
            ]
        }
    }
