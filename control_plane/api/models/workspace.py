"""Request and response bodies of the workspace's files (defined in `bifrost.api`); here, how each is made."""

from __future__ import annotations

from collections.abc import Sequence

from bifrost.api import workspace as api
from bifrost.api.workspace import WorkspaceUpload
from control_plane.workspace_store import StoredFile

__all__ = ["WorkspaceFileOut", "WorkspaceListing", "WorkspaceUpload"]


class WorkspaceFileOut(api.WorkspaceFileOut):
    @classmethod
    def of(cls, stored: StoredFile) -> WorkspaceFileOut:
        return cls(path=stored.path, etag=stored.etag, size=stored.size)


class WorkspaceListing(api.WorkspaceListing):
    files: Sequence[WorkspaceFileOut]
