"""dataset label counts per split and upload warnings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 16:40:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # Null for datasets uploaded before: counting them would mean reading every split
    # from the object store, which a migration does not do. Their jobs skip the check.
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("label_counts", JSON, nullable=True))
        batch_op.add_column(sa.Column("warnings", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets", schema=None) as batch_op:
        batch_op.drop_column("warnings")
        batch_op.drop_column("label_counts")
