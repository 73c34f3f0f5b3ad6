"""The runner's log tail gets its own column instead of standing in for the workflow's traceback.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("executions", sa.Column("runner_log_tail", sa.Text(), nullable=True))
    # Until now the log tail of a runner that exited without reporting was kept as the execution's traceback.
    op.execute(
        "UPDATE executions SET runner_log_tail = traceback, traceback = NULL "
        "WHERE traceback IS NOT NULL AND error_type = 'RunnerExited'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE executions SET traceback = runner_log_tail WHERE runner_log_tail IS NOT NULL AND traceback IS NULL"
    )
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("runner_log_tail")
