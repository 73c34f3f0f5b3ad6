from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from bifrost_devtools.s3 import ADMIN_KEY, ADMIN_SECRET, READER_KEY, READER_SECRET, SeaweedS3
from bifrost_devtools.services import running_nats
from tests.api.conftest import Bifrost, eventually, make_settings, serving

PREFIX = "teams/ops"


def s3_overrides(server: SeaweedS3, bucket: str, **credentials: Any) -> dict[str, Any]:
    """Settings of a control plane on `bucket`: admin credentials for itself, read-only ones for its runners."""
    return {
        "workspace_url": f"s3://{bucket}/{PREFIX}",
        "s3_endpoint_url": server.endpoint_url,
        "s3_access_key_id": ADMIN_KEY,
        "s3_secret_access_key": SecretStr(ADMIN_SECRET),
        "s3_runner_access_key_id": READER_KEY,
        "s3_runner_secret_access_key": SecretStr(READER_SECRET),
        **credentials,
    }


def shared_folder(tmp: Path) -> Path:
    """A folder that tests and the sandboxed runners (each a user of its own under a root control plane) share."""
    folder = tmp / "shared"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o1777)
    return folder


def runner_cache(bifrost: Bifrost) -> Path:
    """The runners' workspace cache, which they share."""
    return Path(bifrost.settings.runner_workspace_cache_dir or "")


@contextmanager
def running_bifrost(tmp: Path, **overrides: Any) -> Iterator[Bifrost]:
    """The real control plane (SQLite, NATS, the local backend) on the workspace `overrides` name, its runners
    caching revisions in a folder of their own."""
    tmp.mkdir(parents=True, exist_ok=True)
    with running_nats(tmp) as nats:
        settings = make_settings(
            tmp,
            f"sqlite:///{tmp / 'bifrost.db'}",
            nats.url,
            runner_workspace_cache_dir=str(tmp / "runner-cache"),
            local_sandbox_paths=[shared_folder(tmp)],
            **overrides,
        )
        with serving(settings) as url:
            yield Bifrost(url=url, settings=settings, workspace=tmp / "workspace")


def new_bucket(server: SeaweedS3, *, versioned: bool = False) -> str:
    return server.create_bucket(f"ws-{uuid.uuid4().hex[:12]}", versioned=versioned)


def wait_running(api: httpx.Client, execution_id: str) -> None:
    """Until the execution's runner has synced its revision and started the workflow."""
    eventually(
        lambda: api.get(f"/api/executions/{execution_id}").json()["status"] == "Running",
        within=60,
        what=f"execution {execution_id} to start",
    )


def workflow_names(api: httpx.Client) -> set[str]:
    response = api.get("/api/workflows")
    assert response.status_code == 200, response.text
    return {workflow["name"] for workflow in response.json()}


def registry_revision(api: httpx.Client) -> str | None:
    """The revision new executions are pinned to."""
    revision: str | None = api.get("/api/workspace/files").json()["registry_revision"]
    return revision
