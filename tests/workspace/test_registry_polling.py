"""The registry on an S3 workspace polls cheaply: one listing per poll, and only changed files are read (once,
for discovery and the revision's archive together)."""

from __future__ import annotations

from pathlib import Path

from bifrost_devtools.s3 import ADMIN_KEY, ADMIN_SECRET, SeaweedS3
from control_plane.db.migrate import upgrade_database
from control_plane.db.session import make_engine
from control_plane.registry import Registry
from control_plane.workspace_store import S3Store, StoredFile
from tests.workspace.conftest import PREFIX, new_bucket


class ReadCountingStore(S3Store):
    """The real S3 store, counting its listings and the files it is asked to read."""

    reads: list[str]
    listings = 0

    def list(self) -> list[StoredFile]:
        self.listings += 1
        return super().list()

    def read(self, path: str) -> bytes:
        self.reads.append(path)
        return super().read(path)


def flow(name: str) -> bytes:
    return f"from bifrost import workflow\n\n\n@workflow\ndef {name}() -> str:\n    return {name!r}\n".encode()


def test_a_poll_lists_once_and_reads_only_what_changed(seaweedfs: SeaweedS3, tmp_path: Path) -> None:
    bucket = new_bucket(seaweedfs)
    client = seaweedfs.client()
    for index in range(5):
        client.put_object(Bucket=bucket, Key=f"{PREFIX}/flows/f{index}.py", Body=flow(f"f{index}"))
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/flows/data.csv", Body=b"a,b\n")
    store = ReadCountingStore(
        bucket, PREFIX, endpoint_url=seaweedfs.endpoint_url, access_key_id=ADMIN_KEY, secret_access_key=ADMIN_SECRET
    )
    store.reads = []
    db = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    upgrade_database(db)
    registry = Registry(store, db)

    assert registry.rescan()
    # Each file once: the Python files for discovery, the others for the revision's archive
    assert sorted(store.reads) == ["flows/data.csv", *(f"flows/f{index}.py" for index in range(5))]
    store.reads.clear()

    listings = store.listings
    assert not registry.rescan()  # nothing changed: one listing says so
    assert (store.listings - listings, store.reads) == (1, [])

    client.put_object(Bucket=bucket, Key=f"{PREFIX}/flows/f2.py", Body=flow("renamed"))
    client.delete_object(Bucket=bucket, Key=f"{PREFIX}/flows/f4.py")
    assert registry.rescan()
    assert store.reads == ["flows/f2.py"]
    assert set(registry.snapshot.workflows) == {"f0", "f1", "f3", "renamed"}
    assert registry.snapshot.revision == store.manifest().revision
