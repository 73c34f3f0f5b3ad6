"""The one interface over workspace storage, whatever holds the files (a local folder or an S3 bucket)."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict

from bifrost._internal.workspace import Manifest


class StoredFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    etag: str
    size: int


def manifest_of(files: list[StoredFile]) -> Manifest:
    return Manifest(files={f.path: f.etag for f in files})


class WorkspaceStore(Protocol):
    @property
    def description(self) -> str:
        """Where the files are, for messages: `folder /srv/workspace`, `s3://bucket/prefix/`."""

    def list(self) -> list[StoredFile]:
        """Every workspace file, sorted by path, from one listing (no file is read for it on S3)."""

    def read(self, path: str) -> bytes:
        """The content of one file; WorkspaceFileNotFoundError when there is none."""

    def read_version(self, path: str, etag: str) -> bytes | None:
        """The content of `path` as a manifest listed it (with `etag`); None when it changed or went since."""

    def write(self, path: str, data: bytes) -> StoredFile:
        """Create or replace one file; readers never see it half-written."""

    def delete(self, path: str) -> None:
        """Remove one file; WorkspaceFileNotFoundError when there is none."""

    def check_writable(self) -> None:
        """Fail with a clear WorkspaceStoreError when writes cannot work (missing folder or bucket, refused
        credentials), before a multi-file upload has written anything."""

    def manifest(self) -> Manifest:
        """The current revision of the workspace, from one listing: cheap enough to poll every few seconds."""

    def record_revision(self, manifest: Manifest) -> str:
        """Keep `manifest` in the store so a runner can later sync exactly that revision; returns its id."""

    def load_revision(self, revision: str) -> Manifest:
        """A manifest kept by `record_revision`; WorkspaceFileNotFoundError when it was never recorded."""
