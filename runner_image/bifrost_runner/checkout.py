"""The execution's own folder of workflow code: its pinned workspace revision, checked out of the shared cache."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from bifrost.workspace import WorkspaceStoreError
from bifrost_runner.config import RunnerConfig
from bifrost_runner.sync import WorkspaceSyncError, sync_workspace
from bifrost_runner.workspace_source import LocalFolderSource, open_source

CACHE_FOLDER = "cache"
CHECKOUTS_FOLDER = "runs"
"""Under the runner's cache directory: the shared cache of synced files, and one checkout per execution."""
LOCK_SUFFIX = ".lock"


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
    checkouts = config.workspace_cache_dir / CHECKOUTS_FOLDER
    folder = checkouts / config.execution_id
    started = time.monotonic()
    with _held(checkouts, config.execution_id):
        await asyncio.to_thread(_remove_abandoned, checkouts)
        await asyncio.to_thread(
            sync_workspace, source, revision, config.workspace_cache_dir / CACHE_FOLDER, checkout_dir=folder
        )
        try:
            yield Checkout(folder=folder, revision=revision, sync_seconds=time.monotonic() - started)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)


@contextlib.contextmanager
def _held(checkouts: Path, execution_id: str) -> Iterator[None]:
    """Hold the lock file of the execution's checkout while the runner lives. The system releases it when the
    process ends, however it ends: a checkout whose lock is free was left by a runner that was killed."""
    checkouts.mkdir(parents=True, exist_ok=True)
    lock = checkouts / f"{execution_id}{LOCK_SUFFIX}"
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(descriptor)


def _remove_abandoned(checkouts: Path) -> None:
    for lock in checkouts.glob(f"*{LOCK_SUFFIX}"):
        try:
            descriptor = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue  # its runner just ended and removed it
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a runner is using that checkout
        else:
            shutil.rmtree(checkouts / lock.name.removesuffix(LOCK_SUFFIX), ignore_errors=True)
            lock.unlink(missing_ok=True)
        finally:
            os.close(descriptor)
