"""A revision recorded in S3 is also kept as one archive: a runner with an empty cache fetches that one object,
and falls back to the files one by one, saying why, when the archive is missing or damaged."""

from __future__ import annotations

import io
import logging
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bifrost._internal.workspace import revision_archive_path
from bifrost_devtools.s3 import READER_KEY, READER_SECRET, SeaweedS3
from bifrost_runner.sync import sync_revision
from bifrost_runner.workspace_source import LocalFolderSource, S3Source
from control_plane.workspace_store import LocalFolderStore, S3Store, upload_files
from tests.storage.conftest import PREFIX
from tests.storage.test_runner_sync import cached_files, workspace_files


def runner_source(server: SeaweedS3, bucket: str) -> S3Source:
    return S3Source(
        bucket, PREFIX, endpoint_url=server.endpoint_url, access_key_id=READER_KEY, secret_access_key=READER_SECRET
    )


def archive_key(revision: str) -> str:
    return f"{PREFIX}/{revision_archive_path(revision)}"


def stored_archive(server: SeaweedS3, bucket: str, revision: str) -> dict[str, bytes]:
    data = server.client().get_object(Bucket=bucket, Key=archive_key(revision))["Body"].read()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_a_recorded_revision_is_archived_once_and_an_empty_cache_uses_it(
    s3_store: S3Store, seaweedfs: SeaweedS3, bucket: str, tmp_path: Path
) -> None:
    files = workspace_files()
    manifest = upload_files(s3_store, files)
    assert stored_archive(seaweedfs, bucket, manifest.revision) == files
    key = archive_key(manifest.revision)
    written = seaweedfs.client().head_object(Bucket=bucket, Key=key)["LastModified"]

    s3_store.record_revision(manifest)  # recorded again: the archive is not written again
    assert seaweedfs.client().head_object(Bucket=bucket, Key=key)["LastModified"] == written

    cache = tmp_path / "cache"
    (cache / "team0").mkdir(parents=True)
    (cache / "team0" / "flow_0.py").write_bytes(b"VALUE = 'left by a crashed sync'\n")  # not in the index
    cold = sync_revision(runner_source(seaweedfs, bucket), manifest, cache)
    assert cold.from_archive
    assert (cold.downloaded, cold.reused) == (len(files), 0)
    assert cached_files(cache) == files

    changed = {**files, "team1/flow_1.py": b"VALUE = 'changed'\n"}
    second = upload_files(s3_store, changed)
    assert stored_archive(seaweedfs, bucket, second.revision) == changed
    warm = sync_revision(runner_source(seaweedfs, bucket), second, cache)
    assert not warm.from_archive
    assert (warm.downloaded, warm.reused) == (1, len(files) - 1)
    assert cached_files(cache) == changed


def test_an_empty_cache_gets_a_pinned_revision_from_its_archive_after_a_file_changed(
    s3_store: S3Store, seaweedfs: SeaweedS3, bucket: str, tmp_path: Path
) -> None:
    files = workspace_files(6)
    old = upload_files(s3_store, files)
    upload_files(s3_store, {**files, "team1/flow_1.py": b"VALUE = 'new'\n"})  # an unversioned bucket

    report = sync_revision(runner_source(seaweedfs, bucket), old, tmp_path / "cache")
    assert report.from_archive
    assert cached_files(tmp_path / "cache") == files


def test_a_missing_archive_means_the_files_one_by_one_with_a_warning(
    s3_store: S3Store, seaweedfs: SeaweedS3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = workspace_files(6)
    manifest = upload_files(s3_store, files)
    seaweedfs.client().delete_object(Bucket=bucket, Key=archive_key(manifest.revision))

    with caplog.at_level(logging.WARNING, logger="bifrost_runner.sync"):
        report = sync_revision(runner_source(seaweedfs, bucket), manifest, tmp_path / "cache")
    assert not report.from_archive
    assert cached_files(tmp_path / "cache") == files
    assert f"revision {manifest.revision[:12]} has no archive" in caplog.text


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data, files: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data, files: b"not a zip archive at all", id="garbage"),
        pytest.param(
            lambda data, files: zipped({**files, "team0/flow_0.py": b"VALUE = 'forged'\n"}), id="another-version"
        ),
        pytest.param(lambda data, files: zipped({"team0/flow_0.py": files["team0/flow_0.py"]}), id="files-missing"),
        pytest.param(lambda data, files: with_member_byte_flipped(data), id="member-corrupted"),
    ],
)
def test_a_damaged_archive_is_refused_and_the_files_fetched_one_by_one(
    damage: Callable[[bytes, dict[str, bytes]], bytes],
    s3_store: S3Store,
    seaweedfs: SeaweedS3,
    bucket: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = workspace_files(6)
    manifest = upload_files(s3_store, files)
    key = archive_key(manifest.revision)
    original = seaweedfs.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    seaweedfs.client().put_object(Bucket=bucket, Key=key, Body=damage(original, files))

    with caplog.at_level(logging.WARNING, logger="bifrost_runner.sync"):
        report = sync_revision(runner_source(seaweedfs, bucket), manifest, tmp_path / "cache")
    assert not report.from_archive
    assert report.downloaded == len(files)
    assert cached_files(tmp_path / "cache") == files
    assert f"archive of revision {manifest.revision[:12]}" in caplog.text


def test_a_folder_workspace_keeps_no_archive_and_syncs_file_by_file(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "workspace")
    (tmp_path / "workspace").mkdir()
    files = workspace_files(6)
    manifest = upload_files(store, files)
    assert not (tmp_path / "workspace" / revision_archive_path(manifest.revision)).exists()
    report = sync_revision(LocalFolderSource(store.root), manifest, tmp_path / "cache")
    assert not report.from_archive
    assert cached_files(tmp_path / "cache") == files


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def with_member_byte_flipped(data: bytes) -> bytes:
    """`data` with one byte of its last member's compressed content inverted; the zip's structure stays intact."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = archive.infolist()[-1]
    name_length, extra_length = struct.unpack_from("<HH", data, member.header_offset + 26)
    at = member.header_offset + 30 + name_length + extra_length + member.compress_size // 2
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
