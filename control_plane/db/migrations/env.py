"""Alembic's entry point: migrates the database of the connection handed over by `control_plane.db.migrate`,
or of `sqlalchemy.url` when run from the `alembic` command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from control_plane.db import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from control_plane.db.session import make_engine

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _command_line_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: give the database as `alembic -x url=<SQLAlchemy URL> ...`")
    return url


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with make_engine(_command_line_url()).connect() as own_connection:
        _run(own_connection)


def _run_offline() -> None:
    context.configure(
        url=_command_line_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
