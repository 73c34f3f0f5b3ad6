"""The whole path on the kubernetes backend: API call → Job → pod → runner (syncing the S3 workspace into its
own volume) → NATS → result in the database; where each execution runs, in its detail; and a runner killed by
the cluster closing its execution with the diagnosis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bifrost_devtools.k8s_apiserver import JOBS, ApiServer
from bifrost_devtools.k8s_kubelet import Fault, TestKubelet
from bifrost_devtools.s3 import READER_KEY, SeaweedS3
from bifrost_runner.checkout import CACHE_FOLDER
from control_plane.backends.kubernetes_spec import inspect_commands, job_name
from tests.api.conftest import ADMIN_KEY, Bifrost
from tests.k8s.conftest import NAMESPACE
from tests.k8s.test_workflow_runs import WORKFLOW_RUNS
from tests.workspace.conftest import new_bucket, running_bifrost, s3_overrides

WORKFLOWS = """
import logging

from bifrost import context, workflow

logger = logging.getLogger(__name__)


@workflow
async def create_user(email: str, department: str = "IT"):
    logger.info("creating %s in %s", email, department)
    return {"user": email, "department": department, "org": context.org_id}


@workflow
def hog():
    print("allocating", flush=True)
    import time
    time.sleep(120)


@workflow
def explode():
    raise RuntimeError("the ticket system refused the change")


@workflow
def stubborn():
    import time
    print("not listening", flush=True)
    time.sleep(120)
"""


def upload_workflows(bifrost: Bifrost) -> None:
    with bifrost.client() as api:
        response = api.post("/api/workspace/sync", json={"files": {"flows.py": WORKFLOWS}})
        assert response.status_code == 200, response.text


@pytest.fixture
async def bifrost(
    apiserver: ApiServer,
    crd: dict[str, Any],
    kubelet: TestKubelet,
    kubeconfig: Path,
    seaweedfs: SeaweedS3,
    tmp_path: Path,
) -> AsyncIterator[Bifrost]:
    # Started off the event loop: the control plane talks to the emulated API server, which is served by it.
    with contextlib.ExitStack() as stack:
        running = await asyncio.to_thread(
            stack.enter_context,
            running_bifrost(
                tmp_path, **s3_overrides(seaweedfs, new_bucket(seaweedfs)),
                backend="kubernetes", k8s_namespace=NAMESPACE, k8s_deadline_grace_seconds=30,
                cancel_grace_seconds=1.0,
            ),
        )
        try:
            await asyncio.to_thread(upload_workflows, running)
            yield running
        finally:
            await asyncio.to_thread(stack.close)


async def finished(api: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    async with asyncio.timeout(90):
        while True:
            execution: dict[str, Any] = (await api.get(f"/api/executions/{execution_id}")).json()
            if execution["status"] not in ("Pending", "Running"):
                return execution
            await asyncio.sleep(0.1)


@pytest.fixture
async def api(bifrost: Bifrost) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=bifrost.url, headers=headers, timeout=60) as client:
        yield client


async def start(api: httpx.AsyncClient, name: str, **parameters: Any) -> str:
    response = await api.post(f"/api/workflows/{name}/execute", json={"parameters": parameters})
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


async def test_an_execution_runs_as_a_job_and_its_result_reaches_the_database(
    api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet
) -> None:
    execution_id = await start(api, "create_user", email="ada@example.com")
    execution = await finished(api, execution_id)
    logs = (await api.get(f"/api/executions/{execution_id}/logs")).json()["logs"]

    assert execution["status"] == "Success", execution
    job = apiserver.object(JOBS, NAMESPACE, job_name(execution_id))
    assert job is not None
    assert execution["result"] == {
        "user": "ada@example.com", "department": "IT", "org": job["metadata"]["annotations"]["bifrost.io/org"]
    }
    assert any("creating ada@example.com in IT" in record["message"] for record in logs)
    assert job["metadata"]["labels"]["bifrost.io/workflow"] == "create_user"
    assert job["metadata"]["labels"]["bifrost.io/trigger"] == "api"
    assert job["metadata"]["annotations"]["bifrost.io/user"] == execution["user_id"]
    await apiserver.wait_until(lambda: job_label(apiserver, execution_id, "bifrost.io/status") == "Success")
    assert "ada@example.com" not in str(job)  # parameters never reach the Job
    assert "creating ada@example.com" in kubelet.log_of(job_name(execution_id))  # `kubectl logs` shows them


async def test_the_runner_syncs_the_s3_workspace_into_its_own_volume(
    api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet, bifrost: Bifrost
) -> None:
    execution_id = await start(api, "create_user", email="ada@example.com")
    assert (await finished(api, execution_id))["status"] == "Success"

    job = apiserver.object(JOBS, NAMESPACE, job_name(execution_id))
    assert job is not None
    env = {var["name"]: var for var in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BIFROST_WORKSPACE_URL"]["value"] == bifrost.settings.workspace_url
    assert env["BIFROST_WORKSPACE_CACHE_DIR"]["value"] == "/workspace"  # the pod's emptyDir
    assert env["BIFROST_S3_ACCESS_KEY_ID"]["value"] == READER_KEY  # the runners' read-only identity
    assert "secretKeyRef" in env["BIFROST_S3_SECRET_ACCESS_KEY"]["valueFrom"]
    assert str(bifrost.settings.runner_workspace_cache_dir) not in str(job)
    [pod] = [pod for pod in kubelet.pods.values() if pod.job["metadata"]["name"] == job_name(execution_id)]
    assert (Path(pod.volumes["/workspace"]) / CACHE_FOLDER / "flows.py").read_text() == WORKFLOWS


async def test_the_execution_detail_names_its_job_pod_and_kubectl_commands(
    api: httpx.AsyncClient, kubelet: TestKubelet
) -> None:
    execution_id = await start(api, "stubborn")
    name = job_name(execution_id)
    await kubelet.printed(name, "not listening")
    [pod] = [pod.name for pod in kubelet.pods.values() if pod.job["metadata"]["name"] == name]

    running = (await api.get(f"/api/executions/{execution_id}")).json()
    assert running["runner"] == {
        "backend": "kubernetes",
        "runner_ref": name,
        "namespace": NAMESPACE,
        "job_name": name,
        "pod_name": pod,
        "commands": inspect_commands(NAMESPACE, name),
    }
    await api.post(f"/api/executions/{execution_id}/cancel")
    ended = await finished(api, execution_id)
    assert (ended["runner"]["runner_ref"], ended["runner"]["job_name"]) == (name, name)


async def test_a_workflow_that_fails_fails_its_job_and_keeps_its_own_error(
    api: httpx.AsyncClient, apiserver: ApiServer, kubelet: TestKubelet
) -> None:
    execution_id = await start(api, "explode")
    execution = await finished(api, execution_id)

    assert execution["status"] == "Failed"
    assert execution["error"]["type"] == "RuntimeError"
    assert "the ticket system refused the change" in execution["error"]["message"]
    assert execution["error"]["runner_log_tail"] is None
    # The runner exits with the code of a failed run, so the Job shows as failed too, labelled with the status and
    # annotated with the error; its log (`kubectl logs job/...`) ends with the traceback.
    await apiserver.wait_until(lambda: job_failed(apiserver, execution_id))
    await apiserver.wait_until(lambda: job_label(apiserver, execution_id, "bifrost.io/status") == "Failed")
    job = apiserver.object(JOBS, NAMESPACE, job_name(execution_id))
    assert job is not None
    assert job["metadata"]["annotations"]["bifrost.io/error"] == execution["error"]["message"]
    log = kubelet.log_of(job_name(execution_id))
    assert "the workflow ended Failed\nTraceback (most recent call last):" in log
    assert 'raise RuntimeError("the ticket system refused the change")' in log
    assert log.rstrip().endswith("RuntimeError: the ticket system refused the change")
    # Its WorkflowRun says the same, with the run's times.
    workflow_run = apiserver.object(WORKFLOW_RUNS, NAMESPACE, job_name(execution_id))
    assert workflow_run is not None
    assert workflow_run["status"]["phase"] == "Failed"
    assert workflow_run["status"]["message"] == execution["error"]["message"]
    assert workflow_run["status"]["duration"].endswith("s")


def job_label(apiserver: ApiServer, execution_id: str, key: str) -> str | None:
    job = apiserver.object(JOBS, NAMESPACE, job_name(execution_id))
    return None if job is None else job["metadata"].get("labels", {}).get(key)


def job_failed(apiserver: ApiServer, execution_id: str) -> bool:
    job = apiserver.object(JOBS, NAMESPACE, job_name(execution_id))
    return job is not None and job.get("status", {}).get("failed") == 1


async def test_a_runner_killed_for_memory_fails_its_execution_with_the_diagnosis(
    api: httpx.AsyncClient, kubelet: TestKubelet
) -> None:
    kubelet.faults["hog"] = Fault.OOM_KILLED
    kubelet.strike_after = "allocating"
    execution_id = await start(api, "hog")
    execution = await finished(api, execution_id)

    assert execution["status"] == "Failed"
    assert "ran out of memory" in execution["error"]["message"]
    assert "allocating" in execution["error"]["runner_log_tail"]
    assert execution["error"]["traceback"] is None


async def test_cancel_stops_the_runner_pod_and_ends_the_execution_cancelled(
    api: httpx.AsyncClient, kubelet: TestKubelet, apiserver: ApiServer
) -> None:
    execution_id = await start(api, "stubborn")
    await kubelet.printed(job_name(execution_id), "not listening")

    response = await api.post(f"/api/executions/{execution_id}/cancel")
    assert response.status_code == 202, response.text
    execution = await finished(api, execution_id)

    assert execution["status"] == "Cancelled"
    # The runner stops (or, after the grace period, its Job is deleted): no pod runs on.
    await apiserver.wait_until(lambda: job_done_or_gone(apiserver, execution_id))


def job_done_or_gone(apiserver: ApiServer, execution_id: str) -> bool:
    job = apiserver.object(JOBS, NAMESPACE, job_name(execution_id))
    return job is None or bool({"succeeded", "failed"} & set(job.get("status", {})))
