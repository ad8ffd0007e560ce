"""Reference runs: the lab's own PASS runs (and imported published curves) that the full tier's
25% check compares with once promoted.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen copies of the lengths in tables.py: a migration must not change when the models do.
ID = 128
SHORT = 64


def upgrade() -> None:
    op.create_table(
        "reference_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("status", sa.String(SHORT), nullable=False),
        sa.Column("model", sa.String(ID), nullable=False),
        sa.Column("variant", sa.String(ID), nullable=False),
        sa.Column("framework", sa.String(SHORT), nullable=False),
        sa.Column("tier", sa.String(SHORT), nullable=False),
        sa.Column("hardware", sa.String(ID), nullable=False),
        sa.Column("recipe", sa.String(ID), nullable=False),
        sa.Column("job_id", sa.String(ID), nullable=True),
        sa.Column("metric_name", sa.String(ID), nullable=False),
        sa.Column("direction", sa.String(SHORT), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("early_metric", sa.Float(), nullable=True),
        sa.Column("early_loss", sa.Float(), nullable=True),
        sa.Column("early_drift", sa.Float(), nullable=True),
        sa.Column("final_metric", sa.Float(), nullable=True),
        sa.Column("final_loss", sa.Float(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reference_runs"),
    )
    op.create_index("ix_reference_runs_status", "reference_runs", ["status"], unique=False)
    op.create_index("ix_reference_runs_model", "reference_runs", ["model"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reference_runs_model", table_name="reference_runs")
    op.drop_index("ix_reference_runs_status", table_name="reference_runs")
    op.drop_table("reference_runs")
