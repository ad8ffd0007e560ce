"""Jobs: every attempt (start, end, node, steps, cause of death) and the time dead attempts held
beyond their training, billed with the job.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add ``jobs.attempts`` and ``jobs.retry_overhead_s`` (NULL for the jobs stored before: not recorded)."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("attempts", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("retry_overhead_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("retry_overhead_s")
        batch.drop_column("attempts")
