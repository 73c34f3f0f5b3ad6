from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml

from bifrost_devtools.k8s_apiserver import ApiServer
from bifrost_devtools.k8s_kubelet import TestKubelet
from control_plane.backends.base import LaunchSpec, RunnerExit
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.settings import Settings

NAMESPACE = "bifrost-runs"
WORKFLOW_RUNS_CRD = Path(__file__).parents[2] / "k8s" / "workflowruns.bifrost.io.yaml"


class Exits:
    """What the backend reported through `on_exit`, to wait for in tests."""

    def __init__(self) -> None:
        self.reported: list[RunnerExit] = []
        self._changed = asyncio.Condition()

    async def __call__(self, runner_exit: RunnerExit) -> None:
        async with self._changed:
            self.reported.append(runner_exit)
            self._changed.notify_all()

    async def of(self, execution_id: str) -> RunnerExit:
        async with asyncio.timeout(60), self._changed:
            await self._changed.wait_for(lambda: any(e.execution_id == execution_id for e in self.reported))
        return next(e for e in self.reported if e.execution_id == execution_id)

    def count(self, execution_id: str) -> int:
        return sum(1 for e in self.reported if e.execution_id == execution_id)


def launch_spec(timeout_seconds: int = 60, **fields: Any) -> LaunchSpec:
    values: dict[str, Any] = {
        "execution_id": str(uuid.uuid4()),
        "workflow_name": "create_user",
        "org_id": "org-1",
        "user_id": "2f1c8f0e-5b7a-4c1e-9d55-0b6f3a1e7c42",
        "trigger": "form",
        "token": f"tok-{uuid.uuid4().hex}",
        "timeout_seconds": timeout_seconds,
        "api_url": "http://bifrost.bifrost.svc:8000",
        "nats_url": "nats://nats.bifrost.svc:4222",
        "workspace_dir": "/workspace",
    }
    values.update(fields)
    return LaunchSpec(**values)


@pytest.fixture
async def apiserver() -> AsyncIterator[ApiServer]:
    async with ApiServer() as server, kmock.Server(server):
        yield server
        # The server's shutdown waits for every request it serves: an open watch would hold it for its timeout.
        server.end_watches()


async def install_crd(apiserver: ApiServer) -> dict[str, Any]:
    """Install the WorkflowRun CRD of k8s/ in the emulated cluster."""
    definition: dict[str, Any] = yaml.safe_load(WORKFLOW_RUNS_CRD.read_text())
    async with apiserver.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=definition) as response:
        assert response.status in (200, 201), await response.text()
    return definition


@pytest.fixture
async def crd(apiserver: ApiServer) -> dict[str, Any]:
    """The WorkflowRun CRD, installed (before a backend starts, when asked for first)."""
    return await install_crd(apiserver)


@pytest.fixture
def kubeconfig(apiserver: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A kubeconfig naming the emulated API server, found the way users point Bifrost at a cluster."""
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulated", "cluster": {"server": str(apiserver.url).rstrip("/")}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "tester"}}],
        "current-context": "emulated",
    }))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield path


@pytest.fixture
async def kubelet(apiserver: ApiServer) -> AsyncIterator[TestKubelet]:
    kubelet = TestKubelet(apiserver)
    await kubelet.start()
    yield kubelet
    await kubelet.stop()


@pytest.fixture
def settings(kubeconfig: Path, tmp_path: Path) -> Settings:
    return Settings(
        backend="kubernetes",
        data_dir=tmp_path,
        workspace_url="s3://bifrost-workspace/runs",
        k8s_namespace=NAMESPACE,
        runner_image="registry.example/bifrost-runner:1.2.3",
        k8s_qps=500,
        k8s_burst=100,
        k8s_api_retry_seconds=30,
        k8s_deadline_grace_seconds=0,
        k8s_pending_timeout_seconds=600,
        k8s_watch_timeout_seconds=30,
        k8s_log_tail_lines=5,
    )


@pytest.fixture
def exits() -> Exits:
    return Exits()


@pytest.fixture
async def backend(settings: Settings, exits: Exits) -> AsyncIterator[KubernetesBackend]:
    backend = KubernetesBackend(settings)
    await backend.start(exits)
    yield backend
    await backend.stop()
