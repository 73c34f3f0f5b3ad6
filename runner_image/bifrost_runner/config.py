"""The runner's configuration: six environment variables, set by the backend that starts it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError


class RunnerConfigError(ValueError):
    """The runner's environment is incomplete or malformed; the message names what is wrong."""


_ENV_FIELDS = {
    "BIFROST_EXECUTION_ID": "execution_id",
    "BIFROST_EXECUTION_TOKEN": "token",
    "BIFROST_API_URL": "api_url",
    "BIFROST_NATS_URL": "nats_url",
    "BIFROST_WORKSPACE_DIR": "workspace_dir",
    "BIFROST_TIMEOUT_SECONDS": "timeout_seconds",
}


class RunnerConfig(BaseModel):
    execution_id: str = Field(min_length=1)
    token: str = Field(min_length=1, repr=False)
    api_url: str = Field(min_length=1)
    nats_url: str = Field(min_length=1)
    workspace_dir: Path
    timeout_seconds: int = Field(gt=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunnerConfig:
        missing = [name for name in _ENV_FIELDS if not env.get(name)]
        if missing:
            raise RunnerConfigError(f"missing environment variable(s): {', '.join(missing)}")
        try:
            return cls.model_validate({field: env[name] for name, field in _ENV_FIELDS.items()})
        except ValidationError as exc:
            env_name = {field: name for name, field in _ENV_FIELDS.items()}
            problems = "; ".join(
                f"{env_name.get(str(error['loc'][0]), error['loc'][0])}: {error['msg']}" for error in exc.errors()
            )
            raise RunnerConfigError(f"invalid runner environment: {problems}") from None
