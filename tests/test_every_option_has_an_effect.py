"""Every option `@workflow` and `@data_provider` accept, and every setting, does something.

`test_every_option_and_setting_names_the_test_that_shows_its_effect` goes through all of them (read from the
options models and from `Settings`, so a new one cannot be added without an entry) and names, for each, the test
that changes it and shows what behaves differently; the entries that point to this module are the tests below.
"""

from __future__ import annotations

import ast
import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from bifrost._internal.workspace import kept_file_path
from bifrost.metadata import DataProviderOptions, WorkflowOptions
from control_plane.backends.base import RunnerWorkspace
from control_plane.backends.container_spec import run_arguments
from control_plane.backends.kubernetes_api import KubernetesApi, load_api_client
from control_plane.backends.kubernetes_spec import build_job
from control_plane.db.models import LoginFailure, UiSession, utcnow
from control_plane.db.session import make_engine
from control_plane.security.bootstrap import ADMIN_EMAIL
from control_plane.settings import K8sToleration, Settings
from control_plane.workspace_store import store_from_settings
from tests.api.conftest import ADMIN_KEY, Bifrost, eventually, finished, running_bifrost
from tests.k8s.conftest import apiserver, kubeconfig, launch_spec
from tests.security.conftest import form_csrf

__all__ = ["apiserver", "kubeconfig"]

HERE = "tests/test_every_option_has_an_effect.py"

WORKFLOW_OPTIONS = {
    "name": "tests/sdk/test_decorators.py::test_decorator_with_options_on_a_plain_function",
    "description": "tests/sdk/test_decorators.py::test_explicit_description_wins_over_the_docstring",
    "category": "tests/api/test_api.py::test_lists_and_describes_workflows",
    "tags": "tests/api/test_api.py::test_lists_and_describes_workflows",
    "execution_mode": "tests/api/test_runs.py::test_sync_workflow_answers_with_its_result",
    "schedule": "tests/schedules/test_scheduler.py::test_the_schedule_of_a_decorator_follows_it",
    "timeout_seconds": "tests/api/test_runs.py::test_timeout_ends_a_workflow_that_runs_too_long",
    "endpoint_enabled": "tests/api/test_api.py::test_endpoints_serve_only_endpoint_enabled_workflows",
    "retries": "tests/api/test_retries_and_limits.py::test_a_failed_execution_is_retried_after_its_backoff",
    "max_concurrency": "tests/api/test_retries_and_limits.py::test_runs_of_a_workflow_limited_to_one_never_overlap",
    "resources": "tests/security/test_local_sandbox.py::test_a_workflows_own_memory_limit_applies",
}

DATA_PROVIDER_OPTIONS = {
    "name": "tests/sdk/test_decorators.py::test_data_provider_bare_and_with_options",
    "description": "tests/sdk/test_decorators.py::test_data_provider_bare_and_with_options",
    "category": "tests/sdk/test_decorators.py::test_data_provider_bare_and_with_options",
}

DATA_PROVIDER_OPTIONS_APPLIED_WHERE_PROVIDERS_RUN = {
    "timeout_seconds": "how long one call of the provider may take",
    "cache_ttl_seconds": "how long its options are reused for the same organization",
}
"""Options of a data provider that take effect when a form calls it: recorded with the provider by the registry,
applied by the data-provider API that runs providers for forms."""

SETTINGS = {
    "data_dir": "tests/runner/test_local_backend.py::test_each_runner_logs_to_the_file_of_its_execution",
    "database_url": "tests/api/test_api.py::test_executions_list_newest_first_with_cursor_pages",
    "workspace_url": "tests/storage/test_stores.py::test_settings_open_the_store_they_name",
    "nats_url": "tests/engine/test_nats_and_replicas.py::test_the_engine_starts_its_own_nats_when_none_is_configured",
    "nats_account_seed": (
        "tests/api/test_cli.py::test_an_external_nats_set_up_with_nats_config_gives_runners_their_own_identity"
    ),
    "backend": "tests/engine/test_nats_and_replicas.py::test_the_configured_backend_is_created",
    "host": f"{HERE}::test_the_api_listens_on_the_configured_host",
    "port": "tests/api/test_cli.py::test_serve_prints_the_url_and_the_admin_key_only_on_the_first_start",
    "public_url": "tests/engine/test_dispatch.py::test_a_queued_execution_is_launched_once_with_its_token",
    "bootstrap_api_key": "tests/api/test_auth.py::test_bootstrap_uses_the_configured_key_without_showing_it",
    "secret_key": "tests/api/test_auth.py::test_configured_secret_key_wins",
    "encryption_keys": "tests/security/test_encryption.py::test_restarts_with_removed_and_rotated_keys",
    "ui_dir": "tests/api/test_web_ui.py::test_the_app_is_served_at_the_root_and_revalidated",
    "session_hours": f"{HERE}::test_a_browser_session_lasts_the_configured_hours",
    "login_max_failures": (
        "tests/security/test_logins.py::test_repeated_failures_block_logins_even_with_the_right_password"
    ),
    "login_failure_window_seconds": f"{HERE}::test_failed_logins_count_only_within_the_configured_window",
    "max_request_bytes": "tests/security/test_bad_input.py::test_an_announced_body_past_the_limit_is_refused_unread",
    "max_upload_bytes": "tests/security/test_bad_input.py::test_workspace_uploads_have_their_own_larger_limit",
    "max_json_depth": "tests/api/test_reported_values.py::test_the_depth_kept_is_the_configured_one",
    "s3_endpoint_url": "tests/storage/test_stores.py::test_settings_open_the_store_they_name",
    "s3_access_key_id": "tests/storage/test_stores.py::test_settings_open_the_store_they_name",
    "s3_secret_access_key": "tests/storage/test_stores.py::test_settings_open_the_store_they_name",
    "s3_region": f"{HERE}::test_runners_get_the_region_and_their_own_credentials",
    "s3_runner_access_key_id": f"{HERE}::test_runners_get_the_region_and_their_own_credentials",
    "s3_runner_secret_access_key": (
        "tests/workspace/test_failures_and_folders.py::test_refused_runner_credentials_fail_the_run_naming_the_cause"
    ),
    "runner_workspace_cache_dir": (
        "tests/runner/test_local_backend.py::test_sandboxed_runners_share_one_workspace_cache_their_workflows_cannot_write"
    ),
    "sync_wait_seconds": f"{HERE}::test_a_sync_run_longer_than_the_sync_wait_is_answered_202",
    "data_provider_launch_seconds": (
        "tests/api/test_data_providers.py::test_a_runner_that_never_answers_is_cut_off_and_cancelled"
    ),
    "workspace_poll_seconds": (
        "tests/workspace/test_failures_and_folders.py::test_an_execution_started_right_after_an_api_write_runs_the_new_code"
    ),
    "workspace_kept_revisions": f"{HERE}::test_a_folder_workspace_keeps_the_files_of_the_configured_revisions",
    "max_concurrency": "tests/engine/test_two_replicas.py::test_a_burst_from_two_replicas_never_exceeds_the_limits",
    "max_concurrency_per_workflow": "tests/engine/test_dispatch.py::test_limits_hold_executions_until_others_finish",
    "runner_exit_grace_seconds": "tests/engine/test_dispatch.py::test_a_runner_exit_waits_for_its_last_events",
    "cancel_grace_seconds": (
        "tests/engine/test_dispatch.py::test_cancelling_a_running_execution_asks_the_runner_then_kills_it"
    ),
    "runner_report_seconds": (
        "tests/runner/test_local_backend.py::test_a_finished_runner_waits_for_nats_as_long_as_its_launch_says"
    ),
    "max_result_bytes": "tests/api/test_api.py::test_runner_routes_take_only_execution_tokens",
    "local_pool_size": (
        "tests/runner/test_local_backend.py::test_spares_wait_at_low_priority_and_runs_get_the_template_priority_back"
    ),
    "local_memory_limit_mb": (
        "tests/security/test_local_sandbox.py::test_a_workflow_past_the_memory_limit_fails_naming_the_limit"
    ),
    "local_max_processes": "tests/security/test_local_sandbox.py::test_too_many_processes_are_refused_naming_the_limit",
    "local_sandbox": "tests/runner/test_local_backend.py::test_unsandboxed_runners_run_with_a_warning",
    "local_sandbox_paths": "tests/api/test_retries_and_limits.py::test_a_failed_execution_is_retried_after_its_backoff",
    "container_memory_limit_mb": f"{HERE}::test_container_settings_shape_the_runner_container",
    "container_cpu_limit": f"{HERE}::test_container_settings_shape_the_runner_container",
    "container_max_processes": f"{HERE}::test_container_settings_shape_the_runner_container",
    "container_run_as_user": f"{HERE}::test_container_settings_shape_the_runner_container",
    "container_deadline_grace_seconds": (
        "tests/containers/test_backend.py::test_a_runner_past_its_deadline_is_stopped_and_times_out"
    ),
    "k8s_namespace": f"{HERE}::test_job_settings_shape_the_runner_job",
    "runner_image": f"{HERE}::test_job_settings_shape_the_runner_job",
    "runner_image_pull_policy": f"{HERE}::test_job_settings_shape_the_runner_job",
    "runner_image_pull_secrets": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_runner_service_account": (
        "tests/k8s/test_spec.py::test_runner_pods_run_as_the_configured_service_account_without_its_token"
    ),
    "k8s_node_selector": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_tolerations": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_cpu_request": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_cpu_limit": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_memory_request_mb": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_memory_limit_mb": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_run_as_user": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_ttl_seconds_after_finished": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_deadline_grace_seconds": f"{HERE}::test_job_settings_shape_the_runner_job",
    "k8s_workspace_volume_claim": (
        "tests/k8s/test_spec.py::test_a_folder_workspace_on_a_volume_claim_is_mounted_read_only_at_its_path"
    ),
    "k8s_qps": "tests/k8s/test_launch_rate.py::test_a_thousand_launches_at_once_create_each_job_once",
    "k8s_burst": "tests/k8s/test_launch_rate.py::test_a_thousand_launches_at_once_create_each_job_once",
    "k8s_api_workers": f"{HERE}::test_the_kubernetes_api_is_called_from_the_configured_number_of_threads",
    "k8s_api_retry_seconds": (
        "tests/k8s/test_resilience.py::test_an_api_server_failing_for_a_while_delays_launches_but_loses_none"
    ),
    "k8s_pending_timeout_seconds": (
        "tests/k8s/test_diagnosis.py::test_an_unschedulable_pod_fails_after_the_pending_timeout_with_the_schedulers_message"
    ),
    "k8s_watch_timeout_seconds": "tests/k8s/test_resilience.py::test_a_dropped_watch_resumes_and_loses_no_execution",
    "k8s_workflow_runs": (
        "tests/k8s/test_workflow_runs.py::test_without_the_crd_or_with_the_setting_off_runs_are_jobs_alone"
    ),
    "k8s_workflow_run_ttl_seconds": (
        "tests/k8s/test_workflow_runs.py::test_an_ended_runs_workflow_run_and_job_are_deleted_once_its_ttl_has_passed"
    ),
    "k8s_log_tail_lines": (
        "tests/k8s/test_diagnosis.py::test_a_runner_that_crashes_before_reporting_fails_with_its_exit_code_and_log_tail"
    ),
    "k8s_pool_size": "tests/k8s/test_pool.py::test_with_a_pool_size_of_0_a_sync_run_gets_a_job_of_its_own",
    "k8s_pool_classes": (
        "tests/k8s/test_pool.py::test_a_workflow_with_a_pool_classs_resources_takes_a_pod_of_that_pool_and_others_get_jobs"
    ),
    "k8s_pool_wait_seconds": "tests/k8s/test_pool.py::test_a_pool_pod_that_waits_too_long_is_replaced",
}


@cache
def _tests_in(path: str) -> frozenset[str]:
    tree = ast.parse(Path(path).read_text())
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    )


def test_every_option_and_setting_names_the_test_that_shows_its_effect() -> None:
    data_provider_options = DATA_PROVIDER_OPTIONS.keys() | DATA_PROVIDER_OPTIONS_APPLIED_WHERE_PROVIDERS_RUN.keys()
    assert set(WORKFLOW_OPTIONS) == set(WorkflowOptions.model_fields)
    assert data_provider_options == set(DataProviderOptions.model_fields)
    assert set(SETTINGS) == set(Settings.model_fields)
    for node in [*WORKFLOW_OPTIONS.values(), *DATA_PROVIDER_OPTIONS.values(), *SETTINGS.values()]:
        path, _, name = node.partition("::")
        assert name in _tests_in(path), f"{node} is not a test"


# What the settings without a test of their own elsewhere change.

SLOW = """
import asyncio

from bifrost import workflow


@workflow(execution_mode="sync")
async def slow():
    await asyncio.sleep(3)
    return "done"
"""


@pytest.fixture(scope="module")
def bifrost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bifrost]:
    tmp = tmp_path_factory.mktemp("effects")
    with running_bifrost(
        tmp,
        f"sqlite:///{tmp / 'bifrost.db'}",
        {"slow.py": SLOW},
        host="127.0.0.2",
        sync_wait_seconds=1.0,
        session_hours=0.5,
        login_failure_window_seconds=60,
    ) as running:
        yield running


def test_the_api_listens_on_the_configured_host(bifrost: Bifrost) -> None:
    port = bifrost.settings.port
    assert httpx.get(f"http://127.0.0.2:{port}/healthz", timeout=10).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)


def test_a_sync_run_longer_than_the_sync_wait_is_answered_202(bifrost: Bifrost) -> None:
    with bifrost.client() as api:
        eventually(lambda: api.get("/api/workflows/slow").status_code == 200, what="the workflow")
        answer = api.post("/api/workflows/slow/execute")
        assert answer.status_code == 202, answer.text  # after 1 s; by default it would wait the 3 s, and be 200
        assert finished(api, answer.json()["execution_id"])["result"] == "done"


def _sign_in(bifrost: Bifrost, password: str) -> httpx.Response:
    with httpx.Client(base_url=bifrost.url, timeout=30) as browser:
        csrf = form_csrf(browser.get("/login").text)
        return browser.post("/login", data={"email": ADMIN_EMAIL, "password": password, "csrf_token": csrf})


def test_a_browser_session_lasts_the_configured_hours(bifrost: Bifrost) -> None:
    with bifrost.client(ADMIN_KEY) as admin:
        me = admin.get("/api/users/me").json()
        assert admin.patch(f"/api/users/{me['id']}", json={"password": "a long enough password"}).is_success
    before = utcnow()
    assert _sign_in(bifrost, "a long enough password").status_code == 303
    db = make_engine(bifrost.settings.resolved_database_url)
    with Session(db) as session:
        [ui_session] = session.exec(select(UiSession))
    db.dispose()
    lifetime = ui_session.expires_at.replace(tzinfo=before.tzinfo) - before
    assert timedelta(minutes=29) < lifetime <= timedelta(minutes=30, seconds=5)


def test_failed_logins_count_only_within_the_configured_window(bifrost: Bifrost) -> None:
    db = make_engine(bifrost.settings.resolved_database_url)
    with Session(db) as session:
        # More failures than allowed, two minutes ago: outside this install's 60 s window (the default is 900 s).
        for _ in range(bifrost.settings.login_max_failures + 1):
            session.add(LoginFailure(email=ADMIN_EMAIL, ip="127.0.0.2", at=utcnow() - timedelta(minutes=2)))
        session.commit()
    assert _sign_in(bifrost, "not the password").status_code == 401
    with Session(db) as session:
        for _ in range(bifrost.settings.login_max_failures):
            session.add(LoginFailure(email=ADMIN_EMAIL, ip="127.0.0.2", at=utcnow()))
        session.commit()
    assert _sign_in(bifrost, "not the password").status_code == 429
    with Session(db) as session:
        for failure in session.exec(select(LoginFailure)):
            session.delete(failure)
        session.commit()
    db.dispose()


def test_runners_get_the_region_and_their_own_credentials() -> None:
    settings = Settings(
        workspace_url="s3://flows/ops",
        s3_access_key_id="control-plane",
        s3_secret_access_key=SecretStr("control-plane-secret"),
        s3_region="eu-west-1",
        s3_runner_access_key_id="runner-read-only",
        s3_runner_secret_access_key=SecretStr("runner-secret"),
    )
    env = RunnerWorkspace.from_settings(settings).runner_env()
    assert env["BIFROST_S3_REGION"] == "eu-west-1"
    assert (env["BIFROST_S3_ACCESS_KEY_ID"], env["BIFROST_S3_SECRET_ACCESS_KEY"]) == (
        "runner-read-only",
        "runner-secret",
    )
    plain = RunnerWorkspace.from_settings(Settings(workspace_url="s3://flows/ops")).runner_env()
    assert "BIFROST_S3_REGION" not in plain and "BIFROST_S3_ACCESS_KEY_ID" not in plain


@pytest.mark.parametrize("kept", [1, 3])
def test_a_folder_workspace_keeps_the_files_of_the_configured_revisions(tmp_path: Path, kept: int) -> None:
    store = store_from_settings(Settings(workspace_url=str(tmp_path), workspace_kept_revisions=kept))
    etags = []
    for version in range(3):
        store.write("flows.py", f"VERSION = {version}\n".encode())
        manifest = store.manifest()
        store.record_revision(manifest)
        etags.append(manifest.files["flows.py"])
    kept_files = [(tmp_path / kept_file_path(etag)).exists() for etag in etags]
    assert kept_files == [False] * (3 - kept) + [True] * kept


JOB_SETTINGS: list[tuple[str, Any, Any]] = [
    ("k8s_namespace", "automation", lambda job: job["metadata"]["namespace"]),
    ("runner_image", "registry.example/runner:9", lambda job: _container(job)["image"]),
    ("runner_image_pull_policy", "Always", lambda job: _container(job)["imagePullPolicy"]),
    ("runner_image_pull_secrets", ["creds"], lambda job: _pod(job)["imagePullSecrets"]),
    ("k8s_node_selector", {"pool": "runs"}, lambda job: _pod(job)["nodeSelector"]),
    ("k8s_tolerations", [K8sToleration(key="runs", operator="Exists")], lambda job: _pod(job)["tolerations"]),
    ("k8s_cpu_request", "250m", lambda job: _container(job)["resources"]["requests"]["cpu"]),
    ("k8s_cpu_limit", "3", lambda job: _container(job)["resources"]["limits"]["cpu"]),
    ("k8s_memory_request_mb", 300, lambda job: _container(job)["resources"]["requests"]["memory"]),
    ("k8s_memory_limit_mb", 2000, lambda job: _container(job)["resources"]["limits"]["memory"]),
    ("k8s_run_as_user", 20002, lambda job: _container(job)["securityContext"]["runAsUser"]),
    ("k8s_ttl_seconds_after_finished", 60, lambda job: job["spec"]["ttlSecondsAfterFinished"]),
    ("k8s_deadline_grace_seconds", 7, lambda job: job["spec"]["activeDeadlineSeconds"]),
]


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]["spec"]
    return pod


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _pod(job)["containers"][0]
    return container


@pytest.mark.parametrize(("setting", "value", "read"), JOB_SETTINGS, ids=[setting for setting, _, _ in JOB_SETTINGS])
def test_job_settings_shape_the_runner_job(setting: str, value: Any, read: Any) -> None:
    spec = launch_spec(timeout_seconds=100)
    try:
        default = read(build_job(spec, Settings()))
    except KeyError:  # not in the Job at all by default
        default = None
    changed = read(build_job(spec, Settings(**{setting: value})))
    assert changed != default
    expected = {
        "runner_image_pull_secrets": [{"name": "creds"}],
        "k8s_tolerations": [{"key": "runs", "operator": "Exists"}],
        "k8s_memory_request_mb": "300Mi",
        "k8s_memory_limit_mb": "2000Mi",
        "k8s_deadline_grace_seconds": 107,
    }.get(setting, value)
    assert changed == expected


CONTAINER_SETTINGS: list[tuple[str, Any, str]] = [
    ("container_memory_limit_mb", 300, "--memory=300m"),
    ("container_cpu_limit", "500m", "--cpus=0.5"),
    ("container_max_processes", 64, "--pids-limit=64"),
    ("container_run_as_user", 20002, "--user=20002:20002"),
]


@pytest.mark.parametrize(
    ("setting", "value", "argument"), CONTAINER_SETTINGS, ids=[setting for setting, _, _ in CONTAINER_SETTINGS]
)
def test_container_settings_shape_the_runner_container(setting: str, value: Any, argument: str) -> None:
    spec = launch_spec()
    default = run_arguments(spec, Settings(backend="podman"), "replica-1", deadline=0.0)
    changed = run_arguments(spec, Settings(backend="podman", **{setting: value}), "replica-1", deadline=0.0)
    assert argument in changed and argument not in default


async def test_the_kubernetes_api_is_called_from_the_configured_number_of_threads(kubeconfig: Path) -> None:
    for workers in (1, 3):
        api = KubernetesApi(Settings(k8s_api_workers=workers, k8s_namespace="runs"), load_api_client(workers))
        try:
            await asyncio.gather(*(api.list_jobs() for _ in range(6)))
            threads = {thread.name for thread in threading.enumerate() if thread.name.startswith("bifrost-k8s-api")}
        finally:
            await asyncio.to_thread(api.close)
        assert len(threads) == workers
