"""What a workspace is, shared by the control plane (which stores and lists it) and the runner (which syncs it).

A workspace is a tree of Python modules and plain data files. Its paths are POSIX, relative, and confined to
the workspace root. A revision is the manifest {path: ETag} of the whole tree, named by a hash of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel, Field, computed_field

ALLOWED_SUFFIXES = frozenset({".py", ".json", ".yaml", ".yml", ".toml", ".txt", ".csv", ".md"})
MAX_PATH_BYTES = 1024
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
REVISIONS_DIR = ".bifrost/revisions"
"""Where a store keeps the manifest of every recorded revision, under its root. Hidden paths are never
workspace files, so this folder never shows up in a listing."""
KEPT_FILES_DIR = ".bifrost/files"
"""Where a folder workspace keeps a copy of each file of its recorded revisions, named by ETag: a run pinned to
a revision can still sync it after the folder was edited. The control plane writes it, runners read it."""


class WorkspaceStoreError(Exception):
    """The workspace storage failed or refused an operation; the message says which and why."""


class WorkspacePathError(WorkspaceStoreError, ValueError):
    """A path is not an acceptable workspace file path."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"workspace path {path!r} refused: {reason}")
        self.path = path
        self.reason = reason


class WorkspaceFileNotFoundError(WorkspaceStoreError, KeyError):
    def __init__(self, path: str, where: str) -> None:
        super().__init__(f"workspace file {path!r} does not exist in {where}")
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class RevisionChangedError(WorkspaceStoreError):
    """A file no longer has the content its revision recorded, and that content cannot be fetched anymore."""


def normalize_workspace_path(raw: str) -> str:
    """`raw` as a canonical workspace path ("a/b.py"), or WorkspacePathError saying what is wrong with it."""
    if not raw:
        raise WorkspacePathError(raw, "the path is empty")
    if "\x00" in raw:
        raise WorkspacePathError(raw, "it contains a NUL byte")
    if "\\" in raw:
        raise WorkspacePathError(raw, "it contains a backslash; use '/' between folders")
    if _CONTROL_CHARACTER.search(raw):
        raise WorkspacePathError(raw, "it contains a control character")
    if raw.startswith("/"):
        raise WorkspacePathError(raw, "absolute paths are not allowed; give a path relative to the workspace")
    if len(raw.encode()) > MAX_PATH_BYTES:
        raise WorkspacePathError(raw, f"it is longer than {MAX_PATH_BYTES} bytes")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if not parts:
        raise WorkspacePathError(raw, "it names the workspace root, not a file")
    for part in parts:
        if part == "..":
            raise WorkspacePathError(raw, "'..' would leave the workspace")
        if part == "__pycache__":
            raise WorkspacePathError(raw, "__pycache__ holds compiled files, which are not part of a workspace")
        if part.startswith("."):
            raise WorkspacePathError(raw, f"hidden name {part!r}: hidden files and folders are not workspace files")
    suffix = os.path.splitext(parts[-1])[1].lower()
    if suffix == ".pyc":
        raise WorkspacePathError(raw, "compiled Python (.pyc) is not part of a workspace; upload the .py source")
    if suffix not in ALLOWED_SUFFIXES:
        allowed = ", ".join(sorted(ALLOWED_SUFFIXES))
        kind = f"{suffix} files are" if suffix else "files without an extension are"
        raise WorkspacePathError(raw, f"{kind} not accepted in a workspace (allowed: {allowed})")
    return "/".join(parts)


def is_workspace_path(raw: str) -> bool:
    """Whether `raw` is already a canonical workspace path; listings use it to skip everything else."""
    try:
        return normalize_workspace_path(raw) == raw
    except WorkspacePathError:
        return False


def confined_path(root: Path, path: str) -> Path:
    """The file `path` (canonical) under `root`, refusing it when a symlink on the way leads out of `root`."""
    # os.path on strings: a third of the time of pathlib's resolve, and discovery reads every file through here
    resolved_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(resolved_root, path))
    if target != resolved_root and not target.startswith(resolved_root.rstrip("/") + "/"):
        raise WorkspacePathError(path, "a symlink on the way leads out of the workspace")
    return Path(target)


def content_etag(data: bytes) -> str:
    """The ETag S3 gives an object uploaded in one part: the hex MD5 of its bytes. Used for integrity and
    change detection, not for security."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def write_atomically(target: Path, data: bytes) -> None:
    """Write through a hidden temporary file beside `target`, then rename it over: all or nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{secrets.token_hex(6)}.partial"
    try:
        temporary.write_bytes(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


ARCHIVES_DIR = ".bifrost/archives"
"""Where an S3 workspace keeps each recorded revision's files as one zip archive, named by the revision (itself
the hash of the revision's paths and ETags, so an archive is written once and never changes): a runner with an
empty cache fetches that one object instead of every file."""


def revision_archive_path(revision: str) -> str:
    if len(revision) != 64 or any(ch not in string.hexdigits for ch in revision):
        raise ValueError(f"{revision!r} is not a workspace revision (64 hex digits)")
    return f"{ARCHIVES_DIR}/{revision.lower()}.zip"


def revision_manifest_path(revision: str) -> str:
    if len(revision) != 64 or any(ch not in string.hexdigits for ch in revision):
        raise ValueError(f"{revision!r} is not a workspace revision (64 hex digits)")
    return f"{REVISIONS_DIR}/{revision.lower()}.json"


def kept_file_path(etag: str) -> str:
    """Where a folder workspace keeps the content whose ETag is `etag`, relative to the folder."""
    if len(etag) != 32 or any(ch not in string.hexdigits for ch in etag):
        raise WorkspaceStoreError(f"{etag!r} is not the ETag of a workspace file (32 hex digits)")
    return f"{KEPT_FILES_DIR}/{etag.lower()}"


class Manifest(BaseModel):
    """One revision of a workspace: every file with the ETag of its content."""

    files: dict[str, str] = Field(default_factory=dict, description="Workspace path -> ETag (unquoted).")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def revision(self) -> str:
        """A hash of the sorted manifest: equal manifests, equal revisions, wherever they were listed."""
        canonical = json.dumps(sorted(self.files.items()), separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ManifestDiff:
    added: frozenset[str]
    changed: frozenset[str]
    removed: frozenset[str]

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


def diff_manifests(old: Manifest, new: Manifest) -> ManifestDiff:
    """Which files appeared, changed their content, or disappeared between two revisions."""
    old_paths, new_paths = old.files.keys(), new.files.keys()
    return ManifestDiff(
        added=frozenset(new_paths - old_paths),
        changed=frozenset(p for p in new_paths & old_paths if new.files[p] != old.files[p]),
        removed=frozenset(old_paths - new_paths),
    )


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""
    """Empty, or a key prefix ending in "/"."""


def parse_workspace_url(url: str) -> Path | S3Location:
    """The folder of `file:///srv/workspace` or of a plain path, or the bucket of `s3://bucket/some/prefix`."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"workspace URL {url!r} names no bucket: use s3://bucket/prefix")
        prefix = parsed.path.strip("/")
        return S3Location(bucket=parsed.netloc, prefix=f"{prefix}/" if prefix else "")
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"workspace URL {url!r}: a file:// URL cannot name a host ({parsed.netloc!r})")
        return Path(parsed.path).resolve()
    if parsed.scheme:
        raise ValueError(f"workspace URL {url!r}: unsupported scheme {parsed.scheme!r} (use a path, file:// or s3://)")
    if not url:
        raise ValueError("the workspace URL is empty")
    return Path(url).resolve()


def parse_recorded_manifest(data: bytes, revision: str) -> Manifest:
    """A manifest read back from a store, checked to really be `revision`."""
    try:
        manifest = Manifest.model_validate_json(data)
    except ValueError as exc:
        raise WorkspaceStoreError(f"the recorded manifest of revision {revision} is unreadable: {exc}") from exc
    if manifest.revision != revision:
        raise WorkspaceStoreError(
            f"the recorded manifest of revision {revision} hashes to {manifest.revision}: it was altered"
        )
    return manifest
