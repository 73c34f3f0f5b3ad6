"""All configuration, from `BIFROST_*` environment variables. Every setting works as it is for the
embedded mode: SQLite in the data folder, the local `workspace/`, a NATS child process, the local backend."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BIFROST_", extra="ignore")

    data_dir: Path = Field(Path(".bifrost"), description="Where the embedded mode keeps SQLite, NATS and keys.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in the data folder.")
    workspace_url: str = Field("./workspace", description="A folder path or file:// URL.")
    nats_url: str | None = Field(None, description="An external NATS; default: a child nats-server.")
    backend: Literal["local", "podman", "docker", "kubernetes"] = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(None, description="The API URL runners call; default: from host and port.")
    bootstrap_api_key: SecretStr | None = Field(None, description="Sets the admin API key non-interactively.")
    secret_key: SecretStr | None = Field(None, description="Signs execution tokens; default: kept in data_dir.")

    sync_wait_seconds: float = Field(30.0, description="How long a sync request waits before answering 202.")
    max_concurrency: int = Field(20, ge=1, description="Executions running at once, over all workflows.")
    max_concurrency_per_workflow: int = Field(10, ge=1)
    runner_exit_grace_seconds: float = Field(
        5.0, description="After a runner exits, how long its `finished` event may take before we close it."
    )
    cancel_grace_seconds: float = Field(5.0, description="After a cancel request, when the runner is killed.")
    max_result_bytes: int = 10 * 1024 * 1024

    local_pool_size: int = Field(2, ge=0, description="Pre-started runner processes of the local backend.")
    local_memory_limit_mb: int | None = Field(None, description="Address-space limit of a local runner.")

    @cached_property
    def workspace_dir(self) -> Path:
        url = urlparse(self.workspace_url)
        if url.scheme == "file":
            return Path(url.path).resolve()
        if url.scheme:
            raise ValueError(f"BIFROST_WORKSPACE_URL: unsupported scheme {url.scheme!r} (use a path or file://)")
        return Path(self.workspace_url).resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'bifrost.db').resolve()}"

    @property
    def api_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
