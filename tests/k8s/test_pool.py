"""Warm runners on the kubernetes backend: sync runs take waiting pool pods (one run each), the pool refills,
pods that wait too long are replaced, a restarted control plane replaces the pods it finds waiting, and a pool
size of 0 gives every run a Job of its own. A pool run has its WorkflowRun, owning the pool pod's Job, and its end
is written onto that Job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import nats
import pytest
from nats.errors import NoRespondersError
from pydantic import ValidationError

from bifrost._internal.protocol import PoolClaim, pool_subject
from bifrost_devtools.k8s_apiserver import JOBS, PODS, SECRETS, ApiServer
from bifrost_devtools.k8s_kubelet import TestKubelet
from bifrost_devtools.s3 import SeaweedS3
from control_plane.backends.kubernetes_api import KubernetesApi
from control_plane.backends.kubernetes_pool import RunnerPool
from control_plane.backends.kubernetes_runs import owner_reference
from control_plane.backends.kubernetes_spec import EXECUTION_ID, POOL, STATUS, job_name
from control_plane.settings import Settings
from tests.api.conftest import ADMIN_KEY, Bifrost
from tests.k8s.conftest import NAMESPACE
from tests.k8s.test_full_path import WORKFLOWS, finished, upload_workflows
from tests.k8s.test_workflow_runs import WORKFLOW_RUNS, kubectl
from tests.workspace.conftest import new_bucket, running_bifrost, s3_overrides

WAITING = "waiting for a run"


@contextlib.contextmanager
def control_plane(tmp: Path, seaweedfs: SeaweedS3, bucket: str, **overrides: Any) -> Iterator[Bifrost]:
    with running_bifrost(
        tmp, **s3_overrides(seaweedfs, bucket), backend="kubernetes", k8s_namespace=NAMESPACE, **overrides
    ) as running:
        yield running


@contextlib.asynccontextmanager
async def started(tmp: Path, seaweedfs: SeaweedS3, bucket: str, **overrides: Any) -> AsyncIterator[Bifrost]:
    """A control plane, started off the event loop (it talks to the emulated API server served by this loop)."""
    with contextlib.ExitStack() as stack:
        running = await asyncio.to_thread(stack.enter_context, control_plane(tmp, seaweedfs, bucket, **overrides))
        try:
            yield running
        finally:
            await asyncio.to_thread(stack.close)


@pytest.fixture
def bucket(seaweedfs: SeaweedS3) -> str:
    return new_bucket(seaweedfs)


@pytest.fixture
async def bifrost(
    request: pytest.FixtureRequest,
    apiserver: ApiServer,
    kubelet: TestKubelet,
    kubeconfig: Path,
    seaweedfs: SeaweedS3,
    bucket: str,
    tmp_path: Path,
) -> AsyncIterator[Bifrost]:
    overrides = {"k8s_pool_size": 1} | getattr(request, "param", {})
    async with started(tmp_path / "cp", seaweedfs, bucket, **overrides) as running:
        await asyncio.to_thread(upload_workflows, running)
        yield running


@pytest.fixture
async def api(bifrost: Bifrost) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=bifrost.url, headers=headers, timeout=60) as client:
        yield client


def pool_jobs(apiserver: ApiServer, *, waiting: bool) -> list[dict[str, Any]]:
    """The pool's Jobs: those waiting for a run, or those that took one."""
    return [
        job
        for job in apiserver.live(JOBS)
        if POOL in job["metadata"]["labels"] and (EXECUTION_ID in (job["metadata"].get("annotations") or {})) != waiting
    ]


async def ready_pool_job(apiserver: ApiServer, kubelet: TestKubelet, *, besides: frozenset[str] = frozenset()) -> str:
    """The name of a pool Job (not one of `besides`) whose pod waits for a run."""
    async with asyncio.timeout(60):
        while True:
            for job in pool_jobs(apiserver, waiting=True):
                name = str(job["metadata"]["name"])
                if name not in besides and WAITING in kubelet.log_of(name):
                    return name
            await asyncio.sleep(0.05)


async def run_sync(api: httpx.AsyncClient, workflow: str = "create_user", **parameters: Any) -> dict[str, Any]:
    response = await api.post(
        f"/api/workflows/{workflow}/execute", params={"sync": "true"}, json={"parameters": parameters}
    )
    assert response.status_code == 200, response.text
    execution: dict[str, Any] = response.json()
    return execution


def jobs_of(apiserver: ApiServer, execution_id: str) -> list[dict[str, Any]]:
    """What `kubectl get jobs -l bifrost.io/execution-id=<id>` lists."""
    return [job for job in apiserver.live(JOBS) if job["metadata"]["labels"].get(EXECUTION_ID) == execution_id]


def labelled(apiserver: ApiServer, execution_id: str) -> bool:
    """Whether the Job of the pool pod that took the execution is labelled with it (done after the claim)."""
    return bool(jobs_of(apiserver, execution_id))


async def test_a_sync_run_takes_a_waiting_pool_pod_and_the_pool_refills(
    api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet
) -> None:
    waiting = await ready_pool_job(apiserver, kubelet)

    execution = await run_sync(api, email="ada@example.com")

    assert execution["status"] == "Success", execution
    assert execution["result"]["user"] == "ada@example.com"
    await apiserver.wait_until(lambda: labelled(apiserver, execution["execution_id"]))
    [job] = jobs_of(apiserver, execution["execution_id"])
    assert job["metadata"]["name"] == waiting
    assert job["metadata"]["annotations"][EXECUTION_ID] == execution["execution_id"]
    assert apiserver.object(JOBS, NAMESPACE, job_name(execution["execution_id"])) is None  # no Job of its own
    assert "creating ada@example.com in IT" in kubelet.log_of(waiting)
    # The parameters reached the pod over NATS only: no Job, pod or Secret holds them.
    for resource in (JOBS, PODS, SECRETS):
        assert "ada@example.com" not in str(apiserver.live(resource))
    assert await ready_pool_job(apiserver, kubelet, besides=frozenset({waiting}))


async def test_a_pool_pod_runs_one_execution_and_refuses_a_second_claim(
    api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet, bifrost: Bifrost
) -> None:
    first_pod = await ready_pool_job(apiserver, kubelet)
    first = await run_sync(api, email="ada@example.com")
    second_pod = await ready_pool_job(apiserver, kubelet, besides=frozenset({first_pod}))
    second = await run_sync(api, email="grace@example.com")

    assert [first["status"], second["status"]] == ["Success", "Success"]
    await apiserver.wait_until(lambda: labelled(apiserver, second["execution_id"]))
    assert [job["metadata"]["name"] for job in jobs_of(apiserver, second["execution_id"])] == [second_pod]
    assert "grace@example.com" not in kubelet.log_of(first_pod)
    nc = await nats.connect(bifrost.settings.nats_url)
    try:
        claim = PoolClaim(env={"BIFROST_EXECUTION_ID": "another"})
        with pytest.raises(NoRespondersError):
            await nc.request(pool_subject(second_pod), claim.model_dump_json().encode(), timeout=5)
    finally:
        await nc.close()


@pytest.mark.parametrize("bifrost", [{"k8s_pool_wait_seconds": 2}], indirect=True)
async def test_a_pool_pod_that_waits_too_long_is_replaced(
    bifrost: Bifrost, apiserver: ApiServer, kubelet: TestKubelet
) -> None:
    first = await ready_pool_job(apiserver, kubelet)

    await apiserver.wait_until(lambda: apiserver.object(JOBS, NAMESPACE, first) is None)

    assert await ready_pool_job(apiserver, kubelet, besides=frozenset({first}))
    assert "Traceback" not in kubelet.log_of(first)


@pytest.mark.parametrize("bifrost", [{"k8s_pool_size": 0}], indirect=True)
async def test_with_a_pool_size_of_0_a_sync_run_gets_a_job_of_its_own(
    api: httpx.AsyncClient, apiserver: ApiServer
) -> None:
    execution = await run_sync(api, email="ada@example.com")

    assert execution["status"] == "Success", execution
    assert [job["metadata"]["name"] for job in jobs_of(apiserver, execution["execution_id"])] == [
        job_name(execution["execution_id"])
    ]
    assert not [job for job in apiserver.live(JOBS) if POOL in job["metadata"]["labels"]]


SIZED_WORKFLOWS = """
from bifrost import workflow


@workflow(resources={"memory_limit_mb": 2048, "cpu_limit": "1000m"})
def crunch():
    return "crunched"


@workflow(resources={"memory_limit_mb": 1024})
def tidy():
    return "tidied"
"""
LARGE_POOL = {"large": {"size": 1, "resources": {"memory_limit_mb": 2048, "cpu_limit": "1"}}}


@pytest.mark.parametrize("bifrost", [{"k8s_pool_size": 0, "k8s_pool_classes": LARGE_POOL}], indirect=True)
async def test_a_workflow_with_a_pool_classs_resources_takes_a_pod_of_that_pool_and_others_get_jobs(
    bifrost: Bifrost, api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet
) -> None:
    files = {"flows.py": WORKFLOWS, "sized.py": SIZED_WORKFLOWS}
    response = await api.post("/api/workspace/sync", json={"files": files})
    assert response.status_code == 200, response.text
    waiting = await ready_pool_job(apiserver, kubelet)
    pool_job = apiserver.object(JOBS, NAMESPACE, waiting)
    assert pool_job is not None and pool_job["metadata"]["labels"][POOL] == "large"
    [container] = pool_job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"memory": "2048Mi", "cpu": "1"}

    crunched = await run_sync(api, workflow="crunch")  # the same CPU limit, written in millicores

    assert (crunched["status"], crunched["result"]) == ("Success", "crunched"), crunched
    await apiserver.wait_until(lambda: labelled(apiserver, crunched["execution_id"]))
    assert [job["metadata"]["name"] for job in jobs_of(apiserver, crunched["execution_id"])] == [waiting]
    # Other resources, and the default ones (whose pool has size 0 here): a Job of their own.
    for workflow, parameters in (("tidy", {}), ("create_user", {"email": "ada@example.com"})):
        execution = await run_sync(api, workflow=workflow, **parameters)
        assert execution["status"] == "Success", execution
        owned = [job["metadata"]["name"] for job in jobs_of(apiserver, execution["execution_id"])]
        assert owned == [job_name(execution["execution_id"])], workflow
    assert [job["metadata"]["labels"][POOL] for job in pool_jobs(apiserver, waiting=True)] == ["large"]


def test_pool_classes_are_refused_with_a_bad_name_no_resources_or_the_resources_of_another_pool() -> None:
    with pytest.raises(ValidationError, match="pool class name 'Large'"):
        Settings(k8s_pool_classes={"Large": {"resources": {"memory_limit_mb": 2048}}})
    with pytest.raises(ValidationError, match="give at least one resource"):
        Settings(k8s_pool_classes={"large": {"resources": {}}})
    same = Settings(k8s_memory_limit_mb=1024, k8s_pool_classes={"big": {"resources": {"memory_limit_mb": 1024}}})
    with pytest.raises(ValueError, match="the runner pools 'default' and 'big' would have pods of the same"):
        RunnerPool(same, KubernetesApi(same, kubernetes.client.ApiClient()))


async def test_an_async_run_gets_a_job_of_its_own_while_pool_pods_wait(
    api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet
) -> None:
    waiting = await ready_pool_job(apiserver, kubelet)
    response = await api.post("/api/workflows/create_user/execute", json={"parameters": {"email": "ada@example.com"}})
    execution_id = response.json()["execution_id"]

    await apiserver.wait_until(lambda: bool(jobs_of(apiserver, execution_id)))

    assert [job["metadata"]["name"] for job in jobs_of(apiserver, execution_id)] == [job_name(execution_id)]
    assert [job["metadata"]["name"] for job in pool_jobs(apiserver, waiting=True)] == [waiting]


async def test_a_restarted_control_plane_replaces_the_pool_pods_it_finds_waiting(
    apiserver: ApiServer, kubelet: TestKubelet, kubeconfig: Path, seaweedfs: SeaweedS3, bucket: str, tmp_path: Path
) -> None:
    async with started(tmp_path / "before", seaweedfs, bucket, k8s_pool_size=1):
        before = await ready_pool_job(apiserver, kubelet)

    async with started(tmp_path / "after", seaweedfs, bucket, k8s_pool_size=1) as after:
        await apiserver.wait_until(lambda: apiserver.object(JOBS, NAMESPACE, before) is None)
        replacement = await ready_pool_job(apiserver, kubelet, besides=frozenset({before}))
        await asyncio.to_thread(upload_workflows, after)
        async with httpx.AsyncClient(
            base_url=after.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60
        ) as api:
            execution = await run_sync(api, email="ada@example.com")
            await apiserver.wait_until(lambda: labelled(apiserver, execution["execution_id"]))

    assert execution["status"] == "Success", execution
    assert [job["metadata"]["name"] for job in jobs_of(apiserver, execution["execution_id"])] == [replacement]


async def test_a_pool_pod_killed_mid_run_fails_its_execution_and_the_pool_refills(
    api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet
) -> None:
    waiting = await ready_pool_job(apiserver, kubelet)
    request = asyncio.ensure_future(
        api.post("/api/workflows/stubborn/execute", params={"sync": "true"}, json={"parameters": {}})
    )
    await kubelet.printed(waiting, "not listening")
    [pod] = [pod for pod in kubelet.pods.values() if pod.job["metadata"]["name"] == waiting]
    assert pod.process is not None
    pod.process.kill()

    execution = (await request).json()

    assert execution["status"] == "Failed", execution
    assert execution["runner"]["runner_ref"] == waiting
    assert await ready_pool_job(apiserver, kubelet, besides=frozenset({waiting}))


async def test_a_restarted_control_plane_follows_the_run_a_pool_pod_took(
    apiserver: ApiServer, kubelet: TestKubelet, kubeconfig: Path, seaweedfs: SeaweedS3, bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "cp"
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    # A sync request answers 202 after a second: the run goes on while the control plane restarts.
    async with started(folder, seaweedfs, bucket, k8s_pool_size=1, sync_wait_seconds=1) as before:
        await asyncio.to_thread(upload_workflows, before)
        taken = await ready_pool_job(apiserver, kubelet)
        async with httpx.AsyncClient(base_url=before.url, headers=headers, timeout=60) as api:
            response = await api.post(
                "/api/workflows/stubborn/execute", params={"sync": "true"}, json={"parameters": {}}
            )
        execution_id = response.json()["execution_id"]
        await kubelet.printed(taken, "not listening")
        await apiserver.wait_until(lambda: labelled(apiserver, execution_id))

    async with started(folder, seaweedfs, bucket, k8s_pool_size=1) as after:
        [pod] = [pod for pod in kubelet.pods.values() if pod.job["metadata"]["name"] == taken]
        assert pod.process is not None
        pod.process.kill()
        async with httpx.AsyncClient(base_url=after.url, headers=headers, timeout=60) as api:
            execution = await finished(api, execution_id)

    assert execution["status"] == "Failed", execution
    assert execution["runner"]["runner_ref"] == taken


def owned(apiserver: ApiServer, name: str) -> bool:
    """Whether the pool Job `name` took an execution and belongs to its WorkflowRun."""
    job = apiserver.object(JOBS, NAMESPACE, name)
    return job is not None and bool(job["metadata"].get("ownerReferences"))


async def test_a_pool_run_has_its_workflow_run_and_its_end_is_written_onto_the_pool_job(
    crd: dict[str, Any], api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet
) -> None:
    waiting = await ready_pool_job(apiserver, kubelet)

    execution = await run_sync(api, email="ada@example.com")

    assert execution["status"] == "Success", execution
    name = job_name(execution["execution_id"])
    await apiserver.wait_until(lambda: (apiserver.object(JOBS, NAMESPACE, waiting) or {}).get("metadata", {}).get(
        "labels", {}).get(STATUS) == "Success")
    job = apiserver.object(JOBS, NAMESPACE, waiting)
    workflow_run = apiserver.object(WORKFLOW_RUNS, NAMESPACE, name)
    assert job is not None and workflow_run is not None
    assert job["metadata"]["ownerReferences"] == [owner_reference(workflow_run)]
    assert workflow_run["spec"]["executionId"] == execution["execution_id"]
    await apiserver.wait_until(
        lambda: (apiserver.object(WORKFLOW_RUNS, NAMESPACE, name) or {}).get("status", {}).get("phase") == "Success"
    )
    assert apiserver.object(JOBS, NAMESPACE, name) is None  # the run had no Job of its own


async def test_deleting_the_workflow_run_of_a_pool_run_cancels_it(
    crd: dict[str, Any], api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet, kubeconfig: Path
) -> None:
    waiting = await ready_pool_job(apiserver, kubelet)
    request = asyncio.ensure_future(
        api.post("/api/workflows/stubborn/execute", params={"sync": "true"}, json={"parameters": {}})
    )
    await kubelet.printed(waiting, "not listening")
    await apiserver.wait_until(lambda: owned(apiserver, waiting))
    job = apiserver.object(JOBS, NAMESPACE, waiting)
    assert job is not None
    execution_id = job["metadata"]["annotations"][EXECUTION_ID]

    await kubectl(kubeconfig, "delete", "workflowrun", job_name(execution_id))
    execution = (await request).json()

    assert execution["status"] == "Cancelled", execution
    assert f"The WorkflowRun {job_name(execution_id)} was deleted" in execution["error"]["message"]
    await apiserver.wait_until(lambda: apiserver.object(JOBS, NAMESPACE, waiting) is None)
    [pod] = [pod for pod in kubelet.pods.values() if pod.job["metadata"]["name"] == waiting]
    assert pod.process is not None
    await pod.process.wait()
