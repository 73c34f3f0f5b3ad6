"""Upload many files as one revision of the workspace (a whole folder from the CLI or the API)."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from bifrost._internal.workspace import Manifest, WorkspacePathError, content_etag, normalize_workspace_path
from control_plane.workspace_store.base import WorkspaceStore


def upload_files(store: WorkspaceStore, files: Mapping[str, bytes], *, replace_all: bool = True) -> Manifest:
    """Write `files` (path -> content) into the store and record the resulting revision.

    Every path is checked, and the store's credentials with it, before anything is written, so bad input
    leaves the workspace as it was. Files whose content is already stored are not sent again. With
    `replace_all`, stored files missing from `files` are deleted, after all uploads succeeded.
    """
    wanted: dict[str, bytes] = {}
    for raw, data in files.items():
        path = normalize_workspace_path(raw)
        if path in wanted:
            raise WorkspacePathError(raw, f"it names the same file as another entry ({path!r})")
        wanted[path] = data
    store.check_writable()
    stored = {f.path: f.etag for f in store.list()}
    changed = [path for path, data in wanted.items() if stored.get(path) != content_etag(data)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        written = {f.path: f.etag for f in pool.map(lambda path: store.write(path, wanted[path]), changed)}
    kept = {path: etag for path, etag in stored.items() if path in wanted or not replace_all}
    for path in stored.keys() - kept.keys():
        store.delete(path)
    manifest = Manifest(files={**kept, **written})
    store.record_revision(manifest)
    return manifest
