"""Brings a database to the newest schema with Alembic, at every start of the control plane."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same for every replica that migrates this database.
_POSTGRES_LOCK_ID = 0x6269667273


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(db_engine: Engine) -> None:
    """Apply every migration not yet applied. On PostgreSQL an advisory lock keeps replicas that start
    together from migrating at the same time."""
    config = alembic_config()
    with db_engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _POSTGRES_LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
