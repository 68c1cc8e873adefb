from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow
from app.types import JSONType


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    task_hint: Mapped[str | None] = mapped_column(String(40))
    num_rows: Mapped[int] = mapped_column(Integer)
    # {"train": 900, "validation": 100}: rows per split, as stored.
    splits: Mapped[dict[str, int]] = mapped_column(JSONType)
    label_names: Mapped[list[str]] = mapped_column(JSONType)
    # {"train": {"negative": 270, "positive": 270}, ...}: rows (tags for token
    # classification) per label and split; null for datasets uploaded before revision 0006.
    label_counts: Mapped[dict[str, dict[str, int]] | None] = mapped_column(JSONType)
    # What the upload found that may make a job go wrong (app/datasets/labels.py).
    warnings: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # True when the held-out split was made by us rather than given in the file.
    split_generated: Mapped[bool] = mapped_column(default=False)
    storage_key: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
