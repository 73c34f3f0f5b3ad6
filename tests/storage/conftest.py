from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bifrost_devtools.s3 import ADMIN_KEY, ADMIN_SECRET, SeaweedS3
from control_plane.workspace_store import LocalFolderStore, S3Store, WorkspaceStore

PREFIX = "teams/ops"


@pytest.fixture
def bucket(seaweedfs: SeaweedS3) -> str:
    return seaweedfs.create_bucket(f"ws-{uuid.uuid4().hex[:12]}")


def admin_store(server: SeaweedS3, bucket: str) -> S3Store:
    return S3Store(
        bucket, PREFIX, endpoint_url=server.endpoint_url, access_key_id=ADMIN_KEY, secret_access_key=ADMIN_SECRET
    )


@pytest.fixture
def s3_store(seaweedfs: SeaweedS3, bucket: str) -> S3Store:
    return admin_store(seaweedfs, bucket)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalFolderStore:
    root = tmp_path / "workspace"
    root.mkdir()
    return LocalFolderStore(root, kept_revisions=1)  # like an unversioned bucket: no earlier versions kept


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> WorkspaceStore:
    """Each contract test runs against both implementations."""
    chosen: WorkspaceStore = request.getfixturevalue(f"{request.param}_store")
    return chosen
