"""Jobs: queue time (submission to first start), kept apart from the billed wall time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add ``jobs.queue_s`` (NULL for the jobs stored before: not measured)."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("queue_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queue_s")
