"""lifecycle: models and datasets deletable once their jobs have finished, artifact expiry

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 16:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite rebuilds the table for these (batch mode); migrations/env.py turns foreign
    # keys off meanwhile, or dropping the old table would cascade to events and artifacts.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("artifacts_expired_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.drop_constraint("fk_jobs_teacher_id_models", type_="foreignkey")
        batch_op.drop_constraint("fk_jobs_dataset_id_datasets", type_="foreignkey")
        batch_op.alter_column("teacher_id", existing_type=sa.String(length=40), nullable=True)
        batch_op.alter_column("dataset_id", existing_type=sa.String(length=40), nullable=True)
        batch_op.create_foreign_key(
            "fk_jobs_teacher_id_models", "models", ["teacher_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_foreign_key(
            "fk_jobs_dataset_id_datasets", "datasets", ["dataset_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index(batch_op.f("ix_jobs_finished_at"), ["finished_at"], unique=False)


def downgrade() -> None:
    orphaned = op.get_bind().scalar(
        sa.text("SELECT count(*) FROM jobs WHERE teacher_id IS NULL OR dataset_id IS NULL")
    )
    if orphaned:
        raise RuntimeError(
            f"{orphaned} jobs lost their teacher or dataset to a deletion, which revision "
            "0004 cannot hold (both NOT NULL); delete those jobs first "
            "(DELETE /v1/jobs/{id}) to downgrade."
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_finished_at"))
        batch_op.drop_constraint("fk_jobs_dataset_id_datasets", type_="foreignkey")
        batch_op.drop_constraint("fk_jobs_teacher_id_models", type_="foreignkey")
        batch_op.alter_column("dataset_id", existing_type=sa.String(length=40), nullable=False)
        batch_op.alter_column("teacher_id", existing_type=sa.String(length=40), nullable=False)
        batch_op.create_foreign_key(
            "fk_jobs_dataset_id_datasets", "datasets", ["dataset_id"], ["id"]
        )
        batch_op.create_foreign_key("fk_jobs_teacher_id_models", "models", ["teacher_id"], ["id"])
        batch_op.drop_column("artifacts_expired_at")
