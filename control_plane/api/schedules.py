"""Schedules over HTTP: the admins of an organization manage its schedules, platform admins every schedule and
the global ones (`?global=true`)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from control_plane.api.dependencies import GlobalScopeQuery, OrgAdminDep, ServicesDep, client_address, write_scope
from control_plane.api.models.schedules import ScheduleIn, ScheduleOut, SchedulePatch
from control_plane.schedules.service import ScheduleSettings

router = APIRouter(prefix="/api/schedules", tags=["schedules"])


@router.get("")
def list_schedules(services: ServicesDep, user: OrgAdminDep) -> list[ScheduleOut]:
    """The schedules of the organization acted for; for platform admins, every schedule."""
    return [ScheduleOut.of(view) for view in services.schedules.list(user)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_schedule(
    body: ScheduleIn, request: Request, services: ServicesDep, user: OrgAdminDep, global_scope: GlobalScopeQuery = False
) -> ScheduleOut:
    """A schedule of the organization acted for (or, `global=true`, a global one), which runs as the
    organization's scheduler account. 422 for parameters that do not fit the workflow."""
    settings = ScheduleSettings(**body.model_dump())
    view = services.schedules.create(user, write_scope(user, global_scope), settings, ip=client_address(request))
    return ScheduleOut.of(view)


@router.get("/{schedule_id}")
def get_schedule(schedule_id: str, services: ServicesDep, user: OrgAdminDep) -> ScheduleOut:
    """The schedule, its next five fire times and its last runs."""
    return ScheduleOut.of(services.schedules.get(user, schedule_id))


@router.patch("/{schedule_id}")
def update_schedule(
    schedule_id: str, body: SchedulePatch, request: Request, services: ServicesDep, user: OrgAdminDep
) -> ScheduleOut:
    """Change the fields given. A schedule of `@workflow(schedule=...)` takes its workflow and cron expression
    from the decorator (409 when asked to change them); the rest admins may change."""
    return ScheduleOut.of(services.schedules.update(user, schedule_id, body.changes(), ip=client_address(request)))


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_schedule(schedule_id: str, request: Request, services: ServicesDep, user: OrgAdminDep) -> Response:
    """Delete the schedule; its runs stay. 409 for a schedule of `@workflow(schedule=...)` (disable it instead)."""
    services.schedules.delete(user, schedule_id, ip=client_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
