"""The plain manifests in k8s/ and the Helm chart: valid for every supported Kubernetes version, their
configuration is one the control plane accepts, and their RBAC allows exactly what the backend does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from control_plane.settings import K8sToleration, Settings
from tests.k8s.test_spec import SUPPORTED_VERSIONS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "bifrost"
# Every call the kubernetes backend makes in the runner namespace: (API group, resource, verb).
BACKEND_CALLS = {
    ("batch", "jobs", verb) for verb in ("create", "get", "list", "watch", "patch", "delete")
} | {("", "pods", "list"), ("", "pods", "watch"), ("", "pods/log", "get"), ("", "secrets", "create")}

CUSTOM_VALUES: dict[str, Any] = {
    "natsUrl": "nats://nats.messaging:4222",
    "natsAccountSeed": {"existingSecret": "bifrost-nats", "key": "seed"},
    "runner": {
        "namespace": "automation-runs",
        "createNamespace": True,
        "image": {"repository": "registry.example/bifrost-runner", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": ["registry-creds"],
        "nodeSelector": {"workload": "automation"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "automation", "effect": "NoSchedule"}],
        "resources": {"cpuRequest": "250m", "cpuLimit": "2", "memoryRequestMb": 512, "memoryLimitMb": 2048},
        "ttlSecondsAfterFinished": 600,
    },
    "kubernetesApi": {"qps": 20, "burst": 40},
    "bootstrapApiKey": {"existingSecret": "bifrost-admin", "key": "api-key"},
    "workspaceUrl": "s3://automation-workflows/ops",
    "s3": {"endpointUrl": "http://minio.storage:9000", "region": "eu-west-1", "existingSecret": "workspace-s3"},
}


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = helm.Chart.load(CHART).render(values, name="bifrost", namespace="automation")
    return [doc for path, text in rendered.items() if path.endswith(".yaml") for doc in documents(text)]


def plain_manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted((ROOT / "k8s").glob("*.yaml")) for doc in documents(path.read_text())]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [doc for doc in docs if doc["kind"] == kind]
    return doc


def settings_from(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The control plane's settings as the Deployment's environment gives them (Secrets filled in)."""
    for name, value in one(docs, "ConfigMap")["data"].items():
        monkeypatch.setenv(name, value)
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for var in container["env"]:
        if "valueFrom" in var:
            monkeypatch.setenv(var["name"], "x" * 40)
    return Settings()


def granted(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in one(docs, "Role")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("source", ["plain", "chart-defaults", "chart-custom"])
def test_every_manifest_is_valid(source: str, version: str) -> None:
    sources: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "plain": plain_manifests,
        "chart-defaults": lambda: render({}),
        "chart-custom": lambda: render(CUSTOM_VALUES),
    }
    docs = sources[source]()
    assert {doc["kind"] for doc in docs} >= {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment",
                                             "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_chart_configures_the_runners_from_its_values(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(CUSTOM_VALUES)
    settings = settings_from(docs, monkeypatch)

    assert settings.backend == "kubernetes"
    assert settings.k8s_namespace == "automation-runs"
    assert settings.runner_image == "registry.example/bifrost-runner:1.2.3"
    assert settings.runner_image_pull_policy == "Always"
    assert settings.runner_image_pull_secrets == ["registry-creds"]
    assert settings.k8s_node_selector == {"workload": "automation"}
    assert settings.k8s_tolerations == [
        K8sToleration(key="dedicated", operator="Equal", value="automation", effect="NoSchedule")
    ]
    assert (settings.k8s_cpu_request, settings.k8s_cpu_limit) == ("250m", "2")
    assert (settings.k8s_memory_request_mb, settings.k8s_memory_limit_mb) == (512, 2048)
    assert (settings.k8s_qps, settings.k8s_burst) == (20, 40)
    assert settings.k8s_ttl_seconds_after_finished == 600
    assert settings.nats_url == "nats://nats.messaging:4222"
    assert settings.api_url == "http://bifrost.automation.svc:8000"
    env = {var["name"]: var for var in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BIFROST_BOOTSTRAP_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "bifrost-admin", "key": "api-key"}
    assert env["BIFROST_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "bifrost-database", "key": "url"}
    assert env["BIFROST_NATS_ACCOUNT_SEED"]["valueFrom"]["secretKeyRef"] == {"name": "bifrost-nats", "key": "seed"}
    assert settings.nats_account_seed is not None
    assert one(docs, "Namespace")["metadata"]["name"] == "automation-runs"
    assert one(docs, "Role")["metadata"]["namespace"] == "automation-runs"


def test_the_plain_manifests_configure_a_working_control_plane(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(plain_manifests(), monkeypatch)
    assert settings.backend == "kubernetes"
    assert settings.k8s_namespace == "bifrost-runs"
    assert settings.api_url == "http://bifrost.bifrost.svc:8000"


def container_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {var["name"]: var for var in container["env"]}


@pytest.mark.parametrize("source", ["plain", "chart-defaults", "chart-custom"])
def test_every_replica_gets_the_shared_keys_from_a_secret_and_listens_on_all_interfaces(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "plain": plain_manifests,
        "chart-defaults": lambda: render({}),
        "chart-custom": lambda: render(CUSTOM_VALUES),
    }
    docs = sources[source]()
    env = container_env(docs)
    for name in ("BIFROST_SECRET_KEY", "BIFROST_ENCRYPTION_KEYS"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    settings = settings_from(docs, monkeypatch)
    assert settings.encryption_keys is not None and settings.secret_key is not None
    assert settings.host == "0.0.0.0"  # as the control-plane image sets it: reachable through the Service
    assert settings.workspace_url.startswith("s3://")


def test_the_chart_takes_the_workspace_bucket_and_its_credentials_from_its_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = render(CUSTOM_VALUES)
    settings = settings_from(docs, monkeypatch)
    env = container_env(docs)

    assert (settings.workspace_url, settings.s3_endpoint_url, settings.s3_region) == (
        "s3://automation-workflows/ops", "http://minio.storage:9000", "eu-west-1"
    )
    assert {
        name: env[name]["valueFrom"]["secretKeyRef"]
        for name in env
        if name.startswith("BIFROST_S3_")
    } == {
        "BIFROST_S3_ACCESS_KEY_ID": {"name": "workspace-s3", "key": "access-key-id"},
        "BIFROST_S3_SECRET_ACCESS_KEY": {"name": "workspace-s3", "key": "secret-access-key"},
        "BIFROST_S3_RUNNER_ACCESS_KEY_ID": {"name": "workspace-s3", "key": "runner-access-key-id"},
        "BIFROST_S3_RUNNER_SECRET_ACCESS_KEY": {"name": "workspace-s3", "key": "runner-secret-access-key"},
    }
    assert not any(name.startswith("BIFROST_S3_") and "KEY" in name for name in container_env(render({})))


def test_a_folder_workspace_is_refused_by_the_chart_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render({"workspaceUrl": "/srv/workflows"})
    with pytest.raises(ValidationError, match="cannot use the folder workspace /srv/workflows: runner pods cannot"):
        settings_from(docs, monkeypatch)


@pytest.mark.parametrize("source", ["plain", "chart"])
def test_rbac_allows_exactly_what_the_backend_does(source: str) -> None:
    docs = plain_manifests() if source == "plain" else render({})
    assert granted(docs) == BACKEND_CALLS
    binding = one(docs, "RoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_bad_chart_values_are_refused_naming_the_value() -> None:
    bad = {"runner": {"tolerations": [{"key": "gpu", "effect": "Sometimes"}]}}
    with pytest.raises(helm.HelmError, match="effect"):
        render(bad)
