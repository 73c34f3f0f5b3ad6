from __future__ import annotations

import os
from pathlib import Path

import pytest

from bifrost._internal.workspace import content_etag
from bifrost_devtools.s3 import ADMIN_KEY, READER_KEY, READER_SECRET, SeaweedS3
from control_plane.settings import Settings
from control_plane.workspace_store import (
    LocalFolderStore,
    Manifest,
    S3Store,
    StoredFile,
    WorkspaceFileNotFoundError,
    WorkspacePathError,
    WorkspaceStore,
    WorkspaceStoreError,
    diff_manifests,
    open_store,
    store_from_settings,
    upload_files,
)
from tests.storage.conftest import PREFIX

HELLO = b"from bifrost import workflow\n\n@workflow\ndef hello(name: str) -> str:\n    return name\n"


def test_written_files_are_listed_read_and_deleted(store: WorkspaceStore) -> None:
    written = store.write("billing/invoices.py", HELLO)
    store.write("./data/rates.json", b'{"eur": 1}')

    assert written == StoredFile(path="billing/invoices.py", etag=content_etag(HELLO), size=len(HELLO))
    assert store.list() == [
        written,
        StoredFile(path="data/rates.json", etag=content_etag(b'{"eur": 1}'), size=10),
    ]
    assert store.read("billing/invoices.py") == HELLO

    store.delete("billing/invoices.py")
    assert [f.path for f in store.list()] == ["data/rates.json"]
    with pytest.raises(WorkspaceFileNotFoundError, match=r"'billing/invoices.py' does not exist"):
        store.read("billing/invoices.py")
    with pytest.raises(WorkspaceFileNotFoundError):
        store.delete("billing/invoices.py")


def test_the_manifest_changes_with_content_and_names_what_changed(store: WorkspaceStore) -> None:
    store.write("a.py", b"A = 1\n")
    store.write("b.py", b"B = 1\n")
    before = store.manifest()
    assert store.manifest().revision == before.revision

    store.write("a.py", b"A = 2\n")
    store.write("c.py", b"C = 1\n")
    store.delete("b.py")
    after = store.manifest()

    assert after.files == {"a.py": content_etag(b"A = 2\n"), "c.py": content_etag(b"C = 1\n")}
    diff = diff_manifests(before, after)
    assert diff.added == {"c.py"}
    assert diff.changed == {"a.py"}
    assert diff.removed == {"b.py"}


@pytest.mark.parametrize(
    "attack",
    ["../outside.py", "/etc/passwd.txt", "lib/../../../x.py", "lib\\x.py", "x\x00.py", "__pycache__/x.py",
     "x.pyc", ".git/config.txt", "run.sh"],
)  # fmt: skip
def test_path_attacks_are_refused_before_touching_storage(store: WorkspaceStore, attack: str) -> None:
    with pytest.raises(WorkspacePathError):
        store.write(attack, b"print('pwned')\n")
    with pytest.raises(WorkspacePathError):
        store.read(attack)
    with pytest.raises(WorkspacePathError):
        store.delete(attack)
    assert store.list() == []


def test_revisions_are_recorded_in_the_store_and_hidden_from_the_listing(store: WorkspaceStore) -> None:
    store.write("a.py", b"A = 1\n")
    manifest = store.manifest()

    assert store.record_revision(manifest) == manifest.revision
    store.write("a.py", b"A = 2\n")

    assert store.load_revision(manifest.revision) == manifest
    assert [f.path for f in store.list()] == ["a.py"]
    with pytest.raises(WorkspaceFileNotFoundError):
        store.load_revision(Manifest(files={"never.py": "x"}).revision)


def test_uploading_a_folder_writes_one_revision_and_removes_what_it_lacks(store: WorkspaceStore) -> None:
    store.write("old.py", b"OLD = 1\n")
    store.write("keep.py", b"KEEP = 1\n")

    manifest = upload_files(store, {"keep.py": b"KEEP = 1\n", "new/flow.py": HELLO, "new/data.csv": b"a,b\n"})

    assert manifest == store.manifest()
    assert sorted(manifest.files) == ["keep.py", "new/data.csv", "new/flow.py"]
    assert store.load_revision(manifest.revision) == manifest


def test_an_upload_with_one_bad_path_writes_nothing(store: WorkspaceStore) -> None:
    store.write("existing.py", b"X = 1\n")
    before = store.manifest()

    with pytest.raises(WorkspacePathError, match=r"'\.\./escape\.py'"):
        upload_files(store, {"fine.py": b"F = 1\n", "../escape.py": b"E = 1\n"})
    with pytest.raises(WorkspacePathError, match="same file as another entry"):
        upload_files(store, {"dup.py": b"1", "./dup.py": b"2"})

    assert store.manifest() == before


def test_local_folder_edits_show_in_the_manifest(local_store: LocalFolderStore) -> None:
    local_store.write("flow.py", b"VALUE = 1\n")
    first = local_store.manifest()

    # Same size, so only the content tells the edit apart.
    (local_store.root / "flow.py").write_bytes(b"VALUE = 2\n")
    os.utime(local_store.root / "flow.py", ns=(1, 1))

    assert local_store.manifest().files["flow.py"] == content_etag(b"VALUE = 2\n") != first.files["flow.py"]


def test_local_folder_listing_skips_junk_and_symlinks_out_of_the_root(
    local_store: LocalFolderStore, tmp_path: Path
) -> None:
    root = local_store.root
    (root / "flow.py").write_bytes(HELLO)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "flow.cpython-311.pyc").write_bytes(b"\x00")
    (root / ".git").mkdir()
    (root / ".git" / "notes.txt").write_text("x")
    (root / "deploy.sh").write_text("rm -rf /")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (root / "leak.txt").symlink_to(secret)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "module.py").write_text("X = 1\n")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "alias.py").symlink_to(root / "flow.py")

    assert [f.path for f in local_store.list()] == ["alias.py", "flow.py"]
    with pytest.raises(WorkspacePathError, match="symlink on the way leads out of the workspace"):
        local_store.read("leak.txt")
    with pytest.raises(WorkspacePathError, match="symlink on the way leads out of the workspace"):
        local_store.write("linked/module.py", b"X = 2\n")
    assert (outside / "module.py").read_text() == "X = 1\n"


def test_local_delete_removes_emptied_folders(local_store: LocalFolderStore) -> None:
    local_store.write("deep/er/flow.py", HELLO)
    local_store.delete("deep/er/flow.py")
    assert list(local_store.root.iterdir()) == []


def test_a_missing_local_folder_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalFolderStore(tmp_path / "nowhere")
    with pytest.raises(WorkspaceStoreError, match="nowhere does not exist"):
        store.list()
    with pytest.raises(WorkspaceStoreError, match="nowhere does not exist"):
        upload_files(store, {"a.py": b""})


def test_a_direct_bucket_write_shows_in_the_manifest(seaweedfs: SeaweedS3, bucket: str, s3_store: S3Store) -> None:
    s3_store.write("existing.py", HELLO)
    before = s3_store.manifest()
    client = seaweedfs.client()

    client.put_object(Bucket=bucket, Key=f"{PREFIX}/dropped/in.py", Body=b"IN = 1\n")
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/dropped/__pycache__/in.cpython-311.pyc", Body=b"\x00")
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/.DS_Store", Body=b"junk")
    client.put_object(Bucket=bucket, Key="teams/other/not-ours.py", Body=b"NO = 1\n")

    after = s3_store.manifest()
    assert after.files == {"existing.py": content_etag(HELLO), "dropped/in.py": content_etag(b"IN = 1\n")}
    assert diff_manifests(before, after).added == {"dropped/in.py"}

    client.delete_object(Bucket=bucket, Key=f"{PREFIX}/dropped/in.py")
    assert s3_store.manifest() == before


def test_wrong_credentials_are_named_and_nothing_is_half_written(
    seaweedfs: SeaweedS3, bucket: str, s3_store: S3Store
) -> None:
    s3_store.write("existing.py", HELLO)
    before = s3_store.manifest()
    wrong = S3Store(
        bucket, PREFIX, endpoint_url=seaweedfs.endpoint_url, access_key_id=ADMIN_KEY, secret_access_key="wrong"
    )

    with pytest.raises(WorkspaceStoreError, match=f"S3 refused the credentials for bucket '{bucket}'"):
        upload_files(wrong, {"a.py": b"A = 1\n", "b.py": b"B = 1\n", "existing.py": b"X = 2\n"})
    with pytest.raises(WorkspaceStoreError, match="S3 refused the credentials"):
        wrong.write("a.py", b"A = 1\n")
    with pytest.raises(WorkspaceStoreError, match="S3 refused the credentials"):
        wrong.list()

    assert s3_store.manifest() == before


def test_read_only_runner_credentials_can_read_but_not_write(
    seaweedfs: SeaweedS3, bucket: str, s3_store: S3Store
) -> None:
    s3_store.write("flow.py", HELLO)
    reader = S3Store(
        bucket, PREFIX, endpoint_url=seaweedfs.endpoint_url, access_key_id=READER_KEY, secret_access_key=READER_SECRET
    )
    assert reader.read("flow.py") == HELLO
    with pytest.raises(WorkspaceStoreError, match="S3 refused the credentials"):
        reader.write("flow.py", b"X = 1\n")
    with pytest.raises(WorkspaceStoreError, match="S3 refused the credentials"):
        reader.delete("flow.py")
    assert s3_store.read("flow.py") == HELLO


def test_a_missing_bucket_is_a_clear_error(seaweedfs: SeaweedS3) -> None:
    store = S3Store("no-such-bucket", endpoint_url=seaweedfs.endpoint_url, access_key_id=ADMIN_KEY,
                    secret_access_key="bifrost-admin-secret")  # fmt: skip
    with pytest.raises(WorkspaceStoreError, match="the bucket 'no-such-bucket' does not exist"):
        store.list()


def test_settings_open_the_store_they_name(seaweedfs: SeaweedS3, bucket: str, tmp_path: Path) -> None:
    s3_settings = Settings(
        workspace_url=f"s3://{bucket}/{PREFIX}",
        s3_endpoint_url=seaweedfs.endpoint_url,
        s3_access_key_id=ADMIN_KEY,
        s3_secret_access_key="bifrost-admin-secret",
    )
    s3 = store_from_settings(s3_settings)
    s3.write("flow.py", HELLO)
    assert seaweedfs.client().get_object(Bucket=bucket, Key=f"{PREFIX}/flow.py")["Body"].read() == HELLO

    folder = open_store(f"file://{tmp_path}")
    folder.write("flow.py", HELLO)
    assert (tmp_path / "flow.py").read_bytes() == HELLO
    assert isinstance(open_store(str(tmp_path)), LocalFolderStore)


def test_the_same_files_are_the_same_revision_in_a_folder_and_in_a_bucket(
    local_store: LocalFolderStore, s3_store: S3Store
) -> None:
    files = {"flow.py": HELLO, "data/rates.json": b'{"eur": 1}', "docs/README.md": b"# Flows\n"}
    assert upload_files(local_store, files).revision == upload_files(s3_store, files).revision
    assert local_store.manifest() == s3_store.manifest()
