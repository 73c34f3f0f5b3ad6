"""WorkflowRuns: one per execution, owning its Job, listed by the real `kubectl` with the CRD's columns; deleting
one cancels its run; an ended run's is deleted after its TTL; the control plane runs the Jobs alone without the
CRD, or with the setting off."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import kmock
import kubernetes_validate
import pytest
import yaml

from bifrost._internal.protocol import ExecutionStatus
from bifrost_devtools.k8s_apiserver import JOBS, ApiServer
from bifrost_devtools.k8s_kubelet import TestKubelet
from control_plane.backends.base import RunEnd
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.backends.kubernetes_runs import build_workflow_run, duration_text, ended_patch, owner_reference
from control_plane.backends.kubernetes_spec import build_job, job_name
from control_plane.settings import Settings
from tests.k8s.conftest import NAMESPACE, WORKFLOW_RUNS_CRD, Exits, install_crd, launch_spec
from tests.k8s.test_spec import SUPPORTED_VERSIONS

ROOT = Path(__file__).parents[2]
KUBECTL = Path(sys.executable).with_name("kubectl")
WORKFLOW_RUNS = kmock.resource("bifrost.io/v1alpha1/workflowruns")
LABEL_COLUMNS = "bifrost.io/workflow,bifrost.io/org,bifrost.io/user,bifrost.io/trigger,bifrost.io/status"


@pytest.fixture
async def backend(crd: dict[str, Any], settings: Settings, exits: Exits) -> AsyncIterator[KubernetesBackend]:
    """A backend started once the CRD is installed."""
    backend = KubernetesBackend(settings)
    await backend.start(exits)
    yield backend
    await backend.stop()


async def kubectl(kubeconfig: Path, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL), "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / "kube-cache"),
        "-n", NAMESPACE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


def table(text: str) -> list[dict[str, str]]:
    """kubectl's table output as one dict per row, by column header (each column starts where its header does)."""
    header, *rows = text.rstrip().splitlines()
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    names = header.split()
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{name: row[start:end].strip() for name, (start, end) in zip(names, bounds, strict=True)} for row in rows]


async def test_kubectl_lists_the_runs_and_their_jobs_with_workflow_status_org_user_and_error(
    backend: KubernetesBackend, kubelet: TestKubelet, exits: Exits, kubeconfig: Path
) -> None:
    good, bad = launch_spec(), launch_spec(workflow_name="sync_tickets", trigger="api")
    kubelet.scripts[good.execution_id] = "print('done')"
    kubelet.scripts[bad.execution_id] = "import sys; print('step 1'); sys.exit(11)"
    for spec in (good, bad):
        await backend.launch(spec)
        await exits.of(spec.execution_id)
    started = datetime.now(UTC) - timedelta(minutes=2)
    # What the control plane does once each execution is recorded as ended.
    await backend.run_ended(RunEnd(execution_id=good.execution_id, status=ExecutionStatus.SUCCESS,
                                   started_at=started, finished_at=started + timedelta(seconds=4)))
    await backend.run_ended(RunEnd(execution_id=bad.execution_id, status=ExecutionStatus.FAILED,
                                   error_message="RuntimeError: the ticket system refused the change",
                                   started_at=started, finished_at=started + timedelta(seconds=65)))

    runs = {row["NAME"]: row for row in table(await kubectl(kubeconfig, "get", "workflowruns", "-o", "wide"))}
    assert list(runs[job_name(good.execution_id)]) == [
        "NAME", "WORKFLOW", "STATUS", "ORG", "USER", "STARTED", "DURATION", "AGE", "MESSAGE",
    ]
    good_run, bad_run = runs[job_name(good.execution_id)], runs[job_name(bad.execution_id)]
    assert (good_run["WORKFLOW"], good_run["STATUS"], good_run["ORG"], good_run["USER"]) == (
        "create_user", "Success", "org-1", good.user_id,
    )
    assert (good_run["STARTED"], good_run["DURATION"]) == ("2m", "4s")
    assert (bad_run["WORKFLOW"], bad_run["STATUS"], bad_run["DURATION"]) == ("sync_tickets", "Failed", "1m5s")
    assert bad_run["MESSAGE"] == "RuntimeError: the ticket system refused the change"
    assert re.fullmatch(r"\d+s", bad_run["AGE"])
    # The short name and the category work as for any resource.
    assert job_name(bad.execution_id) in await kubectl(kubeconfig, "get", "wfr")

    jobs = {row["NAME"]: row for row in table(await kubectl(kubeconfig, "get", "jobs", "-L", LABEL_COLUMNS))}
    good_job, bad_job = jobs[job_name(good.execution_id)], jobs[job_name(bad.execution_id)]
    assert [good_job[column] for column in ("WORKFLOW", "ORG", "USER", "TRIGGER", "STATUS")] == [
        "create_user", "org-1", good.user_id, "form", "Success",
    ]
    assert [bad_job[column] for column in ("WORKFLOW", "TRIGGER", "STATUS")] == ["sync_tickets", "api", "Failed"]
    failed = await kubectl(kubeconfig, "get", "jobs", "-l", "bifrost.io/status=Failed", "-o", "name")
    assert failed.split() == [f"job.batch/{job_name(bad.execution_id)}"]


async def test_a_job_belongs_to_its_workflow_run(
    backend: KubernetesBackend, apiserver: ApiServer, kubelet: TestKubelet, exits: Exits, settings: Settings
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = "import time; print('working', flush=True); time.sleep(2)"
    other = KubernetesBackend(settings)
    await other.start(exits)
    try:
        # A launch redelivered to another replica finds the WorkflowRun and the Job as they are.
        await asyncio.gather(backend.launch(spec), other.launch(spec))
        await kubelet.printed(job_name(spec.execution_id), "working")
        await exits.of(spec.execution_id)
    finally:
        await other.stop()

    name = job_name(spec.execution_id)
    workflow_run = apiserver.object(WORKFLOW_RUNS, NAMESPACE, name)
    job = apiserver.object(JOBS, NAMESPACE, name)
    assert workflow_run is not None and job is not None
    assert workflow_run["spec"] == {
        "executionId": spec.execution_id, "workflow": "create_user", "org": "org-1", "user": spec.user_id,
        "trigger": "form", "jobName": name,
    }
    assert "ownerReferences" not in workflow_run["metadata"]
    assert job["metadata"]["ownerReferences"] == [owner_reference(workflow_run)]
    # Its pod started: the WorkflowRun says since when.
    assert workflow_run["status"]["phase"] == "Running"
    assert workflow_run["status"]["startedAt"].endswith("Z")
    assert apiserver.creates[WORKFLOW_RUNS] == 2


async def test_deleting_a_workflow_run_cancels_its_run(
    backend: KubernetesBackend, apiserver: ApiServer, kubelet: TestKubelet, exits: Exits, kubeconfig: Path
) -> None:
    spec = launch_spec()
    kubelet.scripts[spec.execution_id] = "import time; print('working', flush=True); time.sleep(120)"
    await backend.launch(spec)
    name = job_name(spec.execution_id)
    await kubelet.printed(name, "working")

    await kubectl(kubeconfig, "delete", "workflowrun", name)
    ended = await exits.of(spec.execution_id)

    assert ended.status is ExecutionStatus.CANCELLED
    assert f"The WorkflowRun {name} was deleted" in ended.reason
    await apiserver.wait_until(lambda: apiserver.object(JOBS, NAMESPACE, name) is None)
    [pod] = [pod for pod in kubelet.pods.values() if pod.job["metadata"]["name"] == name]
    assert pod.process is not None
    await pod.process.wait()
    assert exits.count(spec.execution_id) == 1


async def test_an_ended_runs_workflow_run_and_job_are_deleted_once_its_ttl_has_passed(
    crd: dict[str, Any], apiserver: ApiServer, kubelet: TestKubelet, exits: Exits, settings: Settings
) -> None:
    backend = KubernetesBackend(settings.model_copy(update={"k8s_workflow_run_ttl_seconds": 8}))
    await backend.start(exits)
    try:
        long_ago, just_now, running = launch_spec(), launch_spec(), launch_spec()
        kubelet.scripts[long_ago.execution_id] = kubelet.scripts[just_now.execution_id] = "print('done')"
        kubelet.scripts[running.execution_id] = "import time; print('working', flush=True); time.sleep(120)"
        for spec in (long_ago, just_now, running):
            await backend.launch(spec)
        for spec in (long_ago, just_now):
            await exits.of(spec.execution_id)
        await kubelet.printed(job_name(running.execution_id), "working")
        now = datetime.now(UTC)
        for spec, finished in ((long_ago, now - timedelta(hours=1)), (just_now, now)):
            await backend.run_ended(RunEnd(execution_id=spec.execution_id, status=ExecutionStatus.SUCCESS,
                                           started_at=finished - timedelta(seconds=3), finished_at=finished))
        old, new, live = (job_name(spec.execution_id) for spec in (long_ago, just_now, running))

        await apiserver.wait_until(lambda: apiserver.object(WORKFLOW_RUNS, NAMESPACE, old) is None)
        assert apiserver.object(WORKFLOW_RUNS, NAMESPACE, new) is not None  # finished 8 s ago at the earliest
        await apiserver.wait_until(lambda: apiserver.object(JOBS, NAMESPACE, old) is None)  # it owned its Job
        await apiserver.wait_until(lambda: apiserver.object(WORKFLOW_RUNS, NAMESPACE, new) is None)
        assert apiserver.object(WORKFLOW_RUNS, NAMESPACE, live) is not None  # a run that has not ended stays
        assert exits.count(running.execution_id) == 0  # and is not cancelled
    finally:
        await backend.stop()


@pytest.fixture(params=["without the CRD", "with the setting off"])
async def jobs_alone(request: pytest.FixtureRequest, apiserver: ApiServer, settings: Settings) -> Settings:
    if request.param == "without the CRD":
        return settings
    await install_crd(apiserver)
    return settings.model_copy(update={"k8s_workflow_runs": False})


async def test_without_the_crd_or_with_the_setting_off_runs_are_jobs_alone(
    jobs_alone: Settings, apiserver: ApiServer, kubelet: TestKubelet, exits: Exits
) -> None:
    backend = KubernetesBackend(jobs_alone)
    await backend.start(exits)
    try:
        spec = launch_spec()
        kubelet.scripts[spec.execution_id] = "print('done')"
        await backend.launch(spec)
        assert (await exits.of(spec.execution_id)).exit_code == 0
        await backend.run_ended(RunEnd(execution_id=spec.execution_id, status=ExecutionStatus.SUCCESS))
    finally:
        await backend.stop()

    job = apiserver.object(JOBS, NAMESPACE, job_name(spec.execution_id))
    assert job is not None
    assert "ownerReferences" not in job["metadata"]
    assert job["metadata"]["labels"]["bifrost.io/status"] == "Success"
    assert apiserver.creates[WORKFLOW_RUNS] == 0


def test_a_setting_that_is_no_boolean_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIFROST_K8S_WORKFLOW_RUNS", "sometimes")
    with pytest.raises(ValueError, match="k8s_workflow_runs"):
        Settings()


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_the_crd_and_a_workflow_run_are_valid(version: str) -> None:
    crd = yaml.safe_load(WORKFLOW_RUNS_CRD.read_text())
    kubernetes_validate.validate(crd, version, strict=True)

    settings = Settings(k8s_namespace=NAMESPACE)
    spec = launch_spec(org_id=None, workflow_name="export devices → csv")
    workflow_run = build_workflow_run(spec, settings)
    started = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    workflow_run["status"] = ended_patch(
        "CompletedWithErrors", "x" * 10_000, started, started + timedelta(hours=2, minutes=5)
    )["status"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.validate(workflow_run, schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert workflow_run["spec"]["org"] == "global"
    assert workflow_run["status"]["duration"] == "2h5m"
    assert len(workflow_run["status"]["message"]) == 4096
    with pytest.raises(jsonschema.ValidationError, match="Sometimes"):
        jsonschema.validate({**workflow_run, "status": {"phase": "Sometimes"}}, schema)

    owned = build_job(spec, settings, owner_reference({"metadata": {"name": "x", "uid": str(uuid.uuid4())}}))
    kubernetes_validate.validate(owned, version, strict=True)


def test_durations_read_as_kubectl_writes_them() -> None:
    assert [duration_text(s) for s in (0.4, 45, 60, 187, 3600, 7500, 86400, 90000)] == [
        "0s", "45s", "1m", "3m7s", "1h", "2h5m", "1d", "1d1h",
    ]


def test_the_chart_ships_the_crd_of_k8s() -> None:
    chart = ROOT / "helm" / "bifrost" / "crds" / WORKFLOW_RUNS_CRD.name
    assert chart.read_text() == WORKFLOW_RUNS_CRD.read_text()
