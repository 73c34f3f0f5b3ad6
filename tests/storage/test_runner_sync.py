from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bifrost._internal.workspace import Manifest, RevisionChangedError
from bifrost_devtools.s3 import READER_KEY, READER_SECRET, SeaweedS3, running_seaweedfs
from bifrost_runner.sync import INDEX_FILE, LOCK_FILE, RetryPolicy, WorkspaceSyncError, sync_revision, sync_workspace
from bifrost_runner.workspace_source import LocalFolderSource, RevisionSource, S3Source, open_source
from control_plane.workspace_store import LocalFolderStore, WorkspaceStore, upload_files
from tests.storage.conftest import PREFIX, admin_store

FAST_RETRY = RetryPolicy(attempts=2, first_delay=0.05)


def workspace_files(count: int = 24) -> dict[str, bytes]:
    files = {f"team{i % 4}/flow_{i}.py": f"VALUE = {i}\n".encode() for i in range(count)}
    files["data/rates.json"] = b'{"eur": 1.0}\n'
    files["data/Q1 report (draft) + notes.csv"] = b"region,total\nemea,12\n"
    return files


def cached_files(cache: Path) -> dict[str, bytes]:
    return {
        p.relative_to(cache).as_posix(): p.read_bytes()
        for p in cache.rglob("*")
        if p.is_file() and p.name not in (INDEX_FILE, LOCK_FILE) and "__pycache__" not in p.parts
    }


def runner_source(server: SeaweedS3, bucket: str) -> S3Source:
    """What a runner gets: the read-only identity."""
    return S3Source(
        bucket, PREFIX, endpoint_url=server.endpoint_url, access_key_id=READER_KEY, secret_access_key=READER_SECRET
    )


@pytest.fixture(params=["local", "s3"])
def store_and_source(request: pytest.FixtureRequest) -> tuple[WorkspaceStore, RevisionSource]:
    if request.param == "local":
        local: LocalFolderStore = request.getfixturevalue("local_store")
        return local, LocalFolderSource(local.root)
    server: SeaweedS3 = request.getfixturevalue("seaweedfs")
    bucket: str = request.getfixturevalue("bucket")
    return admin_store(server, bucket), runner_source(server, bucket)


def test_an_empty_cache_gets_every_file_and_a_warm_one_only_the_changes(
    store_and_source: tuple[WorkspaceStore, RevisionSource], tmp_path: Path
) -> None:
    store, source = store_and_source
    files = workspace_files()
    first = upload_files(store, files)
    cache = tmp_path / "cache"

    cold = sync_revision(source, first, cache)
    assert (cold.revision, cold.downloaded, cold.reused) == (first.revision, len(files), 0)
    assert cached_files(cache) == files

    warm = sync_revision(source, first, cache)
    assert (warm.downloaded, warm.reused, warm.removed) == (0, len(files), 0)

    changed = {**files, "team1/flow_1.py": b"VALUE = 'changed'\n", "new.py": b"NEW = 1\n"}
    del changed["data/rates.json"]
    second = upload_files(store, changed)
    update = sync_revision(source, second, cache)
    assert (update.downloaded, update.reused, update.removed) == (2, len(files) - 2, 1)
    assert cached_files(cache) == changed


def test_what_an_earlier_run_left_in_the_cache_is_undone(
    store_and_source: tuple[WorkspaceStore, RevisionSource], tmp_path: Path
) -> None:
    store, source = store_and_source
    files = workspace_files(8)
    manifest = upload_files(store, files)
    cache = tmp_path / "cache"
    sync_revision(source, manifest, cache)

    # An earlier workflow wrote output, edited a module, swapped one for a symlink, replaced a folder.
    (cache / "report.csv").write_text("leftover")
    (cache / "team0" / "flow_0.py").write_text("VALUE = 'tampered'  # longer than before\n")
    (cache / "team1" / "flow_1.py").unlink()
    (cache / "team1" / "flow_1.py").symlink_to(tmp_path)
    (cache / "team2" / "__pycache__").mkdir()
    (cache / "team2" / "__pycache__" / "flow_2.cpython-311.pyc").write_bytes(b"\x00")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name in ("flow_3.py", "flow_7.py"):
        (cache / "team3" / name).rename(outside / name)
    (cache / "team3").rmdir()
    (cache / "team3").symlink_to(outside, target_is_directory=True)

    report = sync_revision(source, manifest, cache)

    assert cached_files(cache) == files
    assert not (cache / "team3").is_symlink()
    assert (cache / "team2" / "__pycache__" / "flow_2.cpython-311.pyc").exists()
    assert report.downloaded == 4


def test_an_unreadable_cache_index_means_fetching_everything_again(
    store_and_source: tuple[WorkspaceStore, RevisionSource], tmp_path: Path
) -> None:
    store, source = store_and_source
    files = workspace_files(5)
    manifest = upload_files(store, files)
    cache = tmp_path / "cache"
    sync_revision(source, manifest, cache)
    (cache / INDEX_FILE).write_text("{garbage")

    report = sync_revision(source, manifest, cache)

    assert (report.downloaded, report.reused) == (len(files), 0)
    assert cached_files(cache) == files


def test_a_recorded_revision_is_synced_by_its_id(
    store_and_source: tuple[WorkspaceStore, RevisionSource], tmp_path: Path
) -> None:
    store, source = store_and_source
    manifest = upload_files(store, workspace_files(3))

    report = sync_workspace(source, manifest.revision, tmp_path / "cache")

    assert report.revision == manifest.revision
    never_recorded = Manifest(files={"x.py": "0"}).revision
    with pytest.raises(WorkspaceSyncError, match=f"revision {never_recorded} was never recorded"):
        sync_workspace(source, never_recorded, tmp_path / "cache")


def test_a_pinned_revision_comes_back_exactly_from_a_versioned_bucket(seaweedfs: SeaweedS3, tmp_path: Path) -> None:
    bucket = seaweedfs.create_bucket("pinned-versioned", versioned=True)
    store = admin_store(seaweedfs, bucket)
    old_files = workspace_files(6)
    old = upload_files(store, old_files)

    # The workspace moves on while the execution that was dispatched with `old` waits for its runner.
    upload_files(store, {**old_files, "team1/flow_1.py": b"VALUE = 'new'\n", "team2/flow_2.py": b"X = 2\n"})
    store.delete("team3/flow_3.py")

    report = sync_revision(runner_source(seaweedfs, bucket), old, tmp_path / "cache")

    assert report.downloaded == len(old_files)
    assert cached_files(tmp_path / "cache") == old_files


def test_a_pinned_revision_that_is_gone_fails_clearly_instead_of_running_a_mix(
    store_and_source: tuple[WorkspaceStore, RevisionSource], tmp_path: Path
) -> None:
    store, source = store_and_source
    files = workspace_files(12)
    old = upload_files(store, files)
    new_files = {**files, "team1/flow_1.py": b"VALUE = 'new'\n"}
    current = upload_files(store, new_files)
    cache = tmp_path / "cache"
    sync_revision(source, current, cache)  # a cache that holds files: the old revision is synced file by file

    with pytest.raises(WorkspaceSyncError, match=f"revision {old.revision} could not be synced") as caught:
        sync_revision(source, old, cache, retry=FAST_RETRY)

    assert isinstance(caught.value.__cause__, RevisionChangedError)
    assert "'team1/flow_1.py' changed" in str(caught.value)
    # The next execution, dispatched with the current revision, gets exactly that one.
    sync_revision(source, current, cache)
    assert cached_files(cache) == new_files


def test_refused_runner_credentials_fail_at_once_with_a_clear_message(
    seaweedfs: SeaweedS3, bucket: str, tmp_path: Path
) -> None:
    manifest = upload_files(admin_store(seaweedfs, bucket), workspace_files(4))
    source = S3Source(bucket, PREFIX, endpoint_url=seaweedfs.endpoint_url, access_key_id=READER_KEY,
                      secret_access_key="not-the-secret")  # fmt: skip

    with pytest.raises(WorkspaceSyncError, match=f"S3 refused the runner's credentials for bucket '{bucket}'"):
        sync_revision(source, manifest, tmp_path / "cache", retry=RetryPolicy(attempts=10, first_delay=5))


@pytest.fixture
def disposable_seaweedfs(tmp_path: Path) -> Iterator[SeaweedS3]:
    """A server of its own, for the tests that take S3 down."""
    with running_seaweedfs(tmp_path / "seaweedfs") as server:
        yield server


def test_s3_down_during_a_sync_is_retried_then_fails_clearly(
    disposable_seaweedfs: SeaweedS3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = disposable_seaweedfs
    bucket = server.create_bucket("flows")
    files = workspace_files(10)
    manifest = upload_files(admin_store(server, bucket), files)
    source = runner_source(server, bucket)
    cache = tmp_path / "cache"

    server.stop()
    with pytest.raises(WorkspaceSyncError, match=f"cannot reach {source.description}") as caught:
        sync_revision(source, manifest, cache, retry=RetryPolicy(attempts=3, first_delay=0.05))
    assert "gave up after 3 attempts" in str(caught.value)
    assert any("retrying" in r.message for r in caplog.records if r.levelno == logging.WARNING)
    assert cached_files(cache) == {}

    server.start()
    assert sync_revision(source, manifest, cache).downloaded == len(files)
    assert cached_files(cache) == files


class _RestartOnFirstRetry(logging.Handler):
    """Brings S3 back as soon as the sync reports its first failed attempt: an outage in mid-sync."""

    def __init__(self, server: SeaweedS3) -> None:
        super().__init__(logging.WARNING)
        self.server = server
        self.restarts = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage() and self.restarts == 0:
            self.restarts += 1
            self.server.start()


def test_s3_back_within_the_retries_completes_the_sync(disposable_seaweedfs: SeaweedS3, tmp_path: Path) -> None:
    server = disposable_seaweedfs
    bucket = server.create_bucket("flows")
    files = workspace_files(40)
    store = admin_store(server, bucket)
    first = upload_files(store, files)
    cache = tmp_path / "cache"
    source = runner_source(server, bucket)
    sync_revision(source, first, cache)
    changed = {**files, **{f"team0/flow_{i}.py": b"VALUE = 'v2'\n" for i in range(0, 40, 4)}}
    second = upload_files(store, changed)

    server.stop()
    restarter = _RestartOnFirstRetry(server)
    logging.getLogger("bifrost_runner.sync").addHandler(restarter)
    try:
        report = sync_revision(source, second, cache, retry=RetryPolicy(attempts=6, first_delay=0.5))
    finally:
        logging.getLogger("bifrost_runner.sync").removeHandler(restarter)

    assert restarter.restarts == 1
    assert (report.downloaded, report.reused) == (10, len(changed) - 10)
    assert cached_files(cache) == changed


def test_sources_are_opened_from_the_workspace_url(seaweedfs: SeaweedS3, bucket: str, tmp_path: Path) -> None:
    stored = admin_store(seaweedfs, bucket).write("flow.py", b"F = 1\n")
    LocalFolderStore(tmp_path).write("flow.py", b"F = 1\n")

    s3 = open_source(
        f"s3://{bucket}/{PREFIX}",
        s3_endpoint_url=seaweedfs.endpoint_url,
        s3_access_key_id=READER_KEY,
        s3_secret_access_key=READER_SECRET,
    )
    folder = open_source(f"file://{tmp_path}")

    assert s3.fetch("flow.py", stored.etag) == folder.fetch("flow.py", stored.etag) == b"F = 1\n"
