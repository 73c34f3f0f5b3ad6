from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bifrost_devtools.s3 import SeaweedS3, running_seaweedfs
from bifrost_devtools.services import NatsServer, running_nats, running_postgres


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real S3 server (SeaweedFS) shared by the session; each test makes its own bucket."""
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
