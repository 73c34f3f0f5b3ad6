"""The workflow registry: what the workspace defines, read as text (never imported), kept current by polling.

Every poll takes the workspace store's manifest (one listing: file paths and content ETags) and re-parses only
the Python files whose ETag changed. What each file holds is kept in the database (`discovery_cache`, keyed by
path and ETag), so a restart re-parses only the files that changed while it was down; a scan with many files to
parse spreads them over worker processes. Each new revision is recorded in the store, so a runner can sync
exactly the revision its execution was created with. Readers get an immutable `RegistrySnapshot`, so the
request path never waits for a scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Dialect, Engine, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine import Compiled
from sqlmodel import Session, SQLModel, col

import bifrost
from bifrost._internal.discovery import FileDiscovery, combine
from bifrost._internal.workspace import Manifest, WorkspaceStoreError
from bifrost.metadata import DataProviderInfo, WorkflowInfo
from control_plane.db.models import DiscoveredFile, Workflow, utcnow
from control_plane.discovery_worker import (
    WORKFLOW_COLUMNS,
    Row,
    Rows,
    Worker,
    data_provider_row,
    discover_stored,
    workflow_row,
)
from control_plane.workspace_store import WorkspaceStore

logger = logging.getLogger(__name__)

PARALLEL_FROM_FILES = 200
"""A scan with at least this many files to parse spreads them over this process and a worker process for each
other core (see `discovery_worker` for how they share them out)."""
_READERS = 8  # reads overlap: a store in S3 answers each read in a round trip
_READS_PER_TASK = 64  # a task per file would cost the thread pool more than a folder's read
_SQL_BATCH = 500


@dataclass(frozen=True)
class WorkspaceProblem:
    """Something in the workspace that keeps a workflow from being registered."""

    file: str
    line: int | None
    message: str


@dataclass(frozen=True)
class RegistrySnapshot:
    workflows: dict[str, WorkflowInfo] = field(default_factory=dict)
    data_providers: dict[str, DataProviderInfo] = field(default_factory=dict)
    problems: tuple[WorkspaceProblem, ...] = ()
    revision: str | None = None  # the store revision this snapshot was read from


class Registry:
    def __init__(self, store: WorkspaceStore, db_engine: Engine, *, poll_seconds: float = 1.0) -> None:
        self._store = store
        self._db_engine = db_engine
        self._poll_seconds = poll_seconds
        self._files: dict[str, FileDiscovery] = {}
        self._etags: dict[str, str] = {}  # the ETag each entry of `_files` was read from
        self._cache_loaded = False
        self._cache_complete = False  # whether `_files` mirrors the `workflows` table
        self._snapshot = RegistrySnapshot()
        self._poller: asyncio.Task[None] | None = None
        self._scanning = threading.Lock()

    @property
    def store(self) -> WorkspaceStore:
        return self._store

    @property
    def snapshot(self) -> RegistrySnapshot:
        return self._snapshot

    def get(self, name: str) -> WorkflowInfo | None:
        return self._snapshot.workflows.get(name)

    async def start(self) -> None:
        """Scan the whole workspace once (failing loudly when the store cannot be read), then keep polling."""
        await asyncio.to_thread(self.rescan)
        self._poller = asyncio.create_task(self._poll(), name="bifrost-registry-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await asyncio.to_thread(self.rescan)
            except WorkspaceStoreError as exc:
                logger.warning("scan of the workspace failed; retrying at the next poll: %s", exc)
            except Exception:
                logger.exception(
                    "scan of the workspace in %s failed; retrying at the next poll", self._store.description
                )

    async def refresh(self) -> bool:
        """Rescan now, without waiting for the next poll (after a write through the API)."""
        return await asyncio.to_thread(self.rescan)

    def rescan(self) -> bool:
        """Re-parse the Python files that changed since the last scan; True when the workspace changed."""
        with self._scanning, _collection_paused():
            return self._rescan()

    def _rescan(self) -> bool:
        workers: list[Worker] = []
        try:
            if not self._cache_loaded:
                self._cache_complete, large_scan_likely = self._load_cache()
                self._cache_loaded = True
                if large_scan_likely:
                    # the workers' imports overlap the listing; a small workspace's first start pays only for
                    # interpreters stopped right after its (short) listing
                    workers = _start_workers()
            return self._update(self._store.manifest(), workers)
        finally:
            for worker in workers:
                worker.stop()

    def _update(self, manifest: Manifest, workers: list[Worker]) -> bool:
        revision = manifest.revision
        if self._snapshot.revision == revision:
            return False
        wanted = {path: etag for path, etag in manifest.files.items() if path.endswith(".py")}
        changed = [path for path, etag in wanted.items() if self._etags.get(path) != etag]
        removed = [path for path in self._etags if path not in wanted]
        parsed, recorded = self._discover_and_record([(path, wanted[path]) for path in changed], manifest, workers)
        files, etags = dict(self._files), dict(self._etags)
        touched = [files[path] for path in (*changed, *removed) if path in files]
        for path in removed:
            del files[path], etags[path]
        rows: Rows = {}
        for path, (found, _, file_rows) in parsed.items():
            files[path], etags[path] = found, wanted[path]
            rows.update(file_rows)
        snapshot = self._build_snapshot(files, recorded)
        dirty = {info.name for file in (*touched, *(found for found, _, _ in parsed.values())) for info in _infos(file)}
        cached = [(path, wanted[path], parser_version(), encoded) for path, (_, encoded, _) in parsed.items()]
        self._persist(snapshot, rows, cached, removed, dirty if self._cache_complete else None)
        self._files, self._etags, self._snapshot, self._cache_complete = files, etags, snapshot, True
        logger.info(
            "workspace revision %s: %d workflows, %d problems (%d files parsed, %d from the cache)",
            revision[:12],
            len(snapshot.workflows),
            len(snapshot.problems),
            len(parsed),
            len(wanted) - len(parsed),
        )
        return True

    def _load_cache(self) -> tuple[bool, bool]:
        """Take what the database keeps of earlier scans. First: whether it mirrors the `workflows` table (rows of
        another discovery version leave it unknown which workflows those files registered); second: whether the
        first scan is likely to parse enough files for worker processes (nothing of this discovery version is
        kept, and the database keeps no rows at all, or those of at least that many files)."""
        with Session(self._db_engine) as session:
            rows = session.execute(
                select(
                    col(DiscoveredFile.path),
                    col(DiscoveredFile.etag),
                    col(DiscoveredFile.parser),
                    col(DiscoveredFile.result),
                )
            ).all()
        current = [row for row in rows if row.parser == parser_version()]
        decoded = _decode([row.result for row in current]) if current else []
        self._files = {row.path: found for row, found in zip(current, decoded, strict=True)}
        self._etags = {row.path: row.etag for row in current}
        large_scan_likely = not current and (not rows or len(rows) >= PARALLEL_FROM_FILES) and _cores() > 1
        return bool(rows) and len(current) == len(rows), large_scan_likely

    def _discover_and_record(
        self, listed: list[tuple[str, str]], manifest: Manifest, started: list[Worker]
    ) -> tuple[dict[str, tuple[FileDiscovery, str, Rows]], str]:
        """What each of the `listed` files (path, ETag) holds, with its cache entry (JSON) and the `workflows` rows
        of its functions; and the revision of `manifest`, recorded in the store. A file changed or removed since
        the listing is left out: the next poll sees it again. `started`: worker processes started for this scan
        already."""
        cores = _cores()
        if len(listed) < PARALLEL_FROM_FILES or cores < 2:
            for worker in started:
                worker.stop()
            items = self._read_all(listed)
            parsed = {path: discover_stored(path, source) for path, source in items}
            return parsed, self._store.record_revision(manifest)
        workers = started or _start_workers()
        try:
            items = self._read_all(listed)
            # Each worker takes a part, and this process parses files from the end of each part while its worker
            # parses from the start: a worker for this process would first spend as long importing the SDK
            parts = [
                items[index * len(items) // len(workers) : (index + 1) * len(items) // len(workers)]
                for index in range(len(workers))
            ]
            for worker, part in zip(workers, parts, strict=True):
                worker.give(part)
            with ThreadPoolExecutor(len(workers), thread_name_prefix="bifrost-discovery-worker") as talkers:
                answers = talkers.map(Worker.discover, workers)
                # Recording (a folder keeps a copy of every new file) overlaps the workers' parsing, and comes
                # before this process's own: a thread doing it beside the parsing would wait for the
                # interpreter's lock after each of its many system calls. It starts after the last read: a store
                # may reuse what it read for discovery (S3 archives it).
                recorded = self._store.record_revision(manifest)
                own: dict[str, tuple[FileDiscovery, str, Rows]] = {}
                answered: list[list[tuple[FileDiscovery, str, Rows]]] = [[] for _ in workers]
                for worker, part in zip(reversed(workers), reversed(parts), strict=True):
                    while (taken := worker.take_from_end()) is not None:
                        own.update(
                            (path, discover_stored(path, source)) for path, source in part[taken.start : taken.stop]
                        )
                        _collect(workers, answered)
                for _ in answers:  # each worker's exit, or its error
                    pass
                _collect(workers, answered)
        finally:
            for worker in workers:
                worker.stop()
        parsed = {
            path: entry
            for part, got in zip(parts, answered, strict=True)
            for (path, _), entry in zip(part[: len(got)], got, strict=True)
            if path not in own  # parsed by both: the few files both claimed at the same moment
        }
        parsed.update(own)
        return parsed, recorded

    def _read_all(self, listed: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """(path, text) of each of the `listed` files (path, ETag) that still has its listed content."""
        size = max(1, min(_READS_PER_TASK, len(listed) // _READERS))
        tasks = [listed[start : start + size] for start in range(0, len(listed), size)]
        with ThreadPoolExecutor(_READERS, thread_name_prefix="bifrost-discovery-read") as readers:
            return [item for items in readers.map(self._read, tasks) for item in items]

    def _read(self, listed: list[tuple[str, str]]) -> list[tuple[str, str]]:
        sources: list[tuple[str, str]] = []
        for path, etag in listed:
            data = self._store.read_version(path, etag)
            if data is not None:
                sources.append((path, data.decode("utf-8", errors="replace")))
        return sources

    def _build_snapshot(self, files: dict[str, FileDiscovery], revision: str) -> RegistrySnapshot:
        discovery = combine(files[path] for path in sorted(files))
        problems = [WorkspaceProblem(error.file, error.line, error.message) for error in discovery.errors]
        for conflict in discovery.conflicts:
            places = ", ".join(f"{place.file}:{place.line}" for place in conflict.places)
            message = f"the name {conflict.name!r} is defined more than once ({places}); none of them is registered"
            problems.extend(WorkspaceProblem(place.file, place.line, message) for place in conflict.places)
        return RegistrySnapshot(
            workflows={info.name: info for info in sorted(discovery.workflows, key=lambda info: info.name)},
            data_providers={info.name: info for info in sorted(discovery.data_providers, key=lambda info: info.name)},
            problems=tuple(problems),
            revision=revision,
        )

    def _persist(
        self,
        snapshot: RegistrySnapshot,
        parsed_rows: Rows,
        cached: list[tuple[str, str, str, str]],
        removed: list[str],
        dirty: set[str] | None,
    ) -> None:
        """Mirror the registry into the `workflows` table, for what reads it from the database, and keep the new
        cache entries, in one transaction. `dirty`: the names whose files changed (only they are written); None
        rewrites every row. `parsed_rows`: rows already built for the files parsed by this scan."""
        registered = [*snapshot.workflows, *snapshot.data_providers]
        with Session(self._db_engine) as session:
            if dirty is None:
                session.execute(delete(Workflow))  # every registered row is written again below
                session.execute(delete(DiscoveredFile).where(col(DiscoveredFile.parser) != parser_version()))
                written: Iterable[str] = registered
            else:
                gone = [
                    name for name in dirty if name not in snapshot.workflows and name not in snapshot.data_providers
                ]
                for batch in _batches(gone):
                    session.execute(delete(Workflow).where(col(Workflow.name).in_(batch)))
                written = sorted(dirty.difference(gone))
            now = _stored_now(session.get_bind().dialect)
            rows = [(*(parsed_rows.get(name) or self._row(snapshot, name)), now) for name in written]
            _upsert(session, "workflows", (*WORKFLOW_COLUMNS, "updated_at"), rows)
            for batch in _batches(removed):
                session.execute(delete(DiscoveredFile).where(col(DiscoveredFile.path).in_(batch)))
            _upsert(session, "discovery_cache", ("path", "etag", "parser", "result"), cached)
            session.commit()

    @staticmethod
    def _row(snapshot: RegistrySnapshot, name: str) -> Row:
        if name in snapshot.workflows:
            return workflow_row(snapshot.workflows[name])
        return data_provider_row(snapshot.data_providers[name])


def _registered(snapshot: RegistrySnapshot, name: str) -> bool:
    return name in snapshot.workflows or name in snapshot.data_providers


@functools.cache
def parser_version() -> str:
    """Names the discovery code (the SDK's sources): a cache entry written by other code is parsed again."""
    package = Path(bifrost.__file__).parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:32]


def _start_workers() -> list[Worker]:
    return [Worker() for _ in range(_cores() - 1)]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while a scan builds its many small objects (syntax trees, info models): the
    collector would walk them over and over, which took three quarters of the time of reading the cache back.
    What a scan drops is freed by reference counting. What it keeps (the snapshot) lives long, so it goes
    straight to the oldest generation: `gc.freeze` then `gc.unfreeze` moves every tracked object there without
    walking any, where the young generations' collections would each have walked all of them once more."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def _collect(workers: list[Worker], answered: list[list[tuple[FileDiscovery, str, Rows]]]) -> None:
    """Take and decode what each worker answered since the last call."""
    for worker, got in zip(workers, answered, strict=True):
        entries = worker.collect()
        decoded = _decode([encoded for encoded, _ in entries])
        got.extend((found, encoded, rows) for found, (encoded, rows) in zip(decoded, entries, strict=True))


def _decode(encoded: Sequence[str]) -> list[FileDiscovery]:
    # one document per file: a fifth faster than one document of them all
    return [FileDiscovery.model_validate_json(entry) for entry in encoded]


def _batches(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _SQL_BATCH):
        yield values[start : start + _SQL_BATCH]


def _infos(file: FileDiscovery) -> list[WorkflowInfo | DataProviderInfo]:
    return [*file.workflows, *file.data_providers]


def _stored_now(dialect: Dialect) -> Any:
    """The time now, as the driver takes it for a `workflows.updated_at` value (SQLite: as SQLAlchemy writes it)."""
    column_type = Workflow.__table__.c.updated_at.type  # type: ignore[attr-defined]
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    now = utcnow()
    return process(now) if process else now


def _upsert(session: Session, table_name: str, columns: tuple[str, ...], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert `rows` (values of `columns`, as the driver takes them), replacing the rows of the same first column,
    in one executemany on the driver's cursor: SQLAlchemy's processing of each value took longer than the
    database's work."""
    if not rows:
        return
    connection = session.connection()
    statement = _upsert_statement(connection.dialect.name, table_name, columns)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(statement, rows)
    finally:
        cursor.close()


@functools.cache
def _upsert_statement(dialect_name: str, table_name: str, columns: tuple[str, ...]) -> str:
    """The SQL of `_upsert`, with positional parameters in the order of `columns`."""
    table = SQLModel.metadata.tables[table_name]
    key, *updated = columns
    values = {name: bindparam(name, type_=table.c[name].type) for name in columns}
    compiled: Compiled
    if dialect_name == "postgresql":
        pg_insert = postgresql.insert(table).values(values)
        pg_statement = pg_insert.on_conflict_do_update(
            index_elements=[key], set_={name: pg_insert.excluded[name] for name in updated}
        )
        # positional parameters (the engine's psycopg dialect names them), each cast to its column's type
        compiled = pg_statement.compile(dialect=PGDialect_psycopg(paramstyle="format"))  # type: ignore[no-untyped-call]
    else:
        lite_insert = sqlite.insert(table).values(values)
        lite_statement = lite_insert.on_conflict_do_update(
            index_elements=[key], set_={name: lite_insert.excluded[name] for name in updated}
        )
        compiled = lite_statement.compile(dialect=sqlite.dialect())
    if compiled.positiontup != list(columns):
        raise RuntimeError(f"the upsert into {table_name} takes its parameters in another order")
    return compiled.string
