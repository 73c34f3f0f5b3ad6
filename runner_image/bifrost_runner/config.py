"""The runner's configuration: environment variables set by the backend that starts it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, model_validator

REPORT_SECONDS = 900.0
"""The default of `report_seconds`: a NATS outage of minutes loses no run that finished meanwhile."""


class RunnerConfigError(ValueError):
    """The runner's environment is incomplete or malformed; the message names what is wrong."""


_REQUIRED_ENV_FIELDS = {
    "BIFROST_EXECUTION_ID": "execution_id",
    "BIFROST_EXECUTION_TOKEN": "token",
    "BIFROST_API_URL": "api_url",
    "BIFROST_NATS_URL": "nats_url",
    "BIFROST_TIMEOUT_SECONDS": "timeout_seconds",
}
_OPTIONAL_ENV_FIELDS = {
    "BIFROST_NATS_JWT": "nats_jwt",
    "BIFROST_NATS_SEED": "nats_seed",
    "BIFROST_WORKSPACE_DIR": "workspace_dir",
    "BIFROST_WORKSPACE_URL": "workspace_url",
    "BIFROST_WORKSPACE_CACHE_DIR": "workspace_cache_dir",
    "BIFROST_S3_ENDPOINT_URL": "s3_endpoint_url",
    "BIFROST_S3_ACCESS_KEY_ID": "s3_access_key_id",
    "BIFROST_S3_SECRET_ACCESS_KEY": "s3_secret_access_key",
    "BIFROST_S3_REGION": "s3_region",
    "BIFROST_REPORT_SECONDS": "report_seconds",
}
_ENV_NAMES = {field: name for name, field in (_REQUIRED_ENV_FIELDS | _OPTIONAL_ENV_FIELDS).items()}


def default_cache_dir() -> Path:
    """One cache per user in the temporary directory, so the runners of one machine share it."""
    return Path(tempfile.gettempdir()) / f"bifrost-workspace-cache-{os.getuid()}"


class RunnerConfig(BaseModel):
    execution_id: str = Field(min_length=1)
    token: str = Field(min_length=1, repr=False)
    api_url: str = Field(min_length=1)
    nats_url: str = Field(min_length=1)
    timeout_seconds: int = Field(gt=0)
    nats_jwt: str | None = Field(None, repr=False)
    """The runner's NATS identity (a user JWT) and its nkey seed; without them it connects anonymously."""
    nats_seed: str | None = Field(None, repr=False)
    workspace_dir: Path | None = None
    """A workspace folder the runner can see: the source when no workspace URL is given."""
    workspace_url: str | None = None
    """Where the execution's revision is synced from: a folder, file:///… or s3://bucket/prefix."""
    workspace_cache_dir: Path = Field(default_factory=default_cache_dir)
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = Field(None, repr=False)
    s3_region: str | None = None
    report_seconds: float = Field(REPORT_SECONDS, gt=0)
    """How long a runner whose workflow ended waits for NATS to take its last events before it gives up."""

    @model_validator(mode="after")
    def _has_a_workspace(self) -> RunnerConfig:
        if self.workspace_url is None and self.workspace_dir is None:
            raise ValueError("no workspace: set BIFROST_WORKSPACE_URL or BIFROST_WORKSPACE_DIR")
        return self

    @model_validator(mode="after")
    def _has_a_whole_nats_identity(self) -> RunnerConfig:
        if (self.nats_jwt is None) != (self.nats_seed is None):
            raise ValueError("BIFROST_NATS_JWT and BIFROST_NATS_SEED go together: set both or neither")
        return self

    @property
    def workspace_source_url(self) -> str:
        return self.workspace_url or str(self.workspace_dir)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunnerConfig:
        missing = [name for name in _REQUIRED_ENV_FIELDS if not env.get(name)]
        if missing:
            raise RunnerConfigError(f"missing environment variable(s): {', '.join(missing)}")
        values = {field: env[name] for name, field in _REQUIRED_ENV_FIELDS.items()}
        values |= {field: env[name] for name, field in _OPTIONAL_ENV_FIELDS.items() if env.get(name)}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{_ENV_NAMES.get(str(error['loc'][0]), error['loc'][0])}: {error['msg']}"
                if error["loc"]
                else str(error["msg"])
                for error in exc.errors()
            )
            raise RunnerConfigError(f"invalid runner environment: {problems}") from None
