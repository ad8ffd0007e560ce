"""Selftest rows: per injected defect (and clean control) whether and where it was flagged.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen copies of the lengths in tables.py: a migration must not change when the models do.
ID = 128
SHORT = 64


def upgrade() -> None:
    """Create ``selftest_rows`` and its suite index."""
    op.create_table(
        "selftest_rows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("suite_id", sa.String(ID), nullable=False),
        sa.Column("role", sa.String(SHORT), nullable=False),
        sa.Column("defect", sa.String(ID), nullable=True),
        sa.Column("model", sa.String(ID), nullable=False),
        sa.Column("framework", sa.String(SHORT), nullable=False),
        sa.Column("stage", sa.String(SHORT), nullable=True),
        sa.Column("defect_type", sa.String(ID), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(ID), nullable=True),
        sa.Column("verdict", sa.String(SHORT), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("caught_at", sa.String(SHORT), nullable=True),
        sa.Column("cost_share", sa.Float(), nullable=True),
        sa.Column("preflight", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_selftest_rows"),
    )
    op.create_index("ix_selftest_rows_suite_id", "selftest_rows", ["suite_id"], unique=False)


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_index("ix_selftest_rows_suite_id", table_name="selftest_rows")
    op.drop_table("selftest_rows")
