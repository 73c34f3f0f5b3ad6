"""Workspace storage: where workflow files live (a local folder or an S3 bucket), their revisions, uploads."""

from bifrost._internal.workspace import (
    Manifest,
    ManifestDiff,
    RevisionChangedError,
    WorkspaceFileNotFoundError,
    WorkspacePathError,
    WorkspaceStoreError,
    diff_manifests,
    normalize_workspace_path,
)
from control_plane.workspace_store.base import StoredFile, WorkspaceStore
from control_plane.workspace_store.factory import open_store, store_from_settings
from control_plane.workspace_store.local import LocalFolderStore
from control_plane.workspace_store.s3 import S3Store
from control_plane.workspace_store.upload import upload_files

__all__ = [
    "LocalFolderStore",
    "Manifest",
    "ManifestDiff",
    "RevisionChangedError",
    "S3Store",
    "StoredFile",
    "WorkspaceFileNotFoundError",
    "WorkspacePathError",
    "WorkspaceStore",
    "WorkspaceStoreError",
    "diff_manifests",
    "normalize_workspace_path",
    "open_store",
    "store_from_settings",
    "upload_files",
]
