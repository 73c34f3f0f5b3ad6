"""The workflow registry: what the workspace defines, read as text (never imported), kept current by polling.

Every poll takes the workspace store's manifest (one listing: file paths and content ETags) and re-parses only
the Python files whose ETag changed. Each new revision is recorded in the store, so a runner can sync exactly
the revision its execution was created with. Readers get an immutable `RegistrySnapshot`, so the request path
never waits for a scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, delete
from sqlmodel import Session, col

from bifrost._internal.discovery import DiscoveryError, FileDiscovery, combine, discover_source
from bifrost._internal.workspace import Manifest, WorkspaceFileNotFoundError, WorkspaceStoreError
from bifrost.metadata import DataProviderInfo, WorkflowInfo
from control_plane.db.models import Workflow, utcnow
from control_plane.workspace_store import WorkspaceStore

logger = logging.getLogger(__name__)


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
        self._manifest = Manifest()
        self._files: dict[str, FileDiscovery] = {}
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
        with self._scanning:
            return self._rescan()

    def _rescan(self) -> bool:
        manifest = self._store.manifest()
        if self._snapshot.revision == manifest.revision:
            return False
        previous = self._manifest.files
        for path in previous.keys() - manifest.files.keys():
            self._files.pop(path, None)
        for path, etag in manifest.files.items():
            if path.endswith(".py") and previous.get(path) != etag:
                self._files[path] = self._discover(path)
        self._manifest = manifest
        self._snapshot = self._build_snapshot(self._store.record_revision(manifest))
        self._persist(self._snapshot)
        logger.info(
            "workspace revision %s: %d workflows, %d problems",
            manifest.revision[:12],
            len(self._snapshot.workflows),
            len(self._snapshot.problems),
        )
        return True

    def _discover(self, path: str) -> FileDiscovery:
        try:
            source = self._store.read(path).decode("utf-8", errors="replace")
        except WorkspaceFileNotFoundError:
            return FileDiscovery(file=path)  # removed since the listing; the next poll drops it
        try:
            return discover_source(path, source)
        except Exception as exc:  # one file that trips discovery must not hide the rest of the workspace
            logger.exception("discovery of %s failed", path)
            return FileDiscovery(
                file=path, errors=[DiscoveryError(file=path, line=None, message=f"discovery failed: {exc!r}")]
            )

    def _build_snapshot(self, revision: str) -> RegistrySnapshot:
        discovery = combine(self._files[path] for path in sorted(self._files))
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

    def _persist(self, snapshot: RegistrySnapshot) -> None:
        """Mirror the registry into the `workflows` table, for what reads it from the database."""
        now = utcnow()
        with Session(self._db_engine) as session:
            names = [*snapshot.workflows, *snapshot.data_providers]
            session.execute(delete(Workflow).where(col(Workflow.name).not_in(names)))
            for info in snapshot.workflows.values():
                session.merge(_workflow_row(info, now))
            for provider in snapshot.data_providers.values():
                session.merge(_data_provider_row(provider, now))
            session.commit()


def _workflow_row(info: WorkflowInfo, now: datetime) -> Workflow:
    return Workflow(
        name=info.name,
        kind="workflow",
        description=info.description,
        category=info.category,
        file=info.file,
        function_name=info.function_name,
        execution_mode=info.execution_mode,
        endpoint_enabled=info.endpoint_enabled,
        schedule=info.schedule,
        timeout_seconds=info.timeout_seconds,
        meta=info.model_dump(
            mode="json",
            include={"tags", "retries", "max_concurrency", "resources", "line", "is_async", "form_fields", "warnings"},
        ),
        parameters_schema=info.parameters_schema,
        updated_at=now,
    )


def _data_provider_row(info: DataProviderInfo, now: datetime) -> Workflow:
    return Workflow(
        name=info.name,
        kind="data_provider",
        description=info.description,
        category=info.category,
        file=info.file,
        function_name=info.function_name,
        execution_mode="sync",
        timeout_seconds=info.timeout_seconds,
        meta=info.model_dump(mode="json", include={"cache_ttl_seconds", "line", "is_async", "warnings"}),
        parameters_schema=info.parameters_schema,
        updated_at=now,
    )
