"""A folder keeps the files of its recorded revisions, so a runner syncs exactly a pinned revision after the
folder was edited, and old copies are pruned once no recent revision needs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bifrost._internal.workspace import KEPT_FILES_DIR, Manifest, RevisionChangedError, content_etag
from bifrost_runner.sync import WorkspaceSyncError, sync_revision, sync_workspace
from bifrost_runner.workspace_source import LocalFolderSource
from control_plane.workspace_store import LocalFolderStore
from tests.storage.test_runner_sync import FAST_RETRY, cached_files


def edit(store: LocalFolderStore, files: dict[str, bytes]) -> Manifest:
    """Change the folder behind the store's back, as an editor does, then record the revision, as the registry
    does when it polls."""
    for path, data in files.items():
        target = store.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    manifest = store.manifest()
    store.record_revision(manifest)
    return manifest


def kept(store: LocalFolderStore) -> set[str]:
    return {path.name for path in (store.root / KEPT_FILES_DIR).iterdir()}


@pytest.fixture
def store(tmp_path: Path) -> LocalFolderStore:
    (tmp_path / "workspace").mkdir()
    return LocalFolderStore(tmp_path / "workspace", kept_revisions=2)


def test_a_pinned_revision_syncs_its_old_content_after_the_folder_changed(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    old_files = {"flows/report.py": b"TITLE = 'v1'\n", "flows/rates.csv": b"eur,1.0\n"}
    old = edit(store, old_files)
    edit(store, {"flows/report.py": b"TITLE = 'v2'\n"})
    (store.root / "flows" / "rates.csv").unlink()

    report = sync_workspace(LocalFolderSource(store.root), old.revision, tmp_path / "cache")

    assert report.revision == old.revision
    assert cached_files(tmp_path / "cache") == old_files
    assert kept(store) == {content_etag(b"TITLE = 'v1'\n"), content_etag(b"TITLE = 'v2'\n"), content_etag(b"eur,1.0\n")}
    assert store.manifest().files.keys() == {"flows/report.py"}  # the kept copies are no workspace files


def test_copies_no_recent_revision_needs_are_pruned_and_their_runs_fail_clearly(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    shared = b"SHARED = True\n"
    first = edit(store, {"shared.py": shared, "flow.py": b"V = 1\n"})
    edit(store, {"flow.py": b"V = 2\n"})
    assert kept(store) == {content_etag(shared), content_etag(b"V = 1\n"), content_etag(b"V = 2\n")}

    third = edit(store, {"flow.py": b"V = 3\n"})  # two revisions are kept: the first one's V = 1 goes

    assert kept(store) == {content_etag(shared), content_etag(b"V = 2\n"), content_etag(b"V = 3\n")}
    with pytest.raises(WorkspaceSyncError, match=f"revision {first.revision} could not be synced") as caught:
        sync_revision(LocalFolderSource(store.root), first, tmp_path / "cache", retry=FAST_RETRY)
    assert isinstance(caught.value.__cause__, RevisionChangedError)
    assert "'flow.py' changed in folder" in str(caught.value)
    assert "no longer keeps its version" in str(caught.value)
    sync_revision(LocalFolderSource(store.root), third, tmp_path / "cache")
    assert cached_files(tmp_path / "cache") == {"shared.py": shared, "flow.py": b"V = 3\n"}


def test_recording_an_older_revision_again_keeps_its_files(store: LocalFolderStore, tmp_path: Path) -> None:
    first = edit(store, {"flow.py": b"V = 1\n"})
    edit(store, {"flow.py": b"V = 2\n"})
    edit(store, {"flow.py": b"V = 1\n"})  # reverted: the first revision is current again
    edit(store, {"flow.py": b"V = 3\n"})

    (store.root / "flow.py").write_bytes(b"V = 4\n")
    sync_revision(LocalFolderSource(store.root), first, tmp_path / "cache")
    assert cached_files(tmp_path / "cache") == {"flow.py": b"V = 1\n"}


def test_a_tampered_kept_copy_is_refused_by_its_etag(store: LocalFolderStore, tmp_path: Path) -> None:
    old = edit(store, {"flow.py": b"V = 1\n"})
    edit(store, {"flow.py": b"V = 2\n"})
    (store.root / KEPT_FILES_DIR / content_etag(b"V = 1\n")).write_bytes(b"V = 'tampered'\n")

    with pytest.raises(WorkspaceSyncError, match=r"'flow\.py' changed in folder"):
        sync_revision(LocalFolderSource(store.root), old, tmp_path / "cache", retry=FAST_RETRY)
    assert not (tmp_path / "cache" / "flow.py").exists()


def test_a_file_edited_between_listing_and_recording_is_kept_as_listed(store: LocalFolderStore) -> None:
    (store.root / "flow.py").write_bytes(b"V = 1\n")
    listed = store.manifest()
    (store.root / "flow.py").write_bytes(b"V = 2\n")

    store.record_revision(listed)

    assert (store.root / KEPT_FILES_DIR / listed.files["flow.py"]).read_bytes() == b"V = 1\n"
    assert store.read_version("flow.py", listed.files["flow.py"]) is None  # the listed content went with the record


def test_a_file_edited_since_another_store_listed_it_is_not_kept_under_the_wrong_etag(
    store: LocalFolderStore,
) -> None:
    (store.root / "flow.py").write_bytes(b"V = 1\n")
    listed = store.manifest()
    (store.root / "flow.py").write_bytes(b"V = 2\n")
    restarted = LocalFolderStore(store.root)

    assert restarted.read_version("flow.py", listed.files["flow.py"]) is None
    restarted.record_revision(listed)

    assert not (store.root / KEPT_FILES_DIR / listed.files["flow.py"]).exists()


def test_a_store_must_keep_at_least_one_revision(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1 revision, not 0"):
        LocalFolderStore(tmp_path, kept_revisions=0)
