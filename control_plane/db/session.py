"""The database engine: SQLite (embedded default) or PostgreSQL, from one URL."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def database_reachable(engine: Engine) -> bool:
    """Whether the database answers a query."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return False
    return True


@contextmanager
def serialized_transaction(engine: Engine, name: str) -> Iterator[Connection]:
    """A transaction that runs alone among the transactions of the same `name`, in every process that uses the
    database, and sees everything they committed before it: for a read-then-write that must not interleave
    (claiming the last free slot). Committed when the block ends without an exception."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Held to the end of the transaction. The key: any number, the same for every process.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(name.encode())})
        else:
            # SQLite has one writer at a time; taking the write lock first makes the reads see the latest commit.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()
