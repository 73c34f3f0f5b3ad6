"""Request and response bodies of the workspace's files."""

from __future__ import annotations

from pydantic import BaseModel, Field

from control_plane.workspace_store import StoredFile


class WorkspaceFileOut(BaseModel):
    path: str
    etag: str = Field(description="The MD5 of the content, as S3 reports it.")
    size: int

    @classmethod
    def of(cls, stored: StoredFile) -> WorkspaceFileOut:
        return cls(path=stored.path, etag=stored.etag, size=stored.size)


class WorkspaceListing(BaseModel):
    revision: str = Field(description="The hash of the manifest {path: etag} of these files.")
    registry_revision: str | None = Field(
        description="The revision the registry last read, which new executions are pinned to; it catches up "
        "with changes made past the API (a direct bucket write, a folder edit) at its next poll."
    )
    files: list[WorkspaceFileOut]


class WorkspaceUpload(BaseModel):
    """A whole folder, written as one revision."""

    files: dict[str, str] = Field(description="Workspace path -> the file's content, as UTF-8 text.")
    replace_all: bool = Field(True, description="Delete the stored files this upload does not name.")
