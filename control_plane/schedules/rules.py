"""What decides whether a schedule fires: its workflow must be in the workspace and its parameters must fit the
workflow's; and when it fires next."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bifrost._internal.schema import ParameterValidationError, validate_parameters
from control_plane.registry import RegistrySnapshot
from control_plane.schedules.cron import InvalidTimeZoneError, next_fire_time, time_zone


def attention_needed(snapshot: RegistrySnapshot, workflow_name: str, parameters: dict[str, Any]) -> str | None:
    """Why a schedule of `workflow_name` with `parameters` cannot fire now; None when it can."""
    workflow = snapshot.workflows.get(workflow_name)
    if workflow is None:
        return f"workflow {workflow_name!r} is not in the workspace"
    try:
        validate_parameters(workflow.parameters_schema, parameters)
    except ParameterValidationError as exc:
        details = "; ".join(f"{error.field or 'parameters'}: {error.message}" for error in exc.errors)
        return f"its parameters do not fit workflow {workflow_name!r}: {details}"
    return None


def next_fire_at(
    cron: str, timezone: str, *, enabled: bool, needs_attention: str | None, after: datetime
) -> datetime | None:
    """The first fire time after `after` a schedule acts on: None while it is disabled or needs attention."""
    if not enabled or needs_attention is not None:
        return None
    try:
        zone = time_zone(timezone)
    except InvalidTimeZoneError:
        return None
    return next_fire_time(cron, zone, after)
