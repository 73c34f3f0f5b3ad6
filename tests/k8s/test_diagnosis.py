"""Every way a runner's pod fails without the runner reporting it ends the execution with a reason a human
understands, a suggested fix and the last lines of the pod's log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import kmock
import pytest

from bifrost._internal.protocol import RUNNER_EXIT_CODES, ExecutionStatus
from bifrost_devtools.k8s_apiserver import JOBS, PODS, ApiServer
from bifrost_devtools.k8s_kubelet import Fault, TestKubelet
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.backends.kubernetes_diagnosis import diagnose
from control_plane.backends.kubernetes_spec import job_name
from control_plane.settings import Settings
from tests.k8s.conftest import NAMESPACE, Exits, launch_spec

LOADING = "import time; print('loading 40 GB of tickets', flush=True); time.sleep(120)"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.OOM_KILLED, ["ran out of memory", "1024Mi", "BIFROST_K8S_MEMORY_LIMIT_MB"]),
        (Fault.EVICTED, ["was evicted", "low on resource: memory", "memory request"]),
        (Fault.NODE_LOST, ["is gone: its node was lost", "run it again"]),
    ],
)
async def test_a_runner_killed_by_the_cluster_fails_with_the_cause_and_its_log(
    fault: Fault, expected: list[str], backend: KubernetesBackend, kubelet: TestKubelet, exits: Exits
) -> None:
    spec = launch_spec()
    kubelet.faults[spec.execution_id] = fault
    kubelet.scripts[spec.execution_id] = LOADING

    await backend.launch(spec)
    runner_exit = await exits.of(spec.execution_id)

    assert runner_exit.status is ExecutionStatus.FAILED
    for text in expected:
        assert text in runner_exit.reason
    if fault is not Fault.NODE_LOST:  # the pod, and so its log, is gone with the node
        assert runner_exit.log_tail == "loading 40 GB of tickets\n"
        assert "loading 40 GB of tickets" in runner_exit.reason


async def test_a_runner_that_crashes_before_reporting_fails_with_its_exit_code_and_log_tail(
    backend: KubernetesBackend, kubelet: TestKubelet, exits: Exits
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = (
        "import sys\nfor i in range(1, 9): print(f'step {i}')\nsys.exit('cannot reach NATS at nats://nats:4222')"
    )

    await backend.launch(spec)
    runner_exit = await exits.of(spec.execution_id)

    assert runner_exit.status is ExecutionStatus.FAILED
    assert runner_exit.exit_code == 1
    assert "exited with code 1" in runner_exit.reason
    # The last 5 lines (k8s_log_tail_lines), read from the pod's log before the Job's TTL removes it.
    assert runner_exit.log_tail == "step 5\nstep 6\nstep 7\nstep 8\ncannot reach NATS at nats://nats:4222\n"


async def test_a_failure_the_runner_reported_is_not_taken_for_a_crash(
    backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits
) -> None:
    """A runner that reported a failed execution exits with its code, so its Job fails; its events, not the
    backend, tell why, and its log is not read."""
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = (
        f"import sys\nprint('reported')\nsys.exit({RUNNER_EXIT_CODES[ExecutionStatus.FAILED]})"
    )

    await backend.launch(spec)
    runner_exit = await exits.of(spec.execution_id)

    assert runner_exit.status is None
    assert runner_exit.exit_code == RUNNER_EXIT_CODES[ExecutionStatus.FAILED]
    assert "it reported the execution Failed" in runner_exit.reason
    assert runner_exit.log_tail is None
    assert list(apiserver[PODS, kmock.subresource("log")]) == []
    job = apiserver.object(JOBS, NAMESPACE, job_name(spec.execution_id))
    assert job is not None and job["status"]["failed"] == 1
    assert exits.count(spec.execution_id) == 1


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.IMAGE_PULL, ["could not pull the runner image", "registry.example/bifrost-runner:1.2.3",
                            "BIFROST_RUNNER_IMAGE_PULL_SECRETS"]),
        (Fault.CONTAINER_CONFIG, ["could not create the runner container", "runAsNonRoot",
                                  "BIFROST_K8S_RUN_AS_USER"]),
    ],
)
async def test_a_pod_that_can_never_start_fails_at_once_and_its_job_is_removed(
    fault: Fault, expected: list[str], backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer,
    exits: Exits,
) -> None:
    spec = launch_spec()
    kubelet.faults[spec.execution_id] = fault

    await backend.launch(spec)
    runner_exit = await exits.of(spec.execution_id)

    assert runner_exit.status is ExecutionStatus.FAILED
    for text in expected:
        assert text in runner_exit.reason
    assert runner_exit.log_tail is None
    assert apiserver.object(JOBS, NAMESPACE, job_name(spec.execution_id)) is None


async def test_a_job_past_its_deadline_times_out(
    backend: KubernetesBackend, kubelet: TestKubelet, exits: Exits
) -> None:
    spec = launch_spec(timeout_seconds=1)
    kubelet.scripts[spec.execution_id] = LOADING

    await backend.launch(spec)
    runner_exit = await exits.of(spec.execution_id)

    assert runner_exit.status is ExecutionStatus.TIMEOUT
    assert "ran past its deadline of 1s" in runner_exit.reason
    assert runner_exit.log_tail == "loading 40 GB of tickets\n"


@pytest.fixture
def impatient(settings: Settings) -> Settings:
    return settings.model_copy(update={"k8s_pending_timeout_seconds": 2})


@pytest.fixture
async def impatient_backend(impatient: Settings, exits: Exits) -> AsyncIterator[KubernetesBackend]:
    backend = KubernetesBackend(impatient)
    await backend.start(exits)
    yield backend
    await backend.stop()


async def test_an_unschedulable_pod_fails_after_the_pending_timeout_with_the_schedulers_message(
    impatient_backend: KubernetesBackend, kubelet: TestKubelet, apiserver: ApiServer, exits: Exits
) -> None:
    spec = launch_spec()
    kubelet.faults[spec.execution_id] = Fault.UNSCHEDULABLE

    await impatient_backend.launch(spec)
    runner_exit = await exits.of(spec.execution_id)

    assert runner_exit.status is ExecutionStatus.FAILED
    assert "The scheduler could not place the runner pod" in runner_exit.reason
    assert "0/3 nodes are available: 3 Insufficient memory." in runner_exit.reason
    assert "BIFROST_K8S_NODE_SELECTOR" in runner_exit.reason
    assert apiserver.object(JOBS, NAMESPACE, job_name(spec.execution_id)) is None


FAILED_JOB = {
    "metadata": {"name": "bifrost-run-1"},
    "spec": {"activeDeadlineSeconds": 90},
    "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
}


def test_a_pod_disrupted_because_its_node_became_unreachable_names_the_cause() -> None:
    pod = {"metadata": {"name": "bifrost-run-1-x7k2p"}, "status": {"phase": "Failed", "conditions": [{
        "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint key node.kubernetes.io/unreachable",
    }]}}

    diagnosis = diagnose(FAILED_JOB, pod)

    assert diagnosis is not None
    assert diagnosis.status is ExecutionStatus.FAILED
    assert "The node running pod bifrost-run-1-x7k2p went away" in diagnosis.reason
    assert "node.kubernetes.io/unreachable" in diagnosis.reason


def test_a_runner_killed_by_a_signal_names_the_signal() -> None:
    pod = {"metadata": {"name": "bifrost-run-1-x7k2p"}, "status": {"phase": "Failed", "containerStatuses": [{
        "name": "runner", "state": {"terminated": {"exitCode": 137, "reason": "Error"}},
    }]}}

    diagnosis = diagnose(FAILED_JOB, pod)

    assert diagnosis is not None
    assert diagnosis.exit_code == 137
    assert "exited with code 137, killed by SIGKILL" in diagnosis.reason


def test_a_job_that_is_still_running_has_no_diagnosis() -> None:
    running_job = {"metadata": {"name": "bifrost-run-1"}, "status": {"active": 1}}
    pod = {"metadata": {"name": "p"}, "status": {"phase": "Running", "containerStatuses": [{
        "name": "runner", "state": {"running": {"startedAt": "2026-12-01T00:00:00Z"}},
    }]}}
    assert diagnose(running_job, pod) is None
