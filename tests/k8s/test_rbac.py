"""The Role of the chart and of k8s/ against the calls the kubernetes backend really makes: every call it makes
through an execution's life (launched twice, run, failed with its log read, killed, its end written onto its Job
and WorkflowRun, its WorkflowRun deleted once expired) is granted, and nothing else."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest

from bifrost._internal.protocol import ExecutionStatus
from bifrost_devtools.k8s_apiserver import ApiServer
from bifrost_devtools.k8s_kubelet import TestKubelet
from control_plane.backends.base import RunEnd
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.backends.kubernetes_spec import job_name
from control_plane.settings import Settings
from tests.k8s.conftest import NAMESPACE, Exits, launch_spec
from tests.k8s.test_deploy import granted, plain_manifests, render
from tests.k8s.test_workflow_runs import WORKFLOW_RUNS

# The token the backend's kubeconfig holds (see conftest); the test kubelet's own requests carry none.
BACKEND_TOKEN = "Bearer test-token"
# What a set blockOwnerDeletion owner reference needs where the API server enforces owner references (which the
# emulator does not): the right to update the owner's finalizers.
OWNER_REFERENCE_RIGHTS = {("batch", "jobs/finalizers", "update"), ("bifrost.io", "workflowruns/finalizers", "update")}


def verb(request: kmock.Request) -> str:
    if request.method == kmock.method.GET:
        if request.name:
            return "get"
        return "watch" if request.params.get("watch") in ("true", "1") else "list"
    return {
        kmock.method.POST: "create",
        kmock.method.PATCH: "patch",
        kmock.method.PUT: "update",
        kmock.method.DELETE: "delete",
    }[request.method]


def calls_made(apiserver: ApiServer) -> set[tuple[str, str, str]]:
    made = set()
    for method in kmock.method:
        for request in apiserver[method]:
            if request.headers.get("Authorization") != BACKEND_TOKEN or request.resource is None:
                continue
            resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
            made.add((request.resource.group or "", resource, verb(request)))
    return made


@pytest.fixture
async def backend_calls(
    crd: dict[str, Any],
    backend: KubernetesBackend,
    settings: Settings,
    kubelet: TestKubelet,
    apiserver: ApiServer,
    exits: Exits,
) -> set[tuple[str, str, str]]:
    succeeding, failing, killed = launch_spec(), launch_spec(), launch_spec()
    kubelet.scripts[succeeding.execution_id] = "print('done')"
    kubelet.scripts[failing.execution_id] = "import sys; print('step 1'); sys.exit('broken')"
    kubelet.scripts[killed.execution_id] = "import time; print('working', flush=True); time.sleep(120)"
    other = KubernetesBackend(settings.model_copy(update={"k8s_workflow_run_ttl_seconds": 1}))
    await other.start(exits)
    try:
        await asyncio.gather(backend.launch(succeeding), other.launch(succeeding))
        await backend.launch(failing)
        await backend.launch(killed)
        await exits.of(succeeding.execution_id)
        assert (await exits.of(failing.execution_id)).log_tail
        await backend.kill(killed.execution_id)
        await exits.of(killed.execution_id)
        await backend.run_ended(RunEnd(execution_id=failing.execution_id, status=ExecutionStatus.FAILED))
        long_ago = datetime.now(UTC) - timedelta(days=30)
        await other.run_ended(RunEnd(execution_id=succeeding.execution_id, status=ExecutionStatus.SUCCESS,
                                     started_at=long_ago, finished_at=long_ago))
        expired = job_name(succeeding.execution_id)
        await apiserver.wait_until(lambda: apiserver.object(WORKFLOW_RUNS, NAMESPACE, expired) is None)
    finally:
        await other.stop()
    return calls_made(apiserver)


@pytest.mark.parametrize("source", ["plain", "chart"])
def test_the_role_grants_exactly_the_calls_the_backend_makes(
    source: str, backend_calls: set[tuple[str, str, str]]
) -> None:
    docs = plain_manifests() if source == "plain" else render({})
    assert granted(docs) == backend_calls | OWNER_REFERENCE_RIGHTS
