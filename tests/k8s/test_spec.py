"""The Job and Secret of an execution: what `kubectl` users and cluster admins rely on, and schema-valid for
every Kubernetes version we support (1.28 to 1.34)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

from bifrost import workflow, workflow_info
from control_plane.backends.base import RunnerResources, RunnerWorkspace
from control_plane.backends.kubernetes_spec import (
    build_job,
    build_secret,
    inspect_commands,
    job_name,
    label_value,
    secret_name,
)
from control_plane.security.nats_identities import AccountSigner, NatsKeys
from control_plane.settings import K8sToleration, Settings
from tests.k8s.conftest import launch_spec

SUPPORTED_VERSIONS = ["1.28", "1.34"]
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]")


@pytest.fixture
def production() -> Settings:
    return Settings(
        k8s_namespace="automation",
        runner_image="registry.example/bifrost-runner:1.2.3",
        runner_image_pull_policy="Always",
        runner_image_pull_secrets=["registry-creds"],
        k8s_node_selector={"workload": "automation"},
        k8s_tolerations=[K8sToleration(key="dedicated", operator="Equal", value="automation", effect="NoSchedule")],
        k8s_ttl_seconds_after_finished=900,
        k8s_deadline_grace_seconds=60,
    )


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_the_job_and_secret_are_valid_for_every_supported_kubernetes_version(
    production: Settings, version: str
) -> None:
    spec = launch_spec(resources=RunnerResources(cpu_request="500m", cpu_limit="2", memory_limit_mb=4096))
    job = build_job(spec, production)
    kubernetes_validate.validate(job, version, strict=True)
    kubernetes_validate.validate(build_secret(spec, production, "6c1c2b0e-1111-2222-3333-444455556666"), version,
                                 strict=True)


def test_the_job_follows_the_runner_contract(production: Settings) -> None:
    spec = launch_spec(timeout_seconds=300)
    job = build_job(spec, production)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert job["metadata"]["name"] == f"bifrost-run-{spec.execution_id}"
    assert job["metadata"]["namespace"] == "automation"
    assert job["metadata"]["labels"] == job["spec"]["template"]["metadata"]["labels"] == {
        "app.kubernetes.io/name": "bifrost-runner",
        "app.kubernetes.io/managed-by": "bifrost",
        "app.kubernetes.io/part-of": "bifrost",
        "bifrost.io/execution-id": spec.execution_id,
        "bifrost.io/workflow": "create_user",
        "bifrost.io/org": "org-1",
    }
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 360
    assert job["spec"]["ttlSecondsAfterFinished"] == 900
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["nodeSelector"] == {"workload": "automation"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "automation", "effect": "NoSchedule"}
    ]
    assert container["image"] == "registry.example/bifrost-runner:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert container["command"] == ["python", "-m", "bifrost_runner"]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/workspace", "/tmp"}
    assert all("emptyDir" in volume for volume in pod["volumes"])
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1024Mi"},
    }


def test_the_credentials_are_only_in_the_secret_and_referenced_from_the_env(production: Settings) -> None:
    execution_id = str(uuid.uuid4())
    nats = AccountSigner(NatsKeys.generate().account).runner(execution_id, datetime.now(UTC) + timedelta(hours=1))
    spec = launch_spec(execution_id=execution_id, nats_credentials=nats)
    job = build_job(spec, production)
    secret = build_secret(spec, production, "uid-1")
    env = {var["name"]: var for var in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    credentials = {"BIFROST_EXECUTION_TOKEN": spec.token, "BIFROST_NATS_JWT": nats.jwt, "BIFROST_NATS_SEED": nats.seed}
    for name, value in credentials.items():
        assert value not in json.dumps(job)
        assert env[name] == {
            "name": name, "valueFrom": {"secretKeyRef": {"name": secret_name(spec.execution_id), "key": name}}
        }
        assert base64.b64decode(secret["data"][name]).decode() == value
    assert env["BIFROST_EXECUTION_ID"]["value"] == spec.execution_id
    assert secret["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "Job", "name": job_name(spec.execution_id), "uid": "uid-1",
        "controller": True, "blockOwnerDeletion": True,
    }]


def test_runner_pods_run_as_the_configured_service_account_without_its_token(production: Settings) -> None:
    assert "serviceAccountName" not in build_job(launch_spec(), production)["spec"]["template"]["spec"]
    pod = build_job(launch_spec(), production.model_copy(update={"k8s_runner_service_account": "runner"}))
    assert pod["spec"]["template"]["spec"]["serviceAccountName"] == "runner"
    assert pod["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_a_service_account_name_that_kubernetes_refuses_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIFROST_K8S_RUNNER_SERVICE_ACCOUNT", "Runner_SA")
    with pytest.raises(ValidationError, match="k8s_runner_service_account"):
        Settings()


def resources_of(job: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    return resources


def test_a_workflow_can_raise_its_resources(production: Settings) -> None:
    spec = launch_spec(resources=RunnerResources(cpu_request="2", memory_limit_mb=8192))
    assert resources_of(build_job(spec, production)) == {
        "requests": {"cpu": "2", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "8192Mi"},  # a limit below the request would be refused
    }


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_the_resources_of_a_workflow_land_in_its_job(production: Settings, version: str) -> None:
    @workflow(resources={"cpu_request": "750m", "cpu_limit": "3", "memory_request_mb": 1536, "memory_limit_mb": 6144})
    def rebuild_index() -> None: ...

    spec = launch_spec(resources=RunnerResources.of_workflow(workflow_info(rebuild_index).resources))
    job = build_job(spec, production)
    kubernetes_validate.validate(job, version, strict=True)
    assert resources_of(job) == {
        "requests": {"cpu": "750m", "memory": "1536Mi"},
        "limits": {"cpu": "3", "memory": "6144Mi"},
    }


def test_a_request_above_the_default_limit_raises_the_limit(production: Settings) -> None:
    spec = launch_spec(resources=RunnerResources(cpu_request="1500m", memory_request_mb=2048))
    assert resources_of(build_job(spec, production)) == {
        "requests": {"cpu": "1500m", "memory": "2048Mi"},
        "limits": {"cpu": "1500m", "memory": "2048Mi"},
    }


def test_a_memory_limit_below_the_default_request_lowers_the_request(production: Settings) -> None:
    spec = launch_spec(memory_limit_mb=128)
    assert resources_of(build_job(spec, production))["requests"]["memory"] == "128Mi"


def test_bad_resources_name_the_field() -> None:
    with pytest.raises(ValidationError, match="cpu_limit"):
        RunnerResources(cpu_limit="two cores")
    with pytest.raises(ValidationError, match="memory_limit_mb"):
        RunnerResources(memory_limit_mb=0)


def test_bad_toleration_settings_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIFROST_K8S_TOLERATIONS", '[{"key": "gpu", "effect": "Sometimes"}]')
    with pytest.raises(ValidationError, match=r"k8s_tolerations\.0\.effect"):
        Settings()


def test_names_and_labels_stay_valid_for_any_workflow_or_org_name(production: Settings) -> None:
    spec = launch_spec(
        execution_id="Exec_ID.With/odd chars" * 4,
        workflow_name="export ninjaone devices → csv (nightly run for every customer org)",
        org_id="org/with spaces",
    )
    job = build_job(spec, production)
    labels = job["metadata"]["labels"]

    kubernetes_validate.validate(job, SUPPORTED_VERSIONS[-1], strict=True)
    assert DNS_LABEL.fullmatch(job["metadata"]["name"])
    assert all(LABEL_VALUE.fullmatch(value) for value in labels.values())
    assert job_name(spec.execution_id) != job_name(spec.execution_id + "x")
    assert job["metadata"]["annotations"]["bifrost.io/workflow"] == spec.workflow_name
    assert job["metadata"]["annotations"]["bifrost.io/execution-id"] == spec.execution_id
    assert label_value("create_user") == "create_user"


def test_kubectl_commands_inspect_the_job_its_pod_and_its_logs() -> None:
    assert inspect_commands("automation", "bifrost-run-1") == [
        "kubectl -n automation get job bifrost-run-1",
        "kubectl -n automation describe job bifrost-run-1",
        "kubectl -n automation get pods -l job-name=bifrost-run-1",
        "kubectl -n automation logs job/bifrost-run-1",
    ]


def test_the_runner_caches_the_workspace_in_its_own_volume_not_in_a_control_plane_folder(
    production: Settings,
) -> None:
    workspace = RunnerWorkspace(
        url="s3://bifrost-workspace/ops",
        s3_endpoint_url="http://minio.storage:9000",
        s3_access_key_id="runner-reader",
        s3_secret_access_key="reader-secret",
        cache_dir="/var/lib/bifrost/runner-cache",
    )
    spec = launch_spec(workspace_dir=None, workspace=workspace)
    job = build_job(spec, production)
    env = {var["name"]: var for var in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert env["BIFROST_WORKSPACE_CACHE_DIR"]["value"] == "/workspace"
    assert {"name": "workspace", "emptyDir": {}} in job["spec"]["template"]["spec"]["volumes"]
    assert "/var/lib/bifrost/runner-cache" not in json.dumps(job)
    assert env["BIFROST_WORKSPACE_URL"]["value"] == "s3://bifrost-workspace/ops"
    assert "reader-secret" not in json.dumps(job)
    secret = build_secret(spec, production, "uid-1")
    assert base64.b64decode(secret["data"]["BIFROST_S3_SECRET_ACCESS_KEY"]).decode() == "reader-secret"


def test_the_kubernetes_backend_refuses_a_folder_workspace_runners_cannot_see(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=f"cannot use the folder workspace {tmp_path}: runner pods cannot see"):
        Settings(backend="kubernetes", workspace_url=str(tmp_path))
    assert Settings(backend="kubernetes", workspace_url="s3://bucket/ops").workspace_dir is None


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_a_folder_workspace_on_a_volume_claim_is_mounted_read_only_at_its_path(tmp_path: Path, version: str) -> None:
    settings = Settings(backend="kubernetes", workspace_url=str(tmp_path), k8s_workspace_volume_claim="workflows")
    spec = launch_spec(workspace_dir=None, workspace=RunnerWorkspace.from_settings(settings))
    job = build_job(spec, settings)
    pod = job["spec"]["template"]["spec"]

    kubernetes_validate.validate(job, version, strict=True)
    assert {"name": "workspace-source", "persistentVolumeClaim": {"claimName": "workflows", "readOnly": True}} in (
        pod["volumes"]
    )
    assert {"name": "workspace-source", "mountPath": str(tmp_path), "readOnly": True} in (
        pod["containers"][0]["volumeMounts"]
    )
    env = {var["name"]: var.get("value") for var in pod["containers"][0]["env"]}
    assert (env["BIFROST_WORKSPACE_URL"], env["BIFROST_WORKSPACE_CACHE_DIR"]) == (str(tmp_path), "/workspace")
