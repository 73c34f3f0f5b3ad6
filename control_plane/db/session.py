"""The database engine: SQLite (embedded default) or PostgreSQL, from one URL."""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

# How long SQLite waits for another process's write lock, and a thread of this one for the in-process lock.
SQLITE_BUSY_SECONDS = 30.0
_SQLITE_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")


class _WriteLock:
    """One writer at a time among the connections of one engine, queued on a lock instead of in SQLite's busy
    handler, which sleeps 1, 2, 5, 10... ms before it looks again. Taken at a transaction's first write and
    released when it ends. A thread that holds it and writes on a second connection does not wait for itself:
    it goes on to SQLite, which answers "database is locked" after its busy timeout, as without this lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def acquire(self) -> bool:
        if self._owner == threading.get_ident():
            return False
        if not self._lock.acquire(timeout=SQLITE_BUSY_SECONDS):
            return False
        self._owner = threading.get_ident()
        return True

    def release(self) -> None:
        self._owner = None
        self._lock.release()


def _sqlite_connection_class(write_lock: _WriteLock) -> type[sqlite3.Connection]:
    class WriteQueuedCursor(sqlite3.Cursor):
        connection: WriteQueuedConnection

        def execute(self, sql: str, parameters: Any = (), /) -> WriteQueuedCursor:
            self.connection.before_statement(sql)
            try:
                return super().execute(sql, parameters)
            finally:
                self.connection.after_statement()

        def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> WriteQueuedCursor:
            self.connection.before_statement(sql)
            try:
                return super().executemany(sql, seq_of_parameters)
            finally:
                self.connection.after_statement()

    class WriteQueuedConnection(sqlite3.Connection):
        holds_write_lock = False

        def cursor(self, factory: Any = WriteQueuedCursor) -> Any:
            return super().cursor(factory)

        # sqlite3's own shortcuts make their cursors in C, past `cursor`.
        def execute(self, sql: str, parameters: Any = (), /) -> WriteQueuedCursor:
            cursor: WriteQueuedCursor = self.cursor()
            return cursor.execute(sql, parameters)

        def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> WriteQueuedCursor:
            cursor: WriteQueuedCursor = self.cursor()
            return cursor.executemany(sql, seq_of_parameters)

        def before_statement(self, sql: str) -> None:
            if not self.holds_write_lock and sql.lstrip()[:15].upper().startswith(_SQLITE_WRITES):
                self.holds_write_lock = write_lock.acquire()

        def after_statement(self) -> None:
            # A write outside a transaction (or a BEGIN that failed) holds SQLite's lock no longer.
            if self.holds_write_lock and not self.in_transaction:
                self._release()

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._release()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._release()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._release()

        def _release(self) -> None:
            if self.holds_write_lock:
                self.holds_write_lock = False
                write_lock.release()

    return WriteQueuedConnection


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # The control plane is one process: its writers queue on a lock (see `_WriteLock`); SQLite's busy
        # timeout remains for other processes that write to the same file (another `bifrost` command).
        connection_class = _sqlite_connection_class(_WriteLock())
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS, "factory": connection_class},
        )

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
