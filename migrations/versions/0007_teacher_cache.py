"""teacher_cache: fine-tuned teachers kept for a tenant's later jobs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 12:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teacher_cache",
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=512), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("teacher_id", sa.String(length=40), nullable=False),
        sa.Column("dataset_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("finetune_s", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["teacher_id"],
            ["models.id"],
            name=op.f("fk_teacher_cache_teacher_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_teacher_cache_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant", "key", name=op.f("pk_teacher_cache")),
    )
    op.create_index(
        op.f("ix_teacher_cache_teacher_id"), "teacher_cache", ["teacher_id"], unique=False
    )
    op.create_index(
        op.f("ix_teacher_cache_dataset_id"), "teacher_cache", ["dataset_id"], unique=False
    )


def downgrade() -> None:
    # The objects the rows name stay in the store: a downgrade does not reach it.
    op.drop_index(op.f("ix_teacher_cache_dataset_id"), table_name="teacher_cache")
    op.drop_index(op.f("ix_teacher_cache_teacher_id"), table_name="teacher_cache")
    op.drop_table("teacher_cache")
