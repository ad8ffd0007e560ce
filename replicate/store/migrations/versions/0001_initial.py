"""Initial schema: suites, jobs, group_verdicts.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen copies of the lengths in tables.py: a migration must not change when the models do.
ID = 128
SHORT = 64


def _utc_datetime() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _create_suites() -> None:
    op.create_table(
        "suites",
        sa.Column("suite_id", sa.String(ID), nullable=False),
        sa.Column("name", sa.String(ID), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("finished_at", _utc_datetime(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("suite_id", name="pk_suites"),
    )


def _job_columns() -> list[sa.Column]:
    floats = ("setup_s", "train_s", "eval_s", "lost_s", "wall_s", "accelerator_hours", "cost")
    return [
        sa.Column("job_id", sa.String(ID), nullable=False),
        sa.Column("suite_id", sa.String(ID), nullable=True),
        sa.Column("model", sa.String(ID), nullable=False),
        sa.Column("variant", sa.String(ID), nullable=False),
        sa.Column("framework", sa.String(SHORT), nullable=False),
        sa.Column("tier", sa.String(SHORT), nullable=False),
        sa.Column("hardware", sa.String(ID), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(SHORT), nullable=False),
        sa.Column("failure_stage", sa.String(SHORT), nullable=True),
        sa.Column("failure_impact", sa.String(SHORT), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("metric_name", sa.String(ID), nullable=True),
        sa.Column("metric_value", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("compared_with", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("curve", sa.JSON(), nullable=False),
        *(sa.Column(name, sa.Float(), nullable=False) for name in floats),
        sa.Column("throughput", sa.Float(), nullable=True),
        sa.Column("time_to_quality_s", sa.Float(), nullable=True),
        sa.Column("steps_done", sa.Integer(), nullable=False),
        sa.Column("steps_planned", sa.Integer(), nullable=False),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("early_check", sa.JSON(), nullable=False),
        sa.Column("lr_scaling", sa.JSON(), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(ID), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("updated_at", _utc_datetime(), nullable=False),
    ]


def _create_jobs() -> None:
    op.create_table("jobs", *_job_columns(), sa.PrimaryKeyConstraint("job_id", name="pk_jobs"))
    op.create_index("ix_jobs_suite_id", "jobs", ["suite_id"], unique=False)
    op.create_index("ix_jobs_model", "jobs", ["model"], unique=False)


def _create_group_verdicts() -> None:
    op.create_table(
        "group_verdicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("suite_id", sa.String(ID), nullable=False),
        sa.Column("model", sa.String(ID), nullable=False),
        sa.Column("variant", sa.String(ID), nullable=False),
        sa.Column("framework", sa.String(SHORT), nullable=False),
        sa.Column("tier", sa.String(SHORT), nullable=False),
        sa.Column("hardware", sa.String(ID), nullable=False),
        sa.Column("seeds", sa.JSON(), nullable=False),
        sa.Column("metric_name", sa.String(ID), nullable=True),
        sa.Column("mean", sa.Float(), nullable=True),
        sa.Column("std", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(SHORT), nullable=False),
        sa.Column("failure_stage", sa.String(SHORT), nullable=True),
        sa.Column("failure_impact", sa.String(SHORT), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("compared_with", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("noise_note", sa.Text(), nullable=True),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_group_verdicts"),
        sa.UniqueConstraint(
            "suite_id", "model", "variant", "framework", "tier", "hardware",
            name="uq_group_verdicts_key",
        ),
    )


def upgrade() -> None:
    """Create the three tables and their indexes."""
    _create_suites()
    _create_jobs()
    _create_group_verdicts()


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    op.drop_table("group_verdicts")
    op.drop_index("ix_jobs_model", table_name="jobs")
    op.drop_index("ix_jobs_suite_id", table_name="jobs")
    op.drop_table("jobs")
    op.drop_table("suites")
