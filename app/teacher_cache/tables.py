from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class TeacherCacheEntry(Base):
    """One fine-tuned teacher of a tenant, under the key of what its weights depend on
    (workers/engine/teacher_key.py): one object in the store, written before the row."""

    __tablename__ = "teacher_cache"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    storage_key: Mapped[str] = mapped_column(String(512))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # The model and dataset it was fine-tuned from: deleting either deletes the entry
    # (the service deletes the object too; the cascade only keeps rows from dangling).
    teacher_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    # The job that fine-tuned it (no foreign key: deleting that job keeps the teacher).
    job_id: Mapped[str] = mapped_column(String(40))
    # What fine-tuning took: what each later job that uses it saves.
    finetune_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
