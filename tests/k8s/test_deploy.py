"""The plain manifests in k8s/ and the Helm chart: valid for every supported Kubernetes version, their
configuration is one the control plane accepts, their RBAC allows exactly what the backend does, and the chart
refuses wrong values naming them. The Role against the backend's calls: test_rbac.py."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet
from pydantic import ValidationError

from control_plane.backends.kubernetes_spec import build_job, runner_labels
from control_plane.security.nats_identities import AccountSigner, NatsKeys
from control_plane.settings import K8sToleration, Settings
from tests.k8s.conftest import launch_spec
from tests.k8s.test_spec import SUPPORTED_VERSIONS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "bifrost"
RELEASE_NAMESPACE = "automation"
METADATA_ADDRESS = ipaddress.IPv4Network("169.254.169.254/32")
# Kinds of CRDs kubernetes-validate has no schema for.
CUSTOM_KINDS = {"ServiceMonitor", "HTTPRoute"}

PRODUCTION_VALUES: dict[str, Any] = {
    "fullnameOverride": "ops-bifrost",
    "image": {"repository": "registry.example/bifrost", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": ["registry-creds"],
    "replicaCount": 3,
    "podAnnotations": {"example.com/team": "ops"},
    "podLabels": {"example.com/cost-center": "it"},
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["services"]}]}
    ]}}},
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
    ],
    "priorityClassName": "business-critical",
    "extraVolumes": [{"name": "company-ca", "configMap": {"name": "company-ca"}}],
    "extraVolumeMounts": [{"name": "company-ca", "mountPath": "/etc/company-ca", "readOnly": True}],
    "extraEnv": [{"name": "SSL_CERT_FILE", "value": "/etc/company-ca/ca.crt"}],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/bifrost"}},
    "ingress": {"enabled": True, "className": "nginx", "host": "bifrost.example.com", "tlsSecretName": "bifrost-tls"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "httpRoute": {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gateways"}],
                  "hostnames": ["bifrost.example.com"]},
    "nats": {
        "url": "tls://nats.messaging:4222",
        "accountSeed": {"existingSecret": "bifrost-nats", "key": "seed"},
    },
    "database": {"existingSecret": "bifrost-database", "key": "url"},
    "secretKey": {"existingSecret": "bifrost-keys", "key": "secret-key"},
    "encryptionKeys": {"existingSecret": "bifrost-keys", "key": "encryption-keys"},
    "bootstrapApiKey": {"existingSecret": "bifrost-admin", "key": "api-key"},
    "workspaceUrl": "s3://automation-workflows/ops",
    "s3": {"endpointUrl": "http://minio.storage:9000", "region": "eu-west-1", "existingSecret": "workspace-s3"},
    "runner": {
        "namespace": "automation-runs",
        "createNamespace": True,
        "image": {"repository": "registry.example/bifrost-runner", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": ["registry-creds"],
        "serviceAccount": {"create": True, "name": "workflows", "annotations": {"eks.amazonaws.com/role-arn": "r"}},
        "nodeSelector": {"workload": "automation"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "automation", "effect": "NoSchedule"}],
        "resources": {"cpuRequest": "250m", "cpuLimit": "2", "memoryRequestMb": 512, "memoryLimitMb": 2048},
        "ttlSecondsAfterFinished": 600,
        "networkPolicy": {"enabled": True, "egress": [
            {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 4222}]},
            {"to": [{"ipBlock": {"cidr": "10.30.0.10/32"}}], "ports": [{"protocol": "TCP", "port": 9000}]},
        ]},
    },
    "kubernetesApi": {"qps": 20, "burst": 40},
}
# Bundled NATS and PostgreSQL, every key generated: the defaults, with the runner Jobs in a namespace of their own.
EVALUATION_VALUES: dict[str, Any] = {
    "imagePullSecrets": ["registry-creds"],
    "s3": {"endpointUrl": "http://seaweedfs.storage:8333", "existingSecret": "workspace-s3"},
    "runner": {"namespace": "bifrost-runs", "createNamespace": True},
}
SOURCES: dict[str, dict[str, Any]] = {"defaults": {}, "evaluation": EVALUATION_VALUES, "production": PRODUCTION_VALUES}


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def rendered(values: dict[str, Any]) -> dict[str, str]:
    result: dict[str, str] = helm.Chart.load(CHART).render(values, name="bifrost", namespace=RELEASE_NAMESPACE)
    return result


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for path, text in rendered(values).items() if path.endswith(".yaml") for doc in documents(text)]


def plain_manifests() -> list[dict[str, Any]]:
    return [doc for name in ("namespace.yaml", "bifrost.yaml") for doc in documents((ROOT / "k8s" / name).read_text())]


def plain_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((ROOT / "k8s" / "values.yaml").read_text())
    return values


def all_of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [doc for doc in all_of(docs, kind) if name is None or doc["metadata"]["name"] == name]
    return doc


def control_plane(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = all_of(docs, "Deployment")
    pod: dict[str, Any] = deployment["spec"]["template"]
    return pod


def container_env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in control_plane(docs)["spec"]["containers"][0]["env"]}


def secret_value(docs: list[dict[str, Any]], ref: dict[str, str]) -> str:
    secret = one(docs, "Secret", ref["name"])
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def settings_from(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The control plane's settings as the Deployment's environment gives them: the chart's generated Secret as
    rendered, a Secret the user provides as a placeholder."""
    config_maps = {doc["metadata"]["name"]: doc for doc in all_of(docs, "ConfigMap")}
    for source in control_plane(docs)["spec"]["containers"][0]["envFrom"]:
        for name, value in config_maps[source["configMapRef"]["name"]]["data"].items():
            monkeypatch.setenv(name, value)
    generated = {doc["metadata"]["name"] for doc in all_of(docs, "Secret")}
    for name, var in container_env(docs).items():
        if "value" in var:
            monkeypatch.setenv(name, var["value"])
            continue
        ref = var["valueFrom"]["secretKeyRef"]
        # Valid for every setting a Secret feeds, the NATS account seed included.
        placeholder = NatsKeys.generate().account
        monkeypatch.setenv(name, secret_value(docs, ref) if ref["name"] in generated else placeholder)
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
@pytest.mark.parametrize("source", ["plain", *SOURCES])
def test_every_manifest_is_valid(source: str, version: str) -> None:
    docs = plain_manifests() if source == "plain" else render(SOURCES[source])
    assert {doc["kind"] for doc in docs} >= {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment",
                                             "Service"}
    for doc in docs:
        if doc["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("source", SOURCES)
def test_the_control_plane_accepts_and_reads_every_setting_the_chart_gives_it(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(SOURCES[source])
    settings = settings_from(docs, monkeypatch)
    fields = {f"BIFROST_{name.upper()}" for name in Settings.model_fields}
    assert set(one(docs, "ConfigMap", "ops-bifrost" if source == "production" else "bifrost")["data"]) <= fields
    assert set(container_env(docs)) - {var["name"] for var in PRODUCTION_VALUES["extraEnv"]} <= fields
    assert settings.backend == "kubernetes"
    assert settings.host == "0.0.0.0"  # reachable through the Service
    assert settings.workspace_url.startswith("s3://")
    assert settings.encryption_keys is not None and settings.secret_key is not None
    assert settings.bootstrap_api_key is not None
    assert settings.nats_account_seed is not None


def test_the_chart_configures_the_runners_from_its_values(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(PRODUCTION_VALUES)
    settings = settings_from(docs, monkeypatch)

    assert settings.k8s_namespace == "automation-runs"
    assert settings.runner_image == "registry.example/bifrost-runner:1.2.3"
    assert settings.runner_image_pull_policy == "Always"
    assert settings.runner_image_pull_secrets == ["registry-creds"]
    assert settings.k8s_runner_service_account == "workflows"
    assert settings.k8s_node_selector == {"workload": "automation"}
    assert settings.k8s_tolerations == [
        K8sToleration(key="dedicated", operator="Equal", value="automation", effect="NoSchedule")
    ]
    assert (settings.k8s_cpu_request, settings.k8s_cpu_limit) == ("250m", "2")
    assert (settings.k8s_memory_request_mb, settings.k8s_memory_limit_mb) == (512, 2048)
    assert (settings.k8s_qps, settings.k8s_burst) == (20, 40)
    assert settings.k8s_ttl_seconds_after_finished == 600
    assert settings.nats_url == "tls://nats.messaging:4222"
    assert settings.api_url == "http://ops-bifrost.automation.svc:8000"
    env = container_env(docs)
    assert env["BIFROST_BOOTSTRAP_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "bifrost-admin", "key": "api-key"}
    assert env["BIFROST_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "bifrost-database", "key": "url"}
    assert env["BIFROST_NATS_ACCOUNT_SEED"]["valueFrom"]["secretKeyRef"] == {"name": "bifrost-nats", "key": "seed"}
    account = one(docs, "ServiceAccount", "workflows")
    assert account["metadata"]["namespace"] == "automation-runs"
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "r"}
    assert one(docs, "Role")["metadata"]["namespace"] == "automation-runs"


def test_with_external_services_and_secrets_the_chart_runs_and_generates_nothing() -> None:
    docs = render(PRODUCTION_VALUES)
    assert all_of(docs, "Secret") == []
    assert all_of(docs, "StatefulSet") == []
    assert all_of(docs, "PersistentVolumeClaim") == []


def test_an_evaluation_install_bundles_nats_and_postgresql_with_generated_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = render({})
    settings = settings_from(docs, monkeypatch)
    assert {doc["metadata"]["name"] for doc in all_of(docs, "StatefulSet")} == {"bifrost-nats", "bifrost-postgresql"}
    assert settings.nats_url == "nats://bifrost-nats.automation.svc:4222"
    assert settings.resolved_database_url.startswith(
        "postgresql+psycopg://bifrost:"
    ) and settings.resolved_database_url.endswith("@bifrost-postgresql.automation.svc:5432/bifrost")
    secret = one(docs, "Secret", "bifrost-generated")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    Fernet(data["encryption-keys"])
    assert data["bootstrap-api-key"].startswith("bfk_")
    assert len(data["secret-key"]) >= 32
    assert f":{data['postgres-password']}@" in data["database-url"]
    keys = NatsKeys.model_validate_json(data["nats-keys.json"])
    assert AccountSigner(data["nats-account-seed"]).account_public_key == AccountSigner(keys.account).account_public_key
    postgres = one(docs, "StatefulSet", "bifrost-postgresql")["spec"]["template"]["spec"]["containers"][0]
    password = {var["name"]: var for var in postgres["env"]}["POSTGRES_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {"name": "bifrost-generated", "key": "postgres-password"}
    for name in ("bifrost-nats", "bifrost-postgresql"):
        [claim] = one(docs, "StatefulSet", name)["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["resources"]["requests"]["storage"]


def test_secrets_named_as_existing_ones_are_not_generated() -> None:
    values = {
        "secretKey": {"existingSecret": "keys", "key": "signing"},
        "encryptionKeys": {"existingSecret": "keys", "key": "fernet"},
        "bootstrapApiKey": {"existingSecret": "admin", "key": "api-key"},
    }
    docs = render(values)
    assert set(one(docs, "Secret")["data"]) == {"nats-keys.json", "nats-account-seed", "postgres-password",
                                                 "database-url"}
    env = container_env(docs)
    assert env["BIFROST_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "keys", "key": "signing"}
    assert env["BIFROST_ENCRYPTION_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "keys", "key": "fernet"}


def test_nats_credentials_never_reach_a_config_map_or_a_runner_job(monkeypatch: pytest.MonkeyPatch) -> None:
    for values in SOURCES.values():
        docs = render(values)
        secrets = [base64.b64decode(value).decode() for doc in all_of(docs, "Secret") for value in doc["data"].values()]
        for config_map in all_of(docs, "ConfigMap"):
            text = yaml.safe_dump(config_map)
            assert "SEED" not in text and all(secret not in text for secret in secrets)
        settings = settings_from(docs, monkeypatch)
        env = {var["name"]: var for var in build_job(launch_spec(nats_url=settings.nats_url), settings)
               ["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert "@" not in env["BIFROST_NATS_URL"]["value"]


def test_the_namespace_is_rendered_only_when_asked_for_another_one_and_kept_on_uninstall() -> None:
    assert all_of(render({"runner": {"namespace": RELEASE_NAMESPACE, "createNamespace": True}}), "Namespace") == []
    assert all_of(render({"runner": {"namespace": "runs"}}), "Namespace") == []
    namespace = one(render({"runner": {"namespace": "runs", "createNamespace": True}}), "Namespace")
    assert namespace["metadata"]["name"] == "runs"
    assert namespace["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_the_plain_manifests_are_what_the_chart_renders_for_their_values() -> None:
    def key(doc: dict[str, Any]) -> tuple[str, str, str]:
        return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]

    rendered = helm.Chart.load(CHART).render(plain_values(), name="bifrost", namespace="bifrost")
    chart = sorted((doc for path, text in rendered.items() if path.endswith(".yaml") for doc in documents(text)),
                   key=key)
    plain = sorted(documents((ROOT / "k8s" / "bifrost.yaml").read_text()), key=key)
    assert [key(doc) for doc in plain] == [key(doc) for doc in chart]
    for ours, theirs in zip(plain, chart, strict=True):
        assert ours == theirs, f"k8s/bifrost.yaml differs from the chart in {key(ours)}: render it anew (k8s/README.md)"
    [namespace] = documents((ROOT / "k8s" / "namespace.yaml").read_text())
    assert namespace["metadata"]["name"] == one(chart, "Deployment")["metadata"]["namespace"]


def test_the_plain_manifests_configure_a_working_control_plane(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(plain_manifests(), monkeypatch)
    assert settings.backend == "kubernetes"
    assert settings.k8s_namespace == "bifrost-runs"
    assert settings.api_url == "http://bifrost.bifrost.svc:8000"


def test_the_chart_takes_the_workspace_bucket_and_its_credentials_from_its_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = render(PRODUCTION_VALUES)
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
    # Without a Secret: the pods' cloud identity, through their ServiceAccounts' annotations.
    assert not any(name.startswith("BIFROST_S3_") and "KEY" in name for name in container_env(render({})))
    assert one(docs, "ServiceAccount", "ops-bifrost")["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/bifrost"
    }


@pytest.mark.parametrize("source", ["plain", "chart"])
def test_the_role_is_bound_to_the_control_planes_service_account(source: str) -> None:
    docs = plain_manifests() if source == "plain" else render({})
    binding = one(docs, "RoleBinding")
    deployment = one(docs, "Deployment")
    account_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    account = one(docs, "ServiceAccount", account_name)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account_name, "namespace": account["metadata"]["namespace"]}
    ]


def test_the_control_plane_pods_are_probed_confined_spread_and_protected() -> None:
    docs = render(PRODUCTION_VALUES)
    pod = control_plane(docs)
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 300
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert all(container[probe]["timeoutSeconds"] for probe in ("startupProbe", "readinessProbe", "livenessProbe"))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}
    }
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert spec["topologySpreadConstraints"] == [{
        "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": selector},
    }]
    assert spec["affinity"] == PRODUCTION_VALUES["affinity"]
    assert spec["priorityClassName"] == "business-critical"
    assert spec["imagePullSecrets"] == [{"name": "registry-creds"}]
    assert pod["metadata"]["annotations"]["example.com/team"] == "ops"
    assert pod["metadata"]["labels"] == selector | {"example.com/cost-center": "it"}
    assert {"name": "company-ca", "configMap": {"name": "company-ca"}} in spec["volumes"]
    assert {"name": "company-ca", "mountPath": "/etc/company-ca", "readOnly": True} in container["volumeMounts"]
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    default_spread = control_plane(render({}))["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in default_spread] == ["kubernetes.io/hostname"]


@pytest.mark.parametrize("source", SOURCES)
def test_every_pod_of_the_chart_runs_confined(source: str) -> None:
    docs = render(SOURCES[source])
    services = [doc["spec"]["template"]["spec"] for doc in all_of(docs, "StatefulSet")]
    others = [*services, *(doc["spec"] for doc in all_of(docs, "Pod"))]
    for pod in [control_plane(docs)["spec"], *others]:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in [*pod["containers"], *pod.get("initContainers", [])]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}
            }, container["name"]
    if SOURCES[source].get("imagePullSecrets"):
        assert all(pod["imagePullSecrets"] == [{"name": "registry-creds"}] for pod in others)
    # Only the control plane talks to the Kubernetes API.
    assert all(pod["automountServiceAccountToken"] is False for pod in others)
    for pod in services:
        [container] = pod["containers"]
        assert {"readinessProbe", "livenessProbe"} <= set(container), container["name"]


def test_a_changed_setting_rolls_the_control_plane() -> None:
    before = control_plane(render(PRODUCTION_VALUES))["metadata"]["annotations"]
    after = control_plane(render(PRODUCTION_VALUES | {"kubernetesApi": {"qps": 30, "burst": 40}}))
    assert after["metadata"]["annotations"]["checksum/config"] != before["checksum/config"]
    assert after["metadata"]["annotations"]["checksum/secrets"] == before["checksum/secrets"]


def test_runner_pods_reach_only_dns_the_api_nats_and_what_the_admin_allows() -> None:
    for values in SOURCES.values():
        docs = render(values)
        runners_namespace = settings_namespace(docs)
        [policy] = [doc for doc in all_of(docs, "NetworkPolicy") if doc["metadata"]["name"].endswith("-runners")]
        assert policy["metadata"]["namespace"] == runners_namespace
        selected = policy["spec"]["podSelector"]["matchLabels"]
        assert selected.items() <= runner_labels(launch_spec()).items()
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and policy["spec"]["ingress"] == []
        egress = policy["spec"]["egress"]
        ports = [port["port"] for rule in egress for port in rule["ports"]]
        assert 5432 not in ports
        api = one(docs, "Service", control_plane_name(docs))["spec"]["selector"]
        assert any(peer.get("podSelector", {}).get("matchLabels") == api for rule in egress for peer in rule["to"])
        for rule in egress:
            for peer in rule["to"]:
                labels = peer.get("podSelector", {}).get("matchLabels", {})
                assert labels.get("app.kubernetes.io/component") != "postgresql"
                if "ipBlock" in peer:
                    block = ipaddress.IPv4Network(peer["ipBlock"]["cidr"])
                    excluded = [ipaddress.IPv4Network(c) for c in peer["ipBlock"].get("except", [])]
                    assert not METADATA_ADDRESS.subnet_of(block) or any(
                        METADATA_ADDRESS.subnet_of(c) for c in excluded
                    )
    assert all_of(render({"runner": {"networkPolicy": {"enabled": False, "egress": []}}}), "NetworkPolicy") == [
        one(render({}), "NetworkPolicy", "bifrost-postgresql")
    ]


def settings_namespace(docs: list[dict[str, Any]]) -> str:
    [config_map] = [doc for doc in all_of(docs, "ConfigMap") if "BIFROST_K8S_NAMESPACE" in doc["data"]]
    namespace: str = config_map["data"]["BIFROST_K8S_NAMESPACE"]
    return namespace


def control_plane_name(docs: list[dict[str, Any]]) -> str:
    name: str = one(docs, "Deployment")["metadata"]["name"]
    return name


def test_only_the_control_plane_reaches_the_bundled_postgresql() -> None:
    docs = render({})
    policy = one(docs, "NetworkPolicy", "bifrost-postgresql")
    [rule] = policy["spec"]["ingress"]
    control_plane_pods = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert rule["from"] == [{"podSelector": {"matchLabels": control_plane_pods}}]


def test_ingress_and_service_monitor_are_rendered_only_when_enabled() -> None:
    assert all_of(render({}), "Ingress") == all_of(render({}), "ServiceMonitor") == []
    docs = render(PRODUCTION_VALUES)
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["bifrost.example.com"], "secretName": "bifrost-tls"}]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": "ops-bifrost", "port": {"name": "http"}
    }
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(docs, "Service")["metadata"]["labels"].items()


def test_an_http_route_attaches_the_api_to_the_gateways_given() -> None:
    assert all_of(render({}), "HTTPRoute") == []
    route = one(render(PRODUCTION_VALUES), "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert route["spec"]["hostnames"] == ["bifrost.example.com"]
    assert route["spec"]["rules"] == [{
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{"name": "ops-bifrost", "port": 8000}],
    }]


@pytest.mark.parametrize("source", SOURCES)
def test_the_chart_lints_clean(source: str) -> None:
    report = helm.lint(CHART, SOURCES[source], strict=True, namespace=RELEASE_NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_helm_test_pod_signs_in_with_the_bootstrap_key() -> None:
    for values, key in ((PRODUCTION_VALUES, {"name": "bifrost-admin", "key": "api-key"}),
                        ({}, {"name": "bifrost-generated", "key": "bootstrap-api-key"})):
        docs = render(values)
        [test_pod] = all_of(docs, "Pod")
        assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        env = {var["name"]: var for var in test_pod["spec"]["containers"][0]["env"]}
        assert env["BIFROST_API_KEY"]["valueFrom"]["secretKeyRef"] == key
        assert env["BIFROST_URL"]["value"].startswith(f"http://{control_plane_name(docs)}.automation.svc:")
    assert all_of(render({"tests": {"enabled": False}}), "Pod") == []


def documented_values() -> dict[str, Any]:
    """The production values file of docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```yaml\n")[1:]]
    [block] = [block for block in blocks if block.startswith("# values-production")]
    values: dict[str, Any] = yaml.safe_load(block)
    return values


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_the_documented_production_values_render_valid_objects(version: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(documented_values())
    for doc in docs:
        if doc["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)
    assert all_of(docs, "StatefulSet") == []
    settings = settings_from(docs, monkeypatch)
    assert (settings.nats_url, settings.k8s_namespace) == ("nats://nats.messaging:4222", "bifrost-runs")


def test_the_documented_pool_class_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    [block] = [part.split("```", 1)[0] for part in text.split("```yaml\n")[1:] if "classes:" in part.split("```")[0]]
    settings = settings_from(render(yaml.safe_load(block)), monkeypatch)
    large = settings.k8s_pool_classes["large"]
    assert (large.size, large.resources.memory_limit_mb, large.resources.cpu_limit) == (1, 4096, "2")


WRONG_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"replicaCont": 3}, "replicaCont"),
    ({"runner": {"imagePullSecret": "regcred"}}, "imagePullSecret"),
    ({"imagePullSecrets": [{"name": "regcred"}]}, "/imagePullSecrets/0"),
    ({"service": {"type": "Foo"}}, "/service/type"),
    ({"service": {"port": 70000}}, "/service/port"),
    ({"runner": {"namespace": "Bad_NS"}}, "Bad_NS"),
    ({"runner": {"createNamespace": True}}, "/runner/namespace"),
    ({"runner": {"tolerations": [{"key": "gpu", "effect": "Sometimes"}]}}, "/runner/tolerations/0/effect"),
    ({"runner": {"resources": {"cpuRequest": "lots"}}}, "lots"),
    ({"runner": {"serviceAccount": {"name": "Runner_SA"}}}, "Runner_SA"),
    ({"runner": {"networkPolicy": {"egress": [{"to": [{"ipBlok": {}}]}]}}}, "ipBlok"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"image": {"repository": "Registry/Bifrost"}}, "Registry/Bifrost"),
    ({"nats": {"url": "nats://bifrost:hunter2@nats:4222"}}, "nats://bifrost:hunter2@nats:4222"),
    ({"nats": {"url": "http://nats:4222"}}, "http://nats:4222"),
    ({"natsUrl": "nats://nats:4222"}, "natsUrl"),
    ({"database": {"existingSecret": "DB secret"}}, "DB secret"),
    ({"secretKey": {"existingSecret": "keys", "key": "a/b"}}, "a/b"),
    ({"workspaceUrl": "/srv/workflows"}, "/srv/workflows"),
    ({"publicUrl": "bifrost.example.com"}, "bifrost.example.com"),
    ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "/podDisruptionBudget/maxUnavailable"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Maybe"}]},
     "whenUnsatisfiable"),
    ({"extraEnv": [{"name": "A", "valu": "1"}]}, "valu"),
    ({"extraVolumeMounts": [{"name": "ca", "mountPath": "etc/ca"}]}, "etc/ca"),
    ({"ingress": {"enabled": True, "host": "Bifrost Example"}}, "Bifrost Example"),
    ({"serviceMonitor": {"interval": "often"}}, "often"),
    ({"httpRoute": {"enabled": True}}, "/httpRoute/parentRefs"),
    ({"nats": {"bundled": {"storage": {"size": "big"}}}}, "big"),
    ({"kubernetesApi": {"qps": 0}}, "/kubernetesApi/qps"),
    ({"runner": {"pool": {"classes": {"Large": {"resources": {"memory_limit_mb": 4096}}}}}}, "Large"),
    ({"runner": {"pool": {"classes": {"large": {"resources": {"gpus": 1}}}}}}, "gpus"),
    ({"tests": {"enabled": "yes"}}, "/tests/enabled"),
]


@pytest.mark.parametrize(("values", "named"), WRONG_VALUES, ids=[named for _, named in WRONG_VALUES])
def test_wrong_values_are_refused_naming_the_value(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm.HelmError) as refused:
        render(values)
    assert named in str(refused.value)


def test_an_account_seed_without_an_external_nats_is_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"nats\.accountSeed\.existingSecret is for an external NATS"):
        render({"nats": {"accountSeed": {"existingSecret": "seed", "key": "seed"}}})


def test_a_folder_workspace_is_refused_by_the_settings_the_plain_manifests_feed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BIFROST_WORKSPACE_URL", "/srv/workflows")
    monkeypatch.setenv("BIFROST_BACKEND", "kubernetes")
    with pytest.raises(ValidationError, match="cannot use the folder workspace /srv/workflows: runner pods cannot"):
        Settings()

