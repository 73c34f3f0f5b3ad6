"""A workspace in a local folder: the embedded mode's `workspace/`, or any mounted directory.

A folder keeps no earlier versions of its files, so recording a revision also keeps a copy of each of its
files under `.bifrost/files/<etag>` (content-addressed, so a file unchanged across revisions is kept once):
a run pinned to a revision can still sync it after the folder was edited. Copies that none of the most
recently recorded revisions needs are pruned.

A listing hashes a file only when its stat changed since it was last hashed. What each file's stat was when it
was hashed is kept in `.bifrost/stamps.json` too, so a restarted control plane does not read the unchanged files
again. A stat taken less than `RACY_SECONDS` after the file's last change is not trusted (a write in the same
clock tick as the hash would leave the stat unchanged), as git does with its "racily clean" entries: such a
file is hashed again at the next listing. What a listing read to hash is held, by ETag, until the next revision
is recorded: reading a listed version (as discovery does right after a listing) and keeping the revision's
copies then take the bytes at hand, without reading and hashing them again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from stat import S_ISLNK, S_ISREG

from bifrost._internal.workspace import (
    ALLOWED_SUFFIXES,
    KEPT_FILES_DIR,
    MAX_PATH_BYTES,
    REVISIONS_DIR,
    Manifest,
    WorkspaceFileNotFoundError,
    WorkspacePathError,
    WorkspaceStoreError,
    confined_path,
    content_etag,
    is_workspace_path,
    normalize_workspace_path,
    parse_recorded_manifest,
    revision_manifest_path,
    write_atomically,
)
from control_plane.workspace_store.base import StoredFile

logger = logging.getLogger(__name__)

_FileStamp = tuple[int, int, int, int]
"""(inode, size, mtime_ns, ctime_ns): when none of these moved, the content did not either."""
_Listing = list[tuple[str, str, int]]
"""(path, ETag, size) of each workspace file, sorted by path."""
STAMPS_FILE = ".bifrost/stamps.json"
_STAMPS_VERSION = 1
_HELD_BYTES = 256 * 2**20
"""A listing holds what it hashed up to this much (a workspace's Python files are far below it)."""
RACY_SECONDS = 2.0
"""A file changed less than this before it was hashed is hashed again at the next listing."""
_ETAG = re.compile(r"[0-9a-f]{32}")
_PLAIN_PATH = re.compile(
    r"(?:[A-Za-z0-9_\-][A-Za-z0-9_.\-]*/)*[A-Za-z0-9_\-][A-Za-z0-9_.\-]*\.(?:"
    + "|".join(re.escape(suffix[1:]) for suffix in sorted(ALLOWED_SUFFIXES))
    + ")"
)
"""Paths that are canonical workspace paths at a glance (ASCII names, no hidden part, an accepted suffix); a
listing checks every other path in full."""


_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


class LocalFolderStore:
    """Files under `root`. ETags are the MD5 of the content, as S3 computes them, so the same files make the
    same revision in a folder and in a bucket; each file is hashed again only when its stat changed."""

    def __init__(self, root: Path, *, kept_revisions: int = 50) -> None:
        if kept_revisions < 1:
            raise ValueError(f"a folder workspace must keep the files of at least 1 revision, not {kept_revisions}")
        self.root = root.resolve()
        self.kept_revisions = kept_revisions
        self._etags: dict[str, tuple[_FileStamp, str]] = {}
        self._etags_lock = threading.Lock()
        self._stamps_loaded = False
        self._stamps_changed = False
        self._recording = threading.Lock()
        self._hashed: dict[str, bytes] = {}  # ETag -> content, of the files the last listing hashed

    @property
    def description(self) -> str:
        return f"folder {self.root}"

    def list(self) -> list[StoredFile]:
        return [StoredFile(path=path, etag=etag, size=size) for path, etag, size in self._listing()]

    def read(self, path: str) -> bytes:
        target = self._file(path)
        try:
            return target.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise WorkspaceFileNotFoundError(path, self.description) from None
        except OSError as exc:
            raise WorkspaceStoreError(f"cannot read {path!r} from {self.description}: {exc.strerror}") from exc

    def read_version(self, path: str, etag: str) -> bytes | None:
        held = self._hashed.get(etag)
        if held is not None:
            return held
        return self._read_listed(path, etag)

    def write(self, path: str, data: bytes) -> StoredFile:
        canonical = normalize_workspace_path(path)
        target = self._file(canonical)
        if target.is_dir():
            raise WorkspacePathError(canonical, "a folder of that name exists")
        try:
            write_atomically(target, data)
        except OSError as exc:
            raise WorkspaceStoreError(f"cannot write {canonical!r} to {self.description}: {exc.strerror}") from exc
        return StoredFile(path=canonical, etag=content_etag(data), size=len(data))

    def delete(self, path: str) -> None:
        canonical = normalize_workspace_path(path)
        target = self._file(canonical)
        try:
            target.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise WorkspaceFileNotFoundError(canonical, self.description) from None
        except OSError as exc:
            raise WorkspaceStoreError(f"cannot delete {canonical!r} from {self.description}: {exc.strerror}") from exc
        self._remove_empty_parents(target)

    def check_writable(self) -> None:
        if not self.root.is_dir():
            raise WorkspaceStoreError(f"the workspace folder {self.root} does not exist")
        if not os.access(self.root, os.W_OK):
            raise WorkspaceStoreError(f"the workspace folder {self.root} is not writable")

    def manifest(self) -> Manifest:
        return Manifest(files={path: etag for path, etag, _ in self._listing()})

    def record_revision(self, manifest: Manifest) -> str:
        """Record `manifest` and keep a copy of each of its files. A file whose content no longer has the
        manifest's ETag (edited since the listing) cannot be kept: a run of this revision fails its sync."""
        revision = manifest.revision
        target = self.root / revision_manifest_path(revision)
        with self._recording:
            try:
                (self.root / KEPT_FILES_DIR).mkdir(parents=True, exist_ok=True)
                already_kept = self._kept_etags()
                hashed, self._hashed = self._hashed, {}
                for path, etag in manifest.files.items():
                    if etag not in already_kept:
                        self._keep(path, etag, hashed, already_kept)
                if target.exists():
                    os.utime(target)  # recorded again: it counts as recent for pruning
                else:
                    write_atomically(target, manifest.model_dump_json().encode())
                    self._prune_kept_files()
            except OSError as exc:
                raise WorkspaceStoreError(f"cannot record revision {revision} in {self.description}: {exc}") from exc
        return revision

    def load_revision(self, revision: str) -> Manifest:
        target = self.root / revision_manifest_path(revision)
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            raise WorkspaceFileNotFoundError(revision_manifest_path(revision), self.description) from None
        return parse_recorded_manifest(data, revision)

    def _file(self, path: str) -> Path:
        return confined_path(self.root, normalize_workspace_path(path))

    def _keep(self, path: str, etag: str, hashed: dict[str, bytes], already_kept: set[str]) -> None:
        data = hashed.get(etag)
        if data is None:
            data = self._read_listed(path, etag)
        if data is None:
            logger.warning("%r changed or vanished before its revision was recorded; runs of it cannot sync it", path)
            return
        kept = f"{self.root}/{KEPT_FILES_DIR}/{etag}"
        temporary = f"{self.root}/{KEPT_FILES_DIR}/.{etag}.{os.getpid()}.{threading.get_ident()}.partial"
        # os-level calls: a buffered file object's setup and teardown cost more than the write itself, and a
        # cold start keeps thousands of copies
        try:
            descriptor = os.open(temporary, _WRITE_FLAGS, 0o644)
            try:
                _write_all(descriptor, data)
            finally:
                os.close(descriptor)
            os.rename(temporary, kept)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        already_kept.add(etag)

    def _read_listed(self, path: str, etag: str) -> bytes | None:
        """The content of `path` if it still hashes to `etag`, else None."""
        # A listed path is read as it is, without resolving it: a symlink swapped in since the listing can only
        # bring content whose hash is the listed ETag, which the listing read inside the folder.
        source = f"{self.root}/{path}" if _PLAIN_PATH.fullmatch(path) else None
        try:
            if source is None:
                source = str(self._file(path))
            with open(source, "rb") as file:
                data = file.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, WorkspacePathError):
            return None
        except OSError as exc:
            raise WorkspaceStoreError(f"cannot read {path!r} from {self.description}: {exc.strerror}") from exc
        return data if content_etag(data) == etag else None

    def _kept_etags(self) -> set[str]:
        """The ETags whose content is kept already, from one listing of the kept files."""
        return {name for name in os.listdir(self.root / KEPT_FILES_DIR) if _ETAG.fullmatch(name)}

    def _prune_kept_files(self) -> None:
        """Remove the kept files that none of the `kept_revisions` most recently recorded revisions lists."""
        revisions = sorted(
            (self.root / REVISIONS_DIR).glob("*.json"), key=lambda path: path.stat().st_mtime_ns, reverse=True
        )
        needed: set[str] = set()
        for recorded in revisions[: self.kept_revisions]:
            try:
                needed.update(parse_recorded_manifest(recorded.read_bytes(), recorded.stem).files.values())
            except WorkspaceStoreError:
                logger.warning("the recorded revision %s is unreadable; it keeps no files", recorded.name)
        kept_files = self.root / KEPT_FILES_DIR
        if not kept_files.is_dir():
            return
        for kept in kept_files.iterdir():
            if kept.name not in needed:
                kept.unlink(missing_ok=True)

    def _walk(self) -> Iterator[str]:
        """Candidate workspace paths; hidden folders (like the revision store) and `__pycache__` are skipped
        without descending into them."""
        for folder, subfolders, names in os.walk(self.root):
            subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "__pycache__"]
            relative_folder = Path(folder).relative_to(self.root).as_posix()
            for name in names:
                relative = name if relative_folder == "." else f"{relative_folder}/{name}"
                if (_PLAIN_PATH.fullmatch(relative) and len(relative) <= MAX_PATH_BYTES) or is_workspace_path(relative):
                    yield relative

    def _listing(self) -> _Listing:
        if not self.root.is_dir():
            raise WorkspaceStoreError(f"the workspace folder {self.root} does not exist")
        self._load_stamps()
        hashed: dict[str, bytes] = {}
        files = [stored for path in self._walk() if (stored := self._stored_file(path, hashed)) is not None]
        with self._etags_lock:
            listed = {path for path, _, _ in files}
            for gone in self._etags.keys() - listed:
                del self._etags[gone]
                self._stamps_changed = True
        self._save_stamps()
        if hashed:
            held = {**self._hashed, **hashed}
            self._hashed = held if sum(map(len, held.values())) <= _HELD_BYTES else {}
        return sorted(files)

    def _stored_file(self, path: str, hashed: dict[str, bytes]) -> tuple[str, str, int] | None:
        """The listing entry of `path`, or None for what is not a workspace file after all (a symlink out of
        the root, something that vanished while we listed); what it hashes goes into `hashed`. The walk does not
        follow symlinked folders, so only a symlink itself can lead out of the root and needs resolving: a listing
        stays one `lstat` per file.
        """
        target = os.path.join(self.root, path)
        try:
            stat = os.lstat(target)
            if S_ISLNK(stat.st_mode):
                stat = confined_path(self.root, path).stat()
        except (WorkspacePathError, OSError):
            return None
        if not S_ISREG(stat.st_mode):
            return None
        stamp: _FileStamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        with self._etags_lock:
            known = self._etags.get(path)
        if known is not None and known[0] == stamp:
            return path, known[1], stat.st_size
        hashed_at = time.time_ns()
        try:
            with open(target, "rb") as file:
                data = file.read()
        except OSError:
            return None
        etag = content_etag(data)
        hashed[etag] = data
        settled = max(stat.st_mtime_ns, stat.st_ctime_ns) < hashed_at - int(RACY_SECONDS * 1e9)
        with self._etags_lock:
            if settled and len(data) == stat.st_size:
                self._etags[path] = (stamp, etag)
                self._stamps_changed = True
            elif self._etags.pop(path, None) is not None:
                self._stamps_changed = True
        return path, etag, len(data)

    def _load_stamps(self) -> None:
        """Take the stamps an earlier listing kept, once; a missing or unreadable file only costs hashing."""
        if self._stamps_loaded:
            return
        self._stamps_loaded = True
        try:
            recorded = json.loads((self.root / STAMPS_FILE).read_bytes())
            if recorded["version"] != _STAMPS_VERSION:
                return
            entries = {
                path: ((ino, size, mtime_ns, ctime_ns), etag)
                for path, (ino, size, mtime_ns, ctime_ns, etag) in recorded["files"].items()
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            logger.warning("%s is unreadable; every file is hashed again: %s", STAMPS_FILE, exc)
            return
        with self._etags_lock:
            self._etags = {**entries, **self._etags}

    def _save_stamps(self) -> None:
        with self._etags_lock:
            if not self._stamps_changed:
                return
            self._stamps_changed = False
            files = {path: [*stamp, etag] for path, (stamp, etag) in self._etags.items()}
        data = json.dumps({"version": _STAMPS_VERSION, "files": files}, separators=(",", ":")).encode()
        try:
            write_atomically(self.root / STAMPS_FILE, data)
        except OSError as exc:  # the listing stands; the next start hashes the files again
            logger.warning("cannot keep %s in %s: %s", STAMPS_FILE, self.description, exc)

    def _remove_empty_parents(self, removed: Path) -> None:
        folder = removed.parent
        while folder != self.root and folder.is_relative_to(self.root):
            with contextlib.suppress(OSError):
                folder.rmdir()
            if folder.exists():
                return
            folder = folder.parent
