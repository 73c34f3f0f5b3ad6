"""Open the workspace store a URL names: a folder path, `file:///…` or `s3://bucket/prefix`."""

from __future__ import annotations

from pathlib import Path

from bifrost._internal.workspace import parse_workspace_url
from control_plane.settings import Settings
from control_plane.workspace_store.base import WorkspaceStore
from control_plane.workspace_store.local import LocalFolderStore
from control_plane.workspace_store.s3 import S3Store


def open_store(
    workspace_url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_region: str | None = None,
    kept_revisions: int = 50,
) -> WorkspaceStore:
    """`kept_revisions`: how many recent revisions a folder keeps the files of (see `LocalFolderStore`)."""
    location = parse_workspace_url(workspace_url)
    if isinstance(location, Path):
        return LocalFolderStore(location, kept_revisions=kept_revisions)
    return S3Store(
        location.bucket,
        location.prefix,
        endpoint_url=s3_endpoint_url,
        access_key_id=s3_access_key_id,
        secret_access_key=s3_secret_access_key,
        region=s3_region,
    )


def store_from_settings(settings: Settings) -> WorkspaceStore:
    secret = settings.s3_secret_access_key
    return open_store(
        settings.workspace_url,
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_access_key_id=settings.s3_access_key_id,
        s3_secret_access_key=secret.get_secret_value() if secret else None,
        s3_region=settings.s3_region,
        kept_revisions=settings.workspace_kept_revisions,
    )
