from __future__ import annotations

import asyncio
import json
import signal

import kmock

from bifrost._internal.protocol import ExecutionStatus
from bifrost_devtools.k8s_apiserver import JOBS, PODS, SECRETS, ApiServer
from bifrost_devtools.k8s_kubelet import TestKubelet
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.backends.kubernetes_spec import job_name, secret_name
from control_plane.settings import Settings
from tests.k8s.conftest import NAMESPACE, Exits, launch_spec

PRINT_ENV = (
    "import json, os; "
    "print(json.dumps({k: os.environ.get(k) for k in "
    "('BIFROST_EXECUTION_ID', 'BIFROST_EXECUTION_TOKEN', 'BIFROST_API_URL', 'BIFROST_TIMEOUT_SECONDS')}))"
)


async def test_a_launched_job_runs_its_pod_with_the_token_from_the_secret(
    backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits
) -> None:
    spec = launch_spec(timeout_seconds=120)
    kubelet.scripts[spec.execution_id] = PRINT_ENV

    await backend.launch(spec)
    runner_exit = await exits.of(spec.execution_id)

    assert runner_exit.exit_code == 0
    assert runner_exit.status is None
    printed = json.loads(kubelet.log_of(job_name(spec.execution_id)))
    assert printed == {
        "BIFROST_EXECUTION_ID": spec.execution_id,
        "BIFROST_EXECUTION_TOKEN": spec.token,
        "BIFROST_API_URL": spec.api_url,
        "BIFROST_TIMEOUT_SECONDS": "120",
    }
    job = apiserver.object(JOBS, NAMESPACE, job_name(spec.execution_id))
    assert job is not None
    assert spec.token not in json.dumps(job)
    secret = apiserver.object(SECRETS, NAMESPACE, secret_name(spec.execution_id))
    assert secret is not None
    assert secret["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]


async def test_launching_twice_from_two_control_planes_runs_one_pod(
    backend: KubernetesBackend, settings: Settings, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = "print('once')"
    other = KubernetesBackend(settings)
    await other.start(exits)
    try:
        await asyncio.gather(backend.launch(spec), backend.launch(spec), other.launch(spec))
        await exits.of(spec.execution_id)
    finally:
        await other.stop()

    assert len([p for p in kubelet.pods.values() if p.job["metadata"]["name"] == job_name(spec.execution_id)]) == 1
    assert kubelet.log_of(job_name(spec.execution_id)) == "once\n"
    assert len(apiserver[kmock.action.CREATE, JOBS]) == 2  # the second answered 409 AlreadyExists


async def test_kill_deletes_the_job_in_the_foreground_with_its_pod_and_secret(
    backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = "import time; print('working', flush=True); time.sleep(120)"
    await backend.launch(spec)
    await kubelet.printed(job_name(spec.execution_id), "working")

    await backend.kill(spec.execution_id)

    runner_exit = await exits.of(spec.execution_id)
    assert "deleted the Job" in runner_exit.reason
    deletes = list(apiserver[kmock.method.DELETE, JOBS])
    assert [d.params.get("propagationPolicy") or (d.data or {}).get("propagationPolicy") for d in deletes] == [
        "Foreground"
    ]
    assert apiserver.object(JOBS, NAMESPACE, job_name(spec.execution_id)) is None
    assert apiserver.object(SECRETS, NAMESPACE, secret_name(spec.execution_id)) is None
    assert apiserver.live(PODS) == []
    process = next(iter(kubelet.pods.values())).process
    assert process is not None
    assert await process.wait() == -signal.SIGTERM
    assert exits.count(spec.execution_id) == 1


async def test_a_job_deleted_from_outside_fails_its_execution(
    backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = "import time; print('working', flush=True); time.sleep(120)"
    await backend.launch(spec)
    await kubelet.printed(job_name(spec.execution_id), "working")

    async with apiserver.delete(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job_name(spec.execution_id)}") as r:
        assert r.status == 200

    runner_exit = await exits.of(spec.execution_id)
    assert runner_exit.status is ExecutionStatus.FAILED
    assert "deleted from outside Bifrost" in runner_exit.reason
