from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class DatasetRead(BaseModel):
    id: str
    object: Literal["dataset"] = "dataset"
    name: str | None
    filename: str
    format: str
    status: Literal["ready"]
    task_hint: str | None
    num_rows: int
    splits: dict[str, int] = Field(description="Rows per split.")
    split_generated: bool = Field(
        description="True when the held-out split was drawn by modelpress (seed 0, 10%)."
    )
    label_names: list[str]
    size_bytes: int
    sha256: str
    created_at: datetime

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
                    "size_bytes": 61234,
                    "sha256": "3b1f…",
                    "created_at": "2026-11-27T21:00:00Z",
                }
            ]
        }
    }
