"""The shared watch and the API calls survive what real API servers do: dropped watches, 410 Gone after
compaction, and answering 500/429 for a while. No execution is lost, none runs twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import kmock

from bifrost._internal.protocol import ExecutionStatus
from bifrost_devtools.k8s_apiserver import JOBS, PODS, ApiServer
from bifrost_devtools.k8s_kubelet import TestKubelet
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.backends.kubernetes_spec import job_name
from tests.k8s.conftest import NAMESPACE, Exits, launch_spec


def job_status(apiserver: ApiServer, execution_id: str) -> dict[str, Any]:
    job = apiserver.object(JOBS, NAMESPACE, job_name(execution_id))
    return dict((job or {}).get("status") or {})


def wait_for_file(path: Path) -> str:
    return (
        "import os, time\nprint('working', flush=True)\n"
        f"while not os.path.exists({str(path)!r}): time.sleep(0.02)\nprint('done')"
    )


async def test_a_dropped_watch_resumes_and_loses_no_execution(
    backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits, tmp_path: Path
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = wait_for_file(tmp_path / "go")
    await backend.launch(spec)
    await kubelet.printed(job_name(spec.execution_id), "working")
    watches_before = len(apiserver[kmock.action.WATCH, JOBS])

    apiserver.end_watches()
    (tmp_path / "go").touch()

    runner_exit = await exits.of(spec.execution_id)
    assert runner_exit.exit_code == 0
    assert len(apiserver[kmock.action.WATCH, JOBS]) > watches_before
    assert [watch.lists for watch in backend.watches] == [1, 1]  # resumed from its resourceVersion


async def test_410_gone_lists_again_and_loses_no_execution(
    backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits, tmp_path: Path
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = wait_for_file(tmp_path / "go")
    await backend.launch(spec)
    await kubelet.printed(job_name(spec.execution_id), "working")

    apiserver[kmock.action.WATCH, JOBS][:3] << 500
    apiserver.end_watches()
    (tmp_path / "go").touch()
    await apiserver.wait_until(lambda: job_status(apiserver, spec.execution_id).get("succeeded") == 1)
    apiserver.compact()

    runner_exit = await exits.of(spec.execution_id)
    assert runner_exit.exit_code == 0
    assert backend.watches[0].lists == 2


async def test_a_job_deleted_while_the_watch_was_away_fails_its_execution(
    backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits, tmp_path: Path
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = wait_for_file(tmp_path / "never")
    await backend.launch(spec)
    await kubelet.printed(job_name(spec.execution_id), "working")

    apiserver[kmock.action.WATCH, JOBS][:3] << 500
    apiserver.end_watches()
    async with apiserver.delete(f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{job_name(spec.execution_id)}") as r:
        assert r.status == 200
    apiserver.compact()

    runner_exit = await exits.of(spec.execution_id)
    assert runner_exit.status is ExecutionStatus.FAILED
    assert "no longer exists" in runner_exit.reason


async def test_an_api_server_failing_for_a_while_delays_launches_but_loses_none(
    backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits
) -> None:
    specs = [launch_spec() for _ in range(5)]
    for spec in specs:
        kubelet.scripts[spec.execution_id] = f"print({spec.execution_id!r})"
    apiserver[kmock.action.CREATE, JOBS][:3] << 500
    apiserver[kmock.action.UPDATE, JOBS][:3] << 429 << kmock.headers({"Retry-After": "0"})
    apiserver[kmock.action.WATCH, PODS][:3] << 503
    apiserver.end_watches()

    await asyncio.gather(*(backend.launch(spec) for spec in specs))

    for spec in specs:
        runner_exit = await exits.of(spec.execution_id)
        assert runner_exit.exit_code == 0
        assert kubelet.log_of(job_name(spec.execution_id)) == f"{spec.execution_id}\n"
        assert exits.count(spec.execution_id) == 1
