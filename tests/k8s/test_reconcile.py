"""After a control-plane restart the backend finds its Jobs again: running ones are re-attached, those of
finished executions are removed, and executions whose Job vanished are failed with that reason."""

from __future__ import annotations

from pathlib import Path

from bifrost._internal.protocol import ExecutionStatus
from bifrost_devtools.k8s_apiserver import JOBS, ApiServer
from bifrost_devtools.k8s_kubelet import TestKubelet
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.backends.kubernetes_spec import job_name
from control_plane.settings import Settings
from tests.k8s.conftest import NAMESPACE, Exits, launch_spec
from tests.k8s.test_resilience import job_status, wait_for_file


async def restarted(settings: Settings, exits: Exits) -> KubernetesBackend:
    backend = KubernetesBackend(settings)
    await backend.start(exits)
    return backend


async def test_a_running_job_is_reattached_after_a_restart(
    settings: Settings, kubelet: TestKubelet, exits: Exits, tmp_path: Path
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = wait_for_file(tmp_path / "go")
    first = await restarted(settings, exits)
    await first.launch(spec)
    await kubelet.printed(job_name(spec.execution_id), "working")
    await first.stop()

    second = await restarted(settings, exits)
    try:
        await second.reconcile([spec.execution_id])
        assert second.details(spec.execution_id).pod_name is not None
        (tmp_path / "go").touch()
        runner_exit = await exits.of(spec.execution_id)
    finally:
        await second.stop()
    assert runner_exit.exit_code == 0
    assert exits.count(spec.execution_id) == 1


async def test_a_job_that_failed_while_the_control_plane_was_down_is_reported_on_restart(
    settings: Settings, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = "import time, sys; time.sleep(0.3); print('boom'); sys.exit(2)"
    first = await restarted(settings, exits)
    await first.launch(spec)
    await first.stop()
    await apiserver.wait_until(lambda: "failed" in job_status(apiserver, spec.execution_id))

    second = await restarted(settings, exits)
    try:
        await second.reconcile([spec.execution_id])
        runner_exit = await exits.of(spec.execution_id)
    finally:
        await second.stop()
    assert runner_exit.status is ExecutionStatus.FAILED
    assert runner_exit.exit_code == 2
    assert runner_exit.log_tail == "boom\n"


async def test_an_execution_whose_job_vanished_is_failed_with_that_reason(
    backend: KubernetesBackend, exits: Exits
) -> None:
    spec = launch_spec()

    await backend.reconcile([spec.execution_id])

    runner_exit = await exits.of(spec.execution_id)
    assert runner_exit.status is ExecutionStatus.FAILED
    assert f"The Job {job_name(spec.execution_id)} no longer exists" in runner_exit.reason


async def test_jobs_of_finished_executions_are_cleaned_up(
    settings: Settings, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits, tmp_path: Path
) -> None:
    finished, running_elsewhere = launch_spec(), launch_spec()
    kubelet.scripts[finished.execution_id] = "print('done')"
    kubelet.scripts[running_elsewhere.execution_id] = wait_for_file(tmp_path / "never")
    first = await restarted(settings, exits)
    await first.launch(finished)
    await first.launch(running_elsewhere)
    await exits.of(finished.execution_id)
    await first.stop()

    second = await restarted(settings, exits)
    try:
        await second.reconcile([])
    finally:
        await second.stop()

    assert apiserver.object(JOBS, NAMESPACE, job_name(finished.execution_id)) is None
    # A Job this young may have been launched by another replica after the active list was read: kept.
    assert apiserver.object(JOBS, NAMESPACE, job_name(running_elsewhere.execution_id)) is not None
