from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


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
    num_labels: int | None
    size_bytes: int
    sha256: str
    created_at: datetime

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
                    "size_bytes": 83886080,
                    "sha256": "9f2c…",
                    "created_at": "2026-11-27T21:00:00Z",
                }
            ]
        }
    }
