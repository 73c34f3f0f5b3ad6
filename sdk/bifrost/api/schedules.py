"""Schedules: a workflow started at the times of a cron expression, in a time zone, as its organization's
scheduler account."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bifrost._internal.protocol import ExecutionStatus
from bifrost.metadata import cron_problem

__all__ = [
    "CatchUpPolicy",
    "FireOut",
    "OverlapPolicy",
    "ScheduleIn",
    "ScheduleOut",
    "SchedulePatch",
    "ScheduleSource",
]


class OverlapPolicy(StrEnum):
    """What a schedule does at a fire time while its previous run has not ended."""

    SKIP = "skip"
    """No run this time (the fire is recorded as skipped)."""
    QUEUE = "queue"
    """The run waits, Pending, until the previous one ends."""
    ALLOW = "allow"
    """The run starts at once, beside the previous one."""


class CatchUpPolicy(StrEnum):
    """What a schedule does with the fire times it missed while no control plane ran."""

    SKIP = "skip"
    """None of them runs."""
    LATEST = "latest"
    """The latest of them runs, once."""


class ScheduleSource(StrEnum):
    API = "api"
    """Made through the API by an admin."""
    DECORATOR = "decorator"
    """Made for `@workflow(schedule=...)`: one per workflow, following its decorator."""


_CRON = "Five fields: minute, hour, day of month, month, day of week (`0 9 * * 1-5`), read in `timezone`."
_TIMEZONE = "An IANA time zone (`Europe/Berlin`); see docs/schedules.md for daylight-saving changes."
_OVERLAP = "At a fire time while the previous run has not ended: `skip` this one, `queue` it behind, or `allow` both."
_CATCH_UP = "Fire times missed while no control plane ran: `skip` them, or run the `latest` of them once."


def _valid_cron(value: str | None) -> str | None:
    problem = None if value is None else cron_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow_name: str = Field(min_length=1, max_length=100)
    parameters: dict[str, Any] = Field(default_factory=dict, description="The workflow's parameters by name.")
    cron: str = Field(description=_CRON, max_length=200)
    timezone: str = Field("UTC", description=_TIMEZONE, max_length=100)
    enabled: bool = True
    overlap_policy: OverlapPolicy = Field(OverlapPolicy.SKIP, description=_OVERLAP)
    catch_up_policy: CatchUpPolicy = Field(CatchUpPolicy.LATEST, description=_CATCH_UP)
    description: str | None = Field(None, max_length=2000)

    _cron = field_validator("cron")(_valid_cron)


class SchedulePatch(BaseModel):
    """The fields to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    workflow_name: str | None = Field(None, min_length=1, max_length=100)
    parameters: dict[str, Any] | None = None
    cron: str | None = Field(None, description=_CRON, max_length=200)
    timezone: str | None = Field(None, description=_TIMEZONE, max_length=100)
    enabled: bool | None = None
    overlap_policy: OverlapPolicy | None = Field(None, description=_OVERLAP)
    catch_up_policy: CatchUpPolicy | None = Field(None, description=_CATCH_UP)
    description: str | None = Field(None, max_length=2000)

    _cron = field_validator("cron")(_valid_cron)

    @field_validator("workflow_name", "parameters", "cron", "timezone", "enabled", "overlap_policy", "catch_up_policy")
    @classmethod
    def _given_not_null(cls, value: Any) -> Any:
        # Runs only for the fields given: left out, a field keeps its value; only `description` may be cleared.
        if value is None:
            raise ValueError("cannot be null: leave the field out to keep it")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields given."""
        return {field: getattr(self, field) for field in self.model_fields_set}


class FireOut(BaseModel):
    fire_time: datetime = Field(description="The time the cron expression named (UTC).")
    fired_at: datetime = Field(description="When the scheduler acted on it.")
    outcome: str = Field(
        description="`started`; `skipped` (the previous run had not ended); `missed` (no control plane ran, and "
        "the schedule skips missed fire times); `not_started` (the schedule needed attention)."
    )
    execution_id: str | None
    execution_status: ExecutionStatus | None
    detail: str | None


class ScheduleOut(BaseModel):
    id: str
    workflow_name: str
    org_id: str | None = Field(description="NULL: a global schedule (platform admins manage it).")
    description: str | None
    parameters: dict[str, Any]
    cron: str
    timezone: str
    enabled: bool
    overlap_policy: OverlapPolicy
    catch_up_policy: CatchUpPolicy
    source: ScheduleSource = Field(description="`decorator`: made for `@workflow(schedule=...)`, one per workflow.")
    owner_user_id: str = Field(description="The organization's scheduler account, which its runs run as.")
    needs_attention: str | None = Field(description="Why it does not fire; NULL when it does.")
    next_fire_at: datetime | None = Field(description="The next fire time it will act on; NULL while it does not fire.")
    next_fire_times: list[datetime] = Field(description="The next five times the cron expression names.")
    last_runs: list[FireOut] = Field(description="The latest fire times acted on, newest first.")
    created_at: datetime
    updated_at: datetime
