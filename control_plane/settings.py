"""All configuration, from `BIFROST_*` environment variables. Every setting works as it is for the
embedded mode: SQLite in the data folder, the local `workspace/`, a NATS child process, the local backend."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bifrost._internal.workspace import parse_workspace_url
from bifrost.metadata import CPU_QUANTITY as CPU_QUANTITY
from bifrost.metadata import Resources

DATABASE_FILE = "bifrost.db"
"""The embedded mode's SQLite database, in the data folder."""
SOURCE_UI_DIR = Path(__file__).resolve().parent.parent / "ui" / "dist"
"""Where `make ui` builds the web UI in the source tree."""


class K8sToleration(BaseModel):
    """One toleration of the runner pods, as in a pod spec."""

    model_config = ConfigDict(extra="forbid")

    key: str | None = None
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None


DEFAULT_POOL_CLASS = "default"
"""The pool of runners with the default resources (`k8s_pool_size`)."""
POOL_CLASS_NAME = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"


class K8sPoolClass(BaseModel):
    """Warm runners for the workflows that ask for exactly these resources (`@workflow(resources=...)`)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(1, ge=0, description="Pool pods of this class kept waiting.")
    resources: Resources

    @field_validator("resources")
    @classmethod
    def _some_resources(cls, resources: Resources) -> Resources:
        if resources == Resources():
            raise ValueError("give at least one resource: the default resources have their pool (k8s_pool_size)")
        return resources


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BIFROST_", extra="ignore")

    data_dir: Path = Field(Path(".bifrost"), description="Where the embedded mode keeps SQLite, NATS and keys.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in the data folder.")
    workspace_url: str = Field(
        "./workspace", description="Where workflow files live: a folder path, file:///… or s3://bucket/prefix."
    )
    nats_url: str | None = Field(None, description="An external NATS; default: a child nats-server.")
    nats_account_seed: SecretStr | None = Field(
        None,
        description="With an external NATS set up by `bifrost nats-config`: the Bifrost account's nkey seed "
        "(`bifrost nats-config --account-seed`), which signs the control plane's and each runner's NATS identity. "
        "Unset: runners connect without an identity of their own (a warning at start).",
    )
    backend: Literal["local", "podman", "docker", "kubernetes"] = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(None, description="The API URL runners call; default: from host and port.")
    bootstrap_api_key: SecretStr | None = Field(None, description="Sets the admin API key non-interactively.")
    secret_key: SecretStr | None = Field(None, description="Signs execution tokens; default: kept in data_dir.")
    encryption_keys: SecretStr | None = Field(
        None,
        description="Fernet keys that encrypt secrets at rest, comma-separated, newest first (older ones still "
        "decrypt, for rotation); default: one generated into data_dir.",
    )
    ui_dir: Path = Field(SOURCE_UI_DIR, description="The built web UI served at /; default: ui/dist of the source.")
    session_hours: float = Field(12.0, gt=0, description="How long a browser login lasts.")
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per email (4x that per client address) before logins are refused."
    )
    login_failure_window_seconds: int = Field(900, ge=1, description="The window failed logins are counted in.")
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest request body; larger ones are answered 413 unread."
    )
    max_upload_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest body of a workspace upload (a file, or a folder sync)."
    )
    max_json_depth: int = Field(
        64,
        ge=2,
        # Runner events carry a result a level or two inside their own JSON, which is read to 200 levels.
        le=190,
        description="How deeply a JSON request body, a result or variables may nest objects and arrays (answers"
        " must carry values back).",
    )

    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint of an s3:// workspace.")
    s3_access_key_id: str | None = Field(None, description="Default: the usual AWS credential chain.")
    s3_secret_access_key: SecretStr | None = None
    s3_region: str | None = None
    s3_runner_access_key_id: str | None = Field(
        None, description="Read-only S3 credentials handed to runners; default: the runner's own AWS chain."
    )
    s3_runner_secret_access_key: SecretStr | None = None
    runner_workspace_cache_dir: str | None = Field(
        None,
        description="Where runners cache workspace revisions (a path as the runner sees it); default: a folder "
        "in the runner's temporary directory, and for sandboxed local runners `runner-cache` in the data folder. "
        "Sandboxed local runners share it, and their workflows find it read-only.",
    )

    sync_wait_seconds: float = Field(30.0, description="How long a sync request waits before answering 202.")
    data_provider_launch_seconds: float = Field(
        10.0,
        gt=0,
        description="How long a data provider call waits for its runner to start, on top of the provider's own "
        "timeout; a call still unanswered then is cancelled and answered 504.",
    )
    workspace_poll_seconds: float = Field(
        1.0, gt=0, description="How often the registry looks for changed workspace files."
    )
    workspace_kept_revisions: int = Field(
        50,
        ge=1,
        description="A folder workspace keeps the files of this many recently recorded revisions, so runs pinned "
        "to them still sync after the folder was edited.",
    )
    max_concurrency: int = Field(
        20, ge=1, description="Executions running at once, over all workflows and replicas (sub-workflows aside)."
    )
    max_concurrency_per_workflow: int = Field(
        10, ge=1, description="Executions of one workflow running at once; its own `max_concurrency` may be lower."
    )
    runner_exit_grace_seconds: float = Field(
        5.0, description="After a runner exits, how long its `finished` event may take before we close it."
    )
    cancel_grace_seconds: float = Field(5.0, description="After a cancel request, when the runner is killed.")
    runner_report_seconds: float = Field(
        900.0,
        gt=0,
        description="How long a runner whose workflow ended waits for NATS (down, restarting) to take its last "
        "events before it gives up; its execution is then failed. The backend's timeout kill still applies.",
    )
    max_result_bytes: int = 10 * 1024 * 1024

    local_pool_size: int = Field(
        2,
        ge=0,
        description="Pre-started runner processes of the local backend, for any run; as many more wait for sync runs, "
        "each connected to NATS ahead as the run it is kept for.",
    )
    local_memory_limit_mb: int = Field(
        1024,
        ge=64,
        description="Memory limit of a local runner: of its cgroup, where the control plane may make cgroups, else "
        "of its address space; a workflow may set its own.",
    )
    local_max_processes: int = Field(
        256, ge=8, description="Processes and threads a local runner may have at once, the workflow's included."
    )
    local_sandbox: Literal["bwrap", "none"] = Field(
        "bwrap",
        description="How local runners are isolated: `bwrap`, a bubblewrap namespace sandbox (needs bubblewrap "
        "and user namespaces); `none`, no isolation from the control plane at all (logged as a warning).",
    )
    local_sandbox_paths: list[Path] = Field(
        default_factory=list,
        description="Further host folders sandboxed local runners may read and write (JSON list of paths).",
    )

    runner_image: str = Field(
        "bifrost-runner:0.1.0", description="The runner image of every Job (kubernetes) or container (podman, docker)."
    )
    runner_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent",
        description="When the runner image is pulled: Kubernetes' imagePullPolicy; podman and docker take it as "
        "--pull=always, missing or never.",
    )

    container_memory_limit_mb: int = Field(
        1024, ge=16, description="Memory limit of a runner container (podman, docker); a workflow may set its own."
    )
    container_cpu_limit: str | None = Field(
        "1", pattern=CPU_QUANTITY, description="CPU limit of a runner container, e.g. 2 or 500m; unset: none."
    )
    container_max_processes: int = Field(
        256, ge=8, description="Processes and threads a runner container may have at once (--pids-limit)."
    )
    container_run_as_user: int = Field(10001, ge=1, description="The non-root uid (and gid) runner containers run as.")
    container_deadline_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="A runner container still running this long after its workflow's timeout is stopped and its "
        "execution ends as timed out (the runner times out first).",
    )

    k8s_namespace: str = Field("bifrost", description="Where the kubernetes backend creates runner Jobs.")
    runner_image_pull_secrets: list[str] = Field(
        default_factory=list, description="Names of docker-registry Secrets in the runner namespace (JSON list)."
    )
    k8s_runner_service_account: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$",
        description="The ServiceAccount of runner pods, in the runner namespace (its token is never mounted); "
        "unset: the namespace's `default`.",
    )
    k8s_node_selector: dict[str, str] = Field(default_factory=dict, description="Runner pods' nodeSelector (JSON).")
    k8s_tolerations: list[K8sToleration] = Field(default_factory=list, description="Runner pods' tolerations (JSON).")
    k8s_cpu_request: str = Field("100m", pattern=CPU_QUANTITY, description="A runner's CPU request, e.g. 250m.")
    k8s_cpu_limit: str | None = Field("1", pattern=CPU_QUANTITY, description="A runner's CPU limit; unset: none.")
    k8s_memory_request_mb: int = Field(256, ge=16)
    k8s_memory_limit_mb: int = Field(1024, ge=16, description="A workflow may set its own in resources.")
    k8s_run_as_user: int = Field(10001, ge=1, description="The non-root uid (and gid) runner containers run as.")
    k8s_qps: float = Field(50.0, gt=0, description="Kubernetes API requests per second, all runners together.")
    k8s_burst: int = Field(100, ge=1, description="Requests allowed at once above k8s_qps.")
    k8s_api_workers: int = Field(8, ge=1, description="Threads making Kubernetes API calls.")
    k8s_api_retry_seconds: float = Field(
        60.0, ge=0, description="How long a failing API call (429, 5xx, unreachable) is retried before it fails."
    )
    k8s_ttl_seconds_after_finished: int = Field(3600, ge=0, description="Finished Jobs are kept this long.")
    k8s_deadline_grace_seconds: int = Field(
        60, ge=0, description="activeDeadlineSeconds = the workflow's timeout + this (the runner times out first)."
    )
    k8s_pending_timeout_seconds: float = Field(
        600.0, gt=0, description="A runner pod not running after this long fails its execution."
    )
    k8s_pool_size: int = Field(
        1,
        ge=0,
        description="Runner pods kept waiting for sync runs (of workflows without resources of their own); each "
        "takes exactly one run and exits, and the pool refills. 0: every run gets a Job of its own.",
    )
    k8s_pool_classes: dict[str, K8sPoolClass] = Field(
        default_factory=dict,
        description="More warm runner pools, by name: each keeps `size` pods with `resources` waiting for the sync "
        "runs of workflows that ask for exactly those resources.",
    )
    k8s_pool_wait_seconds: float = Field(
        600.0, gt=0, description="A pool pod waiting this long without a run is replaced by a fresh one."
    )
    k8s_watch_timeout_seconds: int = Field(300, ge=1, description="Server-side lifetime of one watch request.")
    k8s_log_tail_lines: int = Field(50, ge=0, description="Log lines of a failed runner kept in its reason.")
    k8s_workflow_runs: bool = Field(
        True,
        description="A WorkflowRun custom resource per execution, owning its Job (`kubectl get workflowruns`); "
        "skipped, with a warning, where its CRD is not installed.",
    )
    k8s_workflow_run_ttl_seconds: int = Field(
        7 * 24 * 3600,
        gt=0,
        description="An ended run's WorkflowRun, with what is left of its Job, is deleted this long after the run "
        "finished.",
    )
    k8s_workspace_volume_claim: str | None = Field(
        None,
        description="A PersistentVolumeClaim in the runner namespace holding the folder workspace, mounted "
        "read-only in runner pods at the folder's path (the control plane mounts it at the same path); without "
        "it, the kubernetes backend needs an s3:// workspace.",
    )

    @field_validator("k8s_pool_classes")
    @classmethod
    def _pool_class_names(cls, classes: dict[str, K8sPoolClass]) -> dict[str, K8sPoolClass]:
        for name in classes:
            if name == DEFAULT_POOL_CLASS or not re.fullmatch(POOL_CLASS_NAME, name):
                raise ValueError(
                    f"pool class name {name!r}: use lowercase letters, digits and '-' (at most 63, starting and "
                    f"ending with a letter or digit), other than {DEFAULT_POOL_CLASS!r}"
                )
        return classes

    @field_validator("workspace_url")
    @classmethod
    def _workspace_url_is_usable(cls, url: str) -> str:
        parse_workspace_url(url)
        return url

    @model_validator(mode="after")
    def _account_seed_needs_an_external_nats(self) -> Settings:
        if self.nats_account_seed is not None and not self.nats_url:
            raise ValueError(
                "BIFROST_NATS_ACCOUNT_SEED is for an external NATS (BIFROST_NATS_URL); the embedded nats-server "
                "uses the keys in the data folder"
            )
        return self

    @model_validator(mode="after")
    def _runners_can_reach_the_workspace(self) -> Settings:
        if self.backend == "kubernetes" and self.workspace_dir is not None and not self.k8s_workspace_volume_claim:
            raise ValueError(
                f"BIFROST_BACKEND=kubernetes cannot use the folder workspace {self.workspace_dir}: runner pods "
                "cannot see the control plane's folders. Use an S3 workspace (BIFROST_WORKSPACE_URL="
                "s3://bucket/prefix), or set BIFROST_K8S_WORKSPACE_VOLUME_CLAIM to a PersistentVolumeClaim that "
                "holds this folder and is mounted at the same path in the control plane"
            )
        if self.backend in ("podman", "docker") and self.workspace_dir is not None and ":" in str(self.workspace_dir):
            raise ValueError(
                f"BIFROST_BACKEND={self.backend} cannot mount the workspace folder {self.workspace_dir} into runner "
                "containers: its path holds a ':'. Move it to a path without one"
            )
        return self

    @model_validator(mode="after")
    def _pull_secrets_are_kubernetes_secrets(self) -> Settings:
        if self.backend in ("podman", "docker") and self.runner_image_pull_secrets:
            raise ValueError(
                f"BIFROST_RUNNER_IMAGE_PULL_SECRETS names Kubernetes Secrets, which BIFROST_BACKEND={self.backend} "
                f"cannot use: log in to the registry with `{self.backend} login` as the user Bifrost runs as instead"
            )
        return self

    @cached_property
    def workspace_dir(self) -> Path | None:
        """The workspace folder; None for an S3 workspace, which needs no local folder."""
        location = parse_workspace_url(self.workspace_url)
        return location if isinstance(location, Path) else None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / DATABASE_FILE).resolve()}"

    @property
    def api_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
