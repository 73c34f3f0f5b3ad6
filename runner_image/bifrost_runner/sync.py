"""Bring one exact workspace revision into the runner's local cache folder before the workflow is imported.

Only what the cache lacks is downloaded (in parallel, with retries), every file is checked against the ETag
its revision recorded, and files the revision does not have are removed: the workflow runs exactly the
revision it was dispatched with, or the sync fails with a message saying why. An empty cache is filled from
the revision's archive (one object) where the source keeps one; a missing or damaged archive is reported and
the files are fetched one by one instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import shutil
import stat
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from bifrost._internal.workspace import (
    Manifest,
    WorkspacePathError,
    WorkspaceStoreError,
    content_etag,
    normalize_workspace_path,
    write_atomically,
)
from bifrost_runner.workspace_source import RevisionSource, SourceUnavailableError

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

INDEX_FILE = ".bifrost-sync.json"
LOCK_FILE = ".bifrost-sync.lock"
_OWN_FILES = frozenset({INDEX_FILE, LOCK_FILE})


class WorkspaceSyncError(WorkspaceStoreError):
    """The cache could not be brought to the revision; the workflow must not run."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed fetch is tried again: `attempts` in all, waiting twice as long each time."""

    attempts: int = 5
    first_delay: float = 0.25
    max_delay: float = 4.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, not {self.attempts}")

    def delay_after(self, attempt: int) -> float:
        return float(min(self.first_delay * 2 ** (attempt - 1), self.max_delay))


@dataclass(frozen=True)
class SyncReport:
    revision: str
    downloaded: int
    reused: int
    removed: int
    seconds: float
    from_archive: bool = False


class _CachedFile(BaseModel):
    etag: str
    size: int
    mtime_ns: int


class _CacheIndex(BaseModel):
    """What the cache holds, so a warm sync needs one `stat` per file instead of a download."""

    files: dict[str, _CachedFile] = {}


def sync_workspace(
    source: RevisionSource,
    revision: str,
    cache_dir: Path,
    *,
    checkout_dir: Path | None = None,
    workers: int = 16,
    retry: RetryPolicy = RetryPolicy(),
) -> SyncReport:
    """Load the manifest recorded for `revision`, then `sync_revision` it."""
    try:
        manifest = _with_retries(lambda: source.load_manifest(revision), f"manifest of {revision}", source, retry)
    except WorkspaceSyncError:
        raise
    except WorkspaceStoreError as exc:
        raise WorkspaceSyncError(f"workspace revision {revision} could not be synced: {exc}") from exc
    return sync_revision(source, manifest, cache_dir, checkout_dir=checkout_dir, workers=workers, retry=retry)


def sync_revision(
    source: RevisionSource,
    manifest: Manifest,
    cache_dir: Path,
    *,
    checkout_dir: Path | None = None,
    workers: int = 16,
    retry: RetryPolicy = RetryPolicy(),
) -> SyncReport:
    """Make `cache_dir` hold exactly the files of `manifest`, downloading only those the cache lacks.

    With `checkout_dir` (a new folder, outside `cache_dir`), the revision is also given its own copy there, made
    under the cache's lock: hard links to the cached files where the file system allows, copies elsewhere.
    A later sync replaces cached files by renaming new ones over them and never writes into them, so a runner
    importing from its checkout keeps exactly its revision while the cache moves on."""
    started = time.monotonic()
    for path in manifest.files:
        if normalize_workspace_path(path) != path:
            raise WorkspacePathError(path, "the manifest holds a path that is not canonical")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir):
        removed = _remove_strays(cache_dir, set(manifest.files))
        fresh = {
            path: cached
            for path, cached in _read_index(cache_dir).files.items()
            if manifest.files.get(path) == cached.etag and _unchanged(os.path.join(cache_dir, path), cached)
        }
        missing = sorted(manifest.files.keys() - fresh.keys())
        unpacked = _from_archive(source, manifest, cache_dir, workers, retry) if missing and not fresh else {}
        missing = [path for path in missing if path not in unpacked]
        fetched, failures = _download(source, manifest, missing, cache_dir, workers, retry)
        fetched |= unpacked
        _write_index(cache_dir, _CacheIndex(files=fresh | fetched))
        if checkout_dir is not None and not failures:
            _check_out(cache_dir, manifest, checkout_dir)
    if failures:
        first = failures[0]
        raise WorkspaceSyncError(
            f"workspace revision {manifest.revision} could not be synced from {source.description}: "
            f"{len(manifest.files) - len(fresh) - len(fetched)} of {len(manifest.files)} files missing; "
            f"first failure: {first}"
        ) from first
    report = SyncReport(
        revision=manifest.revision,
        downloaded=len(fetched),
        reused=len(fresh),
        removed=removed,
        seconds=time.monotonic() - started,
        from_archive=bool(unpacked),
    )
    logger.info(
        "workspace revision %s synced in %.3fs: %d downloaded, %d reused, %d removed",
        report.revision[:12],
        report.seconds,
        report.downloaded,
        report.reused,
        report.removed,
    )
    return report


def _from_archive(
    source: RevisionSource, manifest: Manifest, cache_dir: Path, workers: int, retry: RetryPolicy
) -> dict[str, _CachedFile]:
    """Every file of the revision, from its archive; nothing (after a warning saying why) when the source keeps
    no archive of it, or one that is damaged or does not hold exactly the revision's files."""
    if not source.keeps_archives:
        return {}
    revision = manifest.revision
    try:
        archive = _with_retries(lambda: source.fetch_archive(revision), f"archive of {revision}", source, retry)
    except WorkspaceStoreError as exc:
        logger.warning(
            "the archive of revision %s could not be fetched (%s); fetching its files one by one", revision[:12], exc
        )
        return {}
    if archive is None:
        logger.warning(
            "revision %s has no archive in %s; fetching its files one by one", revision[:12], source.description
        )
        return {}
    try:
        contents = _archived_files(archive, manifest)
    except (zipfile.BadZipFile, KeyError, zlib.error, EOFError, ValueError, struct.error) as exc:
        logger.warning(
            "the archive of revision %s in %s is damaged (%s); fetching its files one by one",
            revision[:12],
            source.description,
            exc,
        )
        return {}
    wrong = next((path for path, data in contents.items() if content_etag(data) != manifest.files[path]), None)
    if wrong is not None:
        logger.warning(
            "the archive of revision %s in %s holds another version of %r; fetching its files one by one",
            revision[:12],
            source.description,
            wrong,
        )
        return {}
    try:
        for folder in sorted(_folders_of(set(contents))):
            os.makedirs(os.path.join(cache_dir, folder), exist_ok=True)
        root = str(cache_dir)
        items = list(contents.items())

        def write_share(share: list[tuple[str, bytes]]) -> list[tuple[str, os.stat_result]]:
            return [(path, _write_new(os.path.join(root, path), data)) for path, data in share]

        # One share of the files per thread, not one task per file: thousands of tasks cost more than the writes.
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="workspace-unpack") as pool:
            shares = pool.map(write_share, [items[start::workers] for start in range(workers)])
            return {
                path: _CachedFile(etag=manifest.files[path], size=done.st_size, mtime_ns=done.st_mtime_ns)
                for share in shares
                for path, done in share
            }
    except OSError as exc:
        raise WorkspaceSyncError(f"cannot write the files of revision {revision} into {cache_dir}: {exc}") from exc


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, 22 bytes the central directory repeats, name and extra lengths
_LOCAL_SIGNATURE = b"PK\x03\x04"


def _archived_files(archive: bytes, manifest: Manifest) -> dict[str, bytes]:
    """The content of every file of `manifest` in the zip `archive`, each decompressed straight from the archive's
    bytes: the stdlib's file object per member costs three times as much for thousands of small files. KeyError
    for a file the archive lacks; BadZipFile or zlib.error for a damaged one. No member's CRC is checked: the
    caller checks every content against the ETag its revision recorded, which a CRC would only repeat."""
    with zipfile.ZipFile(io.BytesIO(archive)) as unpacked:
        members = {info.filename: info for info in unpacked.infolist()}
    view = memoryview(archive)
    contents: dict[str, bytes] = {}
    for path in manifest.files:
        info = members[path]
        signature, name_length, extra_length = _LOCAL_HEADER.unpack_from(archive, info.header_offset)
        if signature != _LOCAL_SIGNATURE:
            raise zipfile.BadZipFile(f"no member header where the directory places {path!r}")
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        stored = view[start : start + info.compress_size]
        if info.compress_type == zipfile.ZIP_DEFLATED:
            inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            data = inflate.decompress(stored, info.file_size)  # never more than the size the directory gives
            if not inflate.eof:
                raise zipfile.BadZipFile(f"{path!r} is cut short or longer than the directory says")
        elif info.compress_type == zipfile.ZIP_STORED:
            data = bytes(stored)
        else:
            raise zipfile.BadZipFile(f"{path!r} is compressed with method {info.compress_type}, not deflate")
        contents[path] = data
    return contents


def _write_new(target: str, data: bytes) -> os.stat_result:
    """Write a file the cache does not hold yet in place (half the system calls of a write through a temporary
    file, which is most of the time of filling an empty cache: a file left half-written is not in the index, so
    the next sync replaces it); a file that is there is replaced by renaming, as every other sync write."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        write_atomically(Path(target), data)
        return os.stat(target)
    try:
        remaining = memoryview(data)
        while remaining:
            remaining = remaining[os.write(fd, remaining) :]
        return os.fstat(fd)
    finally:
        os.close(fd)


def _download(
    source: RevisionSource,
    manifest: Manifest,
    paths: list[str],
    cache_dir: Path,
    workers: int,
    retry: RetryPolicy,
) -> tuple[dict[str, _CachedFile], list[WorkspaceStoreError]]:
    """Fetch and write `paths` in parallel. The first failure that retries cannot fix stops the rest: a sync
    that will fail anyway should not keep a broken storage busy."""
    abandon = threading.Event()

    def fetch_and_store(path: str) -> _CachedFile | None:
        if abandon.is_set():
            return None
        etag = manifest.files[path]
        data = _with_retries(lambda: source.fetch(path, etag), repr(path), source, retry, abandon)
        target = cache_dir / path
        write_atomically(target, data)
        written = target.stat()
        return _CachedFile(etag=etag, size=written.st_size, mtime_ns=written.st_mtime_ns)

    fetched: dict[str, _CachedFile] = {}
    failures: list[WorkspaceStoreError] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="workspace-sync") as pool:
        futures: dict[Future[_CachedFile | None], str] = {pool.submit(fetch_and_store, p): p for p in paths}
        for future in as_completed(futures):
            try:
                cached = future.result()
            except WorkspaceStoreError as exc:
                failures.append(exc)
                abandon.set()
                continue
            except OSError as exc:
                failures.append(WorkspaceSyncError(f"cannot write {futures[future]!r} into {cache_dir}: {exc}"))
                abandon.set()
                continue
            if cached is not None:
                fetched[futures[future]] = cached
    return fetched, failures


def _with_retries(
    action: Callable[[], _T],
    what: str,
    source: RevisionSource,
    retry: RetryPolicy,
    abandon: threading.Event | None = None,
) -> _T:
    attempt = 1
    while True:
        try:
            return action()
        except SourceUnavailableError as exc:
            if attempt >= retry.attempts or (abandon is not None and abandon.is_set()):
                raise SourceUnavailableError(f"{exc} (gave up after {attempt} attempts)") from exc
            delay = retry.delay_after(attempt)
            logger.warning(
                "fetching %s from %s failed (attempt %d of %d): %s; retrying in %.2fs",
                what,
                source.description,
                attempt,
                retry.attempts,
                exc,
                delay,
            )
            time.sleep(delay)
            attempt += 1


def _unchanged(target: str, cached: _CachedFile) -> bool:
    """Whether the cached file is still what was written (not replaced, edited or swapped for a symlink by
    an earlier run that shared this cache)."""
    try:
        found = os.lstat(target)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_size == cached.size and found.st_mtime_ns == cached.mtime_ns


def _folders_of(paths: set[str]) -> set[str]:
    """Every folder that holds one of `paths`, at any depth ("a/b/c.py" -> {"a", "a/b"})."""
    folders: set[str] = set()
    for path in paths:
        cut = path.rfind("/")
        while cut > 0 and path[:cut] not in folders:
            folders.add(path[:cut])
            cut = path.rfind("/", 0, cut)
    return folders


def _remove_strays(cache_dir: Path, wanted: set[str]) -> int:
    """Delete everything in the cache the revision does not have (old files, what an earlier run wrote,
    symlinks); `__pycache__` folders stay, so warm imports stay warm. Returns how many entries went.
    Plain strings, not Path objects: this runs over every cached file on every sync."""
    wanted_folders = _folders_of(wanted)
    root = str(cache_dir)
    removed = 0
    for folder, subfolders, names in os.walk(root):
        relative_folder = folder[len(root) + 1 :]
        prefix = f"{relative_folder}/" if relative_folder else ""
        kept: list[str] = []
        for name in subfolders:
            full = os.path.join(folder, name)
            is_link = os.path.islink(full)
            if not is_link and (prefix + name in wanted_folders or name == "__pycache__"):
                if name != "__pycache__":
                    kept.append(name)
                continue
            if is_link:
                os.unlink(full)
            else:
                shutil.rmtree(full)
            removed += 1
        subfolders[:] = kept
        for name in names:
            if prefix + name in wanted or (not prefix and name in _OWN_FILES):
                continue
            os.unlink(os.path.join(folder, name))
            removed += 1
    return removed


def _check_out(cache_dir: Path, manifest: Manifest, checkout_dir: Path) -> None:
    try:
        checkout_dir.mkdir(parents=True)
        for folder in sorted(_folders_of(set(manifest.files))):
            (checkout_dir / folder).mkdir()
        for path in manifest.files:
            try:
                os.link(cache_dir / path, checkout_dir / path)
            except OSError:  # another file system, or one without hard links
                shutil.copyfile(cache_dir / path, checkout_dir / path)
    except OSError as exc:
        raise WorkspaceSyncError(
            f"cannot check workspace revision {manifest.revision} out into {checkout_dir}: {exc}"
        ) from exc


def _read_index(cache_dir: Path) -> _CacheIndex:
    try:
        return _CacheIndex.model_validate_json((cache_dir / INDEX_FILE).read_bytes())
    except FileNotFoundError:
        return _CacheIndex()
    except ValueError:
        logger.warning("the sync index in %s is unreadable; every file will be fetched again", cache_dir)
        return _CacheIndex()


def _write_index(cache_dir: Path, index: _CacheIndex) -> None:
    write_atomically(cache_dir / INDEX_FILE, index.model_dump_json().encode())


def lock_file(fd: int, kind: int, *, wait: bool) -> None:
    """Lock the whole file open as `fd` with an open file description lock: `kind` is `fcntl.F_RDLCK` (shared,
    taken through any descriptor) or `fcntl.F_WRLCK` (exclusive, only through one opened for writing, which a
    workflow, whose cache is read-only, cannot have: it can neither hold off syncs nor the runs of a revision), or
    `fcntl.F_UNLCK`. BlockingIOError when the lock is taken and not `wait`. The system releases the lock when the
    last descriptor of that open file closes, however its process ends."""
    flock = struct.pack("hhqqi4x", kind, os.SEEK_SET, 0, 0, 0)  # struct flock: type, whence, start, length, pid
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, flock)
    except PermissionError as exc:  # how some systems say "taken"
        raise BlockingIOError(exc.errno, exc.strerror) from None


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """One sync at a time per cache folder (a node cache can be shared by several runners)."""
    with open(cache_dir / LOCK_FILE, "a+b") as lock:
        lock_file(lock.fileno(), fcntl.F_WRLCK, wait=True)
        try:
            yield
        finally:
            lock_file(lock.fileno(), fcntl.F_UNLCK, wait=False)
