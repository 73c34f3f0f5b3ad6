"""Forms and their fields; executions know their kind (workflow or data provider), their trigger and the form they
came from; data providers' options are kept for reuse.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GLOBAL = sa.text("org_id IS NULL")


def upgrade() -> None:
    op.create_table(
        "forms",
        sa.Column("id", AutoString(), nullable=False),
        sa.Column("org_id", AutoString(), nullable=True),
        sa.Column("name", AutoString(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("workflow_name", AutoString(), nullable=False),
        sa.Column("access", AutoString(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("created_by", AutoString(), nullable=True),
        sa.Column("updated_by", AutoString(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "name", name="uq_forms_org_name"),
    )
    with op.batch_alter_table("forms") as batch:
        batch.create_index(batch.f("ix_forms_org_id"), ["org_id"], unique=False)
        batch.create_index(batch.f("ix_forms_workflow_name"), ["workflow_name"], unique=False)
        batch.create_index(
            "uq_forms_global_name", ["name"], unique=True, sqlite_where=_GLOBAL, postgresql_where=_GLOBAL
        )

    op.create_table(
        "form_fields",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("form_id", AutoString(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", AutoString(), nullable=False),
        sa.Column("label", AutoString(), nullable=True),
        sa.Column("help_text", sa.Text(), nullable=True),
        sa.Column("placeholder", AutoString(), nullable=True),
        sa.Column("widget", AutoString(), nullable=True),
        sa.Column("has_default", sa.Boolean(), nullable=False),
        sa.Column("default", sa.JSON(), nullable=True),
        sa.Column("required", sa.Boolean(), nullable=True),
        sa.Column("validation", sa.JSON(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("data_provider", sa.JSON(), nullable=True),
        sa.Column("visible_if", sa.JSON(), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["form_id"], ["forms.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("form_id", "name", name="uq_form_fields_name"),
        sa.UniqueConstraint("form_id", "position", name="uq_form_fields_position"),
    )
    with op.batch_alter_table("form_fields") as batch:
        batch.create_index(batch.f("ix_form_fields_form_id"), ["form_id"], unique=False)

    op.create_table(
        "data_provider_results",
        sa.Column("key", AutoString(), nullable=False),
        sa.Column("org_id", AutoString(), nullable=True),
        sa.Column("provider", AutoString(), nullable=False),
        sa.Column("workspace_revision", AutoString(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("execution_id", AutoString(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("data_provider_results") as batch:
        batch.create_index(batch.f("ix_data_provider_results_expires_at"), ["expires_at"], unique=False)

    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("kind", AutoString(), server_default="workflow", nullable=False))
        batch.add_column(sa.Column("trigger", AutoString(), nullable=True))
        batch.add_column(sa.Column("form_id", AutoString(), nullable=True))
        batch.create_index(batch.f("ix_executions_form_id"), ["form_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_index(batch.f("ix_executions_form_id"))
        batch.drop_column("form_id")
        batch.drop_column("trigger")
        batch.drop_column("kind")
    op.drop_table("data_provider_results")
    op.drop_table("form_fields")
    op.drop_table("forms")
