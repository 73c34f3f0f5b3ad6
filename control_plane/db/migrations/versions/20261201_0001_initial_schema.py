"""Initial schema: organizations, users, API keys, the workflow registry, executions and their logs.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", AutoString(), nullable=False),
        sa.Column("name", AutoString(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "workflows",
        sa.Column("name", AutoString(), nullable=False),
        sa.Column("kind", AutoString(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category", AutoString(), nullable=True),
        sa.Column("file", AutoString(), nullable=False),
        sa.Column("function_name", AutoString(), nullable=False),
        sa.Column("execution_mode", AutoString(), nullable=False),
        sa.Column("endpoint_enabled", sa.Boolean(), nullable=False),
        sa.Column("schedule", AutoString(), nullable=True),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("parameters_schema", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "users",
        sa.Column("id", AutoString(), nullable=False),
        sa.Column("email", AutoString(), nullable=False),
        sa.Column("name", AutoString(), nullable=True),
        sa.Column("org_id", AutoString(), nullable=True),
        sa.Column("is_platform_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_org_id"), ["org_id"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("id", AutoString(), nullable=False),
        sa.Column("prefix", AutoString(), nullable=False),
        sa.Column("key_hash", AutoString(), nullable=False),
        sa.Column("name", AutoString(), nullable=False),
        sa.Column("user_id", AutoString(), nullable=False),
        sa.Column("org_id", AutoString(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_keys_prefix"), ["prefix"], unique=False)
        batch_op.create_index(batch_op.f("ix_api_keys_user_id"), ["user_id"], unique=False)

    op.create_table(
        "executions",
        sa.Column("id", AutoString(), nullable=False),
        sa.Column("org_id", AutoString(), nullable=True),
        sa.Column("user_id", AutoString(), nullable=False),
        sa.Column("workflow_name", AutoString(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING",
                "RUNNING",
                "SUCCESS",
                "COMPLETED_WITH_ERRORS",
                "FAILED",
                "TIMEOUT",
                "CANCELLED",
                name="executionstatus",
            ),
            nullable=False,
        ),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("variables", sa.JSON(), nullable=True),
        sa.Column("error_type", AutoString(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("parent_execution_id", AutoString(), nullable=True),
        sa.Column("workspace_revision", AutoString(), nullable=True),
        sa.Column("backend", AutoString(), nullable=True),
        sa.Column("runner_ref", AutoString(), nullable=True),
        sa.Column("last_event_seq", sa.Integer(), nullable=False),
        sa.Column("log_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
        ),
        sa.ForeignKeyConstraint(
            ["parent_execution_id"],
            ["executions.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index("ix_executions_org_created", ["org_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_executions_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_executions_parent_execution_id"), ["parent_execution_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_executions_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_executions_user_id"), ["user_id"], unique=False)
        batch_op.create_index("ix_executions_workflow_created", ["workflow_name", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_executions_workflow_name"), ["workflow_name"], unique=False)

    op.create_table(
        "execution_logs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("execution_id", AutoString(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", AutoString(), nullable=False),
        sa.Column("logger", AutoString(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("execution_id", "line", name="uq_execution_logs_line"),
    )
    with op.batch_alter_table("execution_logs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_execution_logs_execution_id"), ["execution_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("execution_logs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_execution_logs_execution_id"))

    op.drop_table("execution_logs")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_executions_workflow_name"))
        batch_op.drop_index("ix_executions_workflow_created")
        batch_op.drop_index(batch_op.f("ix_executions_user_id"))
        batch_op.drop_index(batch_op.f("ix_executions_status"))
        batch_op.drop_index(batch_op.f("ix_executions_parent_execution_id"))
        batch_op.drop_index(batch_op.f("ix_executions_org_id"))
        batch_op.drop_index("ix_executions_org_created")

    op.drop_table("executions")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_user_id"))
        batch_op.drop_index(batch_op.f("ix_api_keys_prefix"))
        batch_op.drop_index(batch_op.f("ix_api_keys_org_id"))

    op.drop_table("api_keys")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_org_id"))

    op.drop_table("users")
    op.drop_table("workflows")
    op.drop_table("organizations")
    sa.Enum(name="executionstatus").drop(op.get_bind(), checkfirst=True)
