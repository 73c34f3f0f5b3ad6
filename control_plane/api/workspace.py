"""The workspace's files over HTTP: list and read them; platform admins write, delete and upload whole folders.

Every write is visible to the registry before the response is sent: the route rescans the workspace at once
instead of waiting for the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, HTTPException, Request, Response, status

from bifrost._internal.workspace import (
    WorkspaceFileNotFoundError,
    WorkspacePathError,
    WorkspaceStoreError,
    content_etag,
    normalize_workspace_path,
)
from control_plane.api.dependencies import PlatformAdminDep, ServicesDep, UserDep
from control_plane.api.models.workspace import WorkspaceFileOut, WorkspaceListing, WorkspaceUpload
from control_plane.registry import Registry
from control_plane.workspace_store import upload_files
from control_plane.workspace_store.base import manifest_of

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/workspace", tags=["workspace"])

_STORE_RESPONSES: dict[int | str, dict[str, str]] = {
    422: {"description": "The path is not an acceptable workspace path; the message names it and says why."},
    502: {"description": "The workspace storage failed or refused the operation (say, wrong S3 credentials)."},
}


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except WorkspacePathError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    except WorkspaceFileNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except WorkspaceStoreError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail=str(exc)) from exc


async def _refresh_registry(registry: Registry) -> None:
    """The write succeeded whatever happens here: a failed rescan is retried by the next poll."""
    try:
        await registry.refresh()
    except WorkspaceStoreError as exc:
        logger.warning("rescanning the workspace after a write failed: %s", exc)


@router.get("/files", responses=_STORE_RESPONSES)
async def list_files(services: ServicesDep, _user: UserDep) -> WorkspaceListing:
    with _store_errors():
        files = await asyncio.to_thread(services.registry.store.list)
    return WorkspaceListing(
        revision=manifest_of(files).revision,
        registry_revision=services.registry.snapshot.revision,
        files=[WorkspaceFileOut.of(f) for f in files],
    )


@router.get("/files/{path:path}", responses={404: {"description": "No such file."}, **_STORE_RESPONSES})
async def read_file(path: str, services: ServicesDep, _user: UserDep) -> Response:
    """The file's bytes, with its ETag."""
    with _store_errors():
        data = await asyncio.to_thread(services.registry.store.read, normalize_workspace_path(path))
    return Response(data, media_type="application/octet-stream", headers={"ETag": f'"{content_etag(data)}"'})


@router.put("/files/{path:path}", responses=_STORE_RESPONSES)
async def write_file(path: str, request: Request, services: ServicesDep, _admin: PlatformAdminDep) -> WorkspaceFileOut:
    """Create or replace one file; the request body is its content, as is."""
    data = await request.body()
    with _store_errors():
        stored = await asyncio.to_thread(services.registry.store.write, normalize_workspace_path(path), data)
    await _refresh_registry(services.registry)
    return WorkspaceFileOut.of(stored)


@router.delete(
    "/files/{path:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "No such file."}, **_STORE_RESPONSES},
)
async def delete_file(path: str, services: ServicesDep, _admin: PlatformAdminDep) -> None:
    with _store_errors():
        await asyncio.to_thread(services.registry.store.delete, normalize_workspace_path(path))
    await _refresh_registry(services.registry)


@router.post("/sync", responses=_STORE_RESPONSES)
async def sync_folder(upload: WorkspaceUpload, services: ServicesDep, _admin: PlatformAdminDep) -> WorkspaceListing:
    """Upload a whole folder as one revision. Every path, and the storage's credentials, are checked before
    anything is written, so a refused upload leaves the workspace as it was."""
    contents = {path: text.encode() for path, text in upload.files.items()}
    with _store_errors():
        manifest = await asyncio.to_thread(
            upload_files, services.registry.store, contents, replace_all=upload.replace_all
        )
        files = await asyncio.to_thread(services.registry.store.list)
    await _refresh_registry(services.registry)
    stored = [WorkspaceFileOut.of(f) for f in files if manifest.files.get(f.path) == f.etag]
    return WorkspaceListing(
        revision=manifest.revision, registry_revision=services.registry.snapshot.revision, files=stored
    )
