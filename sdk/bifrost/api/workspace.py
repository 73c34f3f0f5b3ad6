"""The workspace's files."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field


class WorkspaceFileOut(BaseModel):
    path: str
    etag: str = Field(description="The MD5 of the content, as S3 reports it.")
    size: int


class WorkspaceListing(BaseModel):
    revision: str = Field(description="The hash of the manifest {path: etag} of these files.")
    registry_revision: str | None = Field(
        description="The revision the registry last read, which new executions are pinned to; it catches up "
        "with changes made past the API (a direct bucket write, a folder edit) at its next poll."
    )
    files: Sequence[WorkspaceFileOut]


class WorkspaceUpload(BaseModel):
    """A whole folder, written as one revision."""

    files: dict[str, str] = Field(description="Workspace path -> the file's content, as UTF-8 text.")
    replace_all: bool = Field(True, description="Delete the stored files this upload does not name.")
