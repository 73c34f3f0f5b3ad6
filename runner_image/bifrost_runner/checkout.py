"""The folder a run imports its workflow from: one read-only checkout per workspace revision, made once from the
shared cache and then shared by every run of that revision that uses the same cache folder.

Under the runner's cache directory:

    cache/                    the synced files of the latest revision (see `sync`)
    revisions/<revision>/     a complete checkout: hard links into the cache, read-only
    revisions/<revision>.lock held shared by every run using the checkout; its mtime is the checkout's last use
    revisions/.<revision>.<random>.tmp   a checkout being built (or removed), renamed into place when complete

A checkout appears under its final name only complete, and leaves it (renamed away) before it is removed, so a
folder under its revision's name is always whole. Runs hold their revision's lock shared; a cleaner removes a
checkout only with the lock taken exclusively without waiting, so never one a live run uses. The system releases
a lock when its process ends, however it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from bifrost._internal.workspace import WorkspaceStoreError
from bifrost_runner.config import RunnerConfig
from bifrost_runner.sync import WorkspaceSyncError, lock_file, sync_workspace
from bifrost_runner.workspace_source import LocalFolderSource, RevisionSource, open_source

logger = logging.getLogger(__name__)

CACHE_FOLDER = "cache"
REVISIONS_FOLDER = "revisions"
LOCK_SUFFIX = ".lock"
BUILD_SUFFIX = ".tmp"
KEPT_CHECKOUTS = 3
"""Checkouts kept after a new one is made: the most recently used ones, plus any a live run still uses."""

_LEGACY_RUNS_FOLDER = "runs"
"""Where earlier runner versions made one checkout per execution; removed when found."""
_REVISION_ID = re.compile(r"[0-9a-f]{64}")
_BUILD_NAME = re.compile(rf"\.({_REVISION_ID.pattern})\.[0-9a-f]+{re.escape(BUILD_SUFFIX)}")


@dataclass(frozen=True)
class Checkout:
    folder: Path
    revision: str | None
    sync_seconds: float | None
    """How long it took to have the checkout ready (near zero when it already existed); None when nothing was
    synced: an execution without a revision runs from the workspace folder itself."""


@contextlib.asynccontextmanager
async def checked_out(
    config: RunnerConfig, revision: str | None, writable_cache: Path | None = None
) -> AsyncIterator[Checkout]:
    """Yield the folder to import the workflow from: the read-only checkout of `revision`, made first if this
    cache has none yet. The checkout stays in use (safe from cleanup) until the context exits. `writable_cache`:
    where the cache is written, when its own path (`config.workspace_cache_dir`, where the checkout is imported
    from) is read-only to this process.

    Raises WorkspaceSyncError, naming the cause, when the revision cannot be brought in whole."""
    started = time.monotonic()
    if revision is None:
        source = _open_source(config)
        if not isinstance(source, LocalFolderSource):
            raise WorkspaceSyncError(f"the execution names no workspace revision to sync from {source.description}")
        yield Checkout(folder=source.root, revision=None, sync_seconds=None)
        return
    if not _REVISION_ID.fullmatch(revision):
        raise WorkspaceSyncError(f"{revision!r} is not a workspace revision (64 lowercase hex digits)")
    cache = writable_cache or config.workspace_cache_dir
    revisions = cache / REVISIONS_FOLDER
    lock = revisions / f"{revision}{LOCK_SUFFIX}"
    try:
        descriptor = await _lock_shared(lock)
    except OSError as exc:
        raise WorkspaceSyncError(f"cannot lock the checkout of workspace revision {revision}: {exc}") from exc
    try:
        os.utime(descriptor)  # marks the checkout as just used, for cleanup
        if not _is_checked_out(revisions / revision):
            await asyncio.to_thread(_build, config, cache, revision)
        folder = config.workspace_cache_dir / REVISIONS_FOLDER / revision
        yield Checkout(folder=folder, revision=revision, sync_seconds=time.monotonic() - started)
    finally:
        os.close(descriptor)


def _open_source(config: RunnerConfig) -> RevisionSource:
    try:
        return open_source(
            config.workspace_source_url,
            s3_endpoint_url=config.s3_endpoint_url,
            s3_access_key_id=config.s3_access_key_id,
            s3_secret_access_key=config.s3_secret_access_key,
            s3_region=config.s3_region,
        )
    except (ValueError, WorkspaceStoreError) as exc:
        raise WorkspaceSyncError(f"cannot open the workspace: {exc}") from exc


def _open_lock_file(lock: Path, *, writable: bool = False) -> int:
    """Read-only for a run, which holds its lock while its workflow runs: that may neither write it nor take it
    exclusively (see `lock_file`); writable for a cleaner, which takes it exclusively."""
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_CREAT | os.O_CLOEXEC
    try:
        return os.open(lock, flags, 0o644)
    except FileNotFoundError:
        lock.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock, flags, 0o644)


def _still_names(lock: Path, descriptor: int) -> bool:
    """Whether `lock` still names the file `descriptor` was opened on: a cleaner may have unlinked it in between,
    and a lock on an unlinked file protects nothing."""
    try:
        on_disk = os.stat(lock)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


async def _lock_shared(lock: Path) -> int:
    """Take `lock` shared and return its descriptor: inline when it is free (the usual case), in a thread while
    a cleaner holds it."""
    while True:
        descriptor = _open_lock_file(lock)
        try:
            try:
                lock_file(descriptor, fcntl.F_RDLCK, wait=False)
            except BlockingIOError:
                await asyncio.to_thread(functools.partial(lock_file, descriptor, fcntl.F_RDLCK, wait=True))
            if _still_names(lock, descriptor):
                return descriptor
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)


def _is_checked_out(folder: Path) -> bool:
    """A checkout is under its revision's name only when complete. One `stat`, done inline on the event loop:
    this is every warm run's path."""
    return os.path.isdir(folder)


def _build(config: RunnerConfig, cache: Path, revision: str) -> None:
    """Sync `revision` into the cache folder `cache` and make its checkout beside the others, then clean up old
    ones.

    Runners racing for one revision each build their own and the first rename wins; the others drop theirs."""
    revisions = cache / REVISIONS_FOLDER
    folder = revisions / revision
    build = revisions / f".{revision}.{secrets.token_hex(8)}{BUILD_SUFFIX}"
    source = _open_source(config)
    try:
        sync_workspace(source, revision, cache / CACHE_FOLDER, checkout_dir=build)
        _make_read_only(build)
        try:
            build.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
            _remove_tree(build)  # another runner put the same revision in place first
    except OSError as exc:
        with contextlib.suppress(OSError):
            _remove_tree(build)
        raise WorkspaceSyncError(f"cannot check workspace revision {revision} out into {folder}: {exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            _remove_tree(build)
        raise
    try:
        _remove_unused(revisions)
    except OSError as exc:  # the checkout is made; a failed cleanup must not fail the run
        logger.warning("could not clean up the checkouts in %s: %s", revisions, exc)
    shutil.rmtree(cache / _LEGACY_RUNS_FOLDER, ignore_errors=True)


def _make_read_only(folder: Path) -> None:
    """So that no run changes what another imports. The files are hard links into the cache: the cache's copies
    become read-only too, which syncs do not mind (they replace cached files by rename, never write into them)."""
    for parent, subfolders, names in os.walk(folder, topdown=False):
        for name in names:
            os.chmod(os.path.join(parent, name), 0o444)
        for name in subfolders:
            os.chmod(os.path.join(parent, name), 0o555)
    os.chmod(folder, 0o555)


def _remove_tree(folder: Path) -> None:
    for parent, _, _ in os.walk(folder):
        os.chmod(parent, 0o700)
    shutil.rmtree(folder)


@dataclass
class _RevisionEntries:
    """What the revisions folder holds of one revision besides its lock file."""

    checkout: bool = False
    builds: list[Path] = field(default_factory=list)


def _remove_unused(revisions: Path) -> None:
    """Remove the checkouts beyond the KEPT_CHECKOUTS most recently used, the build folders of runners that died,
    and lock files left without a checkout: each only when no live runner holds that revision's lock."""
    entries: dict[str, _RevisionEntries] = {}
    with os.scandir(revisions) as listing:
        for entry in listing:
            name = entry.name
            if _REVISION_ID.fullmatch(name) and entry.is_dir(follow_symlinks=False):
                entries.setdefault(name, _RevisionEntries()).checkout = True
            elif name.endswith(LOCK_SUFFIX) and _REVISION_ID.fullmatch(name.removesuffix(LOCK_SUFFIX)):
                entries.setdefault(name.removesuffix(LOCK_SUFFIX), _RevisionEntries())
            elif match := _BUILD_NAME.fullmatch(name):
                entries.setdefault(match.group(1), _RevisionEntries()).builds.append(Path(entry.path))
    checkouts = [revision for revision, found in entries.items() if found.checkout]
    checkouts.sort(key=lambda revision: _last_used(revisions, revision), reverse=True)
    stale = set(checkouts[KEPT_CHECKOUTS:])
    for revision, found in entries.items():
        if revision in stale or found.builds or not found.checkout:
            try:
                _remove_if_unused(revisions, revision, found.builds, remove_checkout=revision in stale)
            except OSError as exc:
                logger.warning("could not remove the unused checkout files of revision %s: %s", revision[:12], exc)


def _last_used(revisions: Path, revision: str) -> int:
    try:
        return os.stat(revisions / f"{revision}{LOCK_SUFFIX}").st_mtime_ns
    except FileNotFoundError:
        return 0


def _remove_if_unused(revisions: Path, revision: str, builds: list[Path], *, remove_checkout: bool) -> None:
    lock = revisions / f"{revision}{LOCK_SUFFIX}"
    descriptor = _open_lock_file(lock, writable=True)
    try:
        try:
            lock_file(descriptor, fcntl.F_WRLCK, wait=False)
        except BlockingIOError:
            return  # a run uses the checkout, or a runner is building it
        if not _still_names(lock, descriptor):
            return  # another cleaner got there first
        folder = revisions / revision
        if remove_checkout:
            # Out of its name first: a cleaner killed halfway leaves a build folder, never a partial checkout.
            away = revisions / f".{revision}.{secrets.token_hex(8)}{BUILD_SUFFIX}"
            folder.rename(away)
            builds = [*builds, away]
        for build in builds:
            _remove_tree(build)
        if not folder.exists():
            lock.unlink()
    finally:
        os.close(descriptor)
