"""Schedules and their fires; the schedule that started an execution and its retry chain; the slots the
dispatchers claim.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DECORATOR_ONLY = sa.text("source = 'decorator'")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", AutoString(), nullable=False),
        sa.Column("org_id", AutoString(), nullable=True),
        sa.Column("workflow_name", AutoString(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("cron", AutoString(), nullable=False),
        sa.Column("timezone", AutoString(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("overlap_policy", AutoString(), nullable=False),
        sa.Column("catch_up_policy", AutoString(), nullable=False),
        sa.Column("source", AutoString(), nullable=False),
        sa.Column("owner_user_id", AutoString(), nullable=False),
        sa.Column("needs_attention", sa.Text(), nullable=True),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", AutoString(), nullable=True),
        sa.Column("updated_by", AutoString(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["owner_user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("schedules") as batch:
        batch.create_index("ix_schedules_org_id", ["org_id"])
        batch.create_index("ix_schedules_workflow_name", ["workflow_name"])
        batch.create_index(
            "uq_schedules_decorator_workflow",
            ["workflow_name"],
            unique=True,
            sqlite_where=_DECORATOR_ONLY,
            postgresql_where=_DECORATOR_ONLY,
        )
    op.create_table(
        "schedule_fires",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("schedule_id", AutoString(), nullable=False),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", AutoString(), nullable=False),
        sa.Column("execution_id", AutoString(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"]),
        sa.ForeignKeyConstraint(["execution_id"], ["executions.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule_id", "fire_time", name="uq_schedule_fires_time"),
    )
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("schedule_id", AutoString(), nullable=True))
        batch.add_column(sa.Column("retry_of", AutoString(), nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("start_after", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("serial_key", AutoString(), nullable=True))
        batch.add_column(sa.Column("slot_claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("slot_claimed_by", AutoString(), nullable=True))
        batch.add_column(sa.Column("launch_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.create_index("ix_executions_schedule_id", ["schedule_id"])
        batch.create_index("ix_executions_retry_of", ["retry_of"])
        batch.create_unique_constraint("uq_executions_retry_attempt", ["retry_of", "attempt"])
        batch.create_foreign_key("fk_executions_retry_of", "executions", ["retry_of"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_constraint("fk_executions_retry_of", type_="foreignkey")
        batch.drop_constraint("uq_executions_retry_attempt", type_="unique")
        batch.drop_index("ix_executions_retry_of")
        batch.drop_index("ix_executions_schedule_id")
        for column in (
            "launch_attempts",
            "slot_claimed_by",
            "slot_claimed_at",
            "serial_key",
            "start_after",
            "attempt",
            "retry_of",
            "schedule_id",
        ):
            batch.drop_column(column)
    op.drop_table("schedule_fires")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_index("uq_schedules_decorator_workflow")
        batch.drop_index("ix_schedules_workflow_name")
        batch.drop_index("ix_schedules_org_id")
    op.drop_table("schedules")
