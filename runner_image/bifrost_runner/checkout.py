"""The execution's own folder of workflow code: its pinned workspace revision, checked out of the shared cache."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bifrost.workspace import WorkspaceStoreError
from bifrost_runner.config import RunnerConfig
from bifrost_runner.sync import WorkspaceSyncError, sync_workspace
from bifrost_runner.workspace_source import LocalFolderSource, open_source

CACHE_FOLDER = "cache"
CHECKOUTS_FOLDER = "runs"
"""Under the runner's cache directory: the shared cache of synced files, and one checkout per execution."""


@dataclass(frozen=True)
class Checkout:
    folder: Path
    revision: str | None
    sync_seconds: float | None
    """None when nothing was synced: an execution without a revision runs from the workspace folder itself."""


@contextlib.asynccontextmanager
async def checked_out(config: RunnerConfig, revision: str | None) -> AsyncIterator[Checkout]:
    """Sync `revision` and yield the folder to import the workflow from; the checkout is removed afterwards.

    Raises WorkspaceSyncError, naming the cause, when the revision cannot be brought in whole."""
    try:
        source = open_source(
            config.workspace_source_url,
            s3_endpoint_url=config.s3_endpoint_url,
            s3_access_key_id=config.s3_access_key_id,
            s3_secret_access_key=config.s3_secret_access_key,
            s3_region=config.s3_region,
        )
    except (ValueError, WorkspaceStoreError) as exc:
        raise WorkspaceSyncError(f"cannot open the workspace: {exc}") from exc
    if revision is None:
        if not isinstance(source, LocalFolderSource):
            raise WorkspaceSyncError(f"the execution names no workspace revision to sync from {source.description}")
        yield Checkout(folder=source.root, revision=None, sync_seconds=None)
        return
    folder = config.workspace_cache_dir / CHECKOUTS_FOLDER / config.execution_id
    started = time.monotonic()
    await asyncio.to_thread(
        sync_workspace, source, revision, config.workspace_cache_dir / CACHE_FOLDER, checkout_dir=folder
    )
    try:
        yield Checkout(folder=folder, revision=revision, sync_seconds=time.monotonic() - started)
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)
