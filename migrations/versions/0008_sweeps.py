"""sweeps: a sweep job (target.min_retention or target.max_latency_ms) and its children

A child is an ordinary job (leases, fencing, checkpoints, artifacts) whose parent_id
names the sweep; the sweep's plan (its axis and the parallel width) and each child's
place in it (index, speed-up tried) are in ``sweep``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 00:20:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode rebuilds the table on SQLite (migrations/env.py), for the foreign key.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column(
                "sweep",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            ))
        batch_op.create_foreign_key(
            "fk_jobs_parent_id_jobs", "jobs", ["parent_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_index(batch_op.f("ix_jobs_parent_id"), ["parent_id"], unique=False)


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM jobs WHERE parent_id IS NOT NULL"))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_parent_id"))
        batch_op.drop_constraint("fk_jobs_parent_id_jobs", type_="foreignkey")
        batch_op.drop_column("sweep")
        batch_op.drop_column("parent_id")
