"""Schedules as admins manage them: the admins of an organization its schedules, platform admins every schedule
and the global ones. Every change is audited; a schedule's parameters are checked against its workflow when
they are saved."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, desc
from sqlmodel import Session, col, select

from bifrost._internal.protocol import ExecutionStatus
from bifrost._internal.schema import ParameterValidationError, validate_parameters
from bifrost.api.schedules import CatchUpPolicy, OverlapPolicy, ScheduleSource
from control_plane.db.models import Execution, Schedule, ScheduleFire, utcnow
from control_plane.db.session import session_scope
from control_plane.errors import ConflictError, FieldProblem, ForbiddenError, InvalidFieldsError, NotFoundError
from control_plane.registry import Registry
from control_plane.schedules.cron import next_fire_times, time_zone
from control_plane.schedules.owners import schedule_owner
from control_plane.schedules.rules import attention_needed, next_fire_at
from control_plane.security.audit import record
from control_plane.security.principals import Principal
from control_plane.security.workflow_access import may_start

SHOWN_FIRE_TIMES = 5
SHOWN_FIRES = 10

FROM_THE_DECORATOR = frozenset({"workflow_name", "cron"})
"""What a schedule made for `@workflow(schedule=...)` takes from the decorator, and admins cannot change."""


@dataclass(frozen=True)
class ScheduleSettings:
    """What an admin sets on a schedule."""

    workflow_name: str
    parameters: dict[str, Any]
    cron: str
    timezone: str = "UTC"
    enabled: bool = True
    overlap_policy: OverlapPolicy = OverlapPolicy.SKIP
    catch_up_policy: CatchUpPolicy = CatchUpPolicy.LATEST
    description: str | None = None


@dataclass(frozen=True)
class FireRecord:
    """One fire time the scheduler acted on, with the status of the run it started."""

    fire: ScheduleFire
    execution_status: ExecutionStatus | None


@dataclass(frozen=True)
class ScheduleView:
    schedule: Schedule
    next_fire_times: list[datetime]
    """The next times the cron expression names (it fires at them while enabled and not needing attention)."""
    last_fires: list[FireRecord]
    """The latest fire times acted on, newest first."""


class ScheduleService:
    def __init__(self, db: Engine, registry: Registry, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._registry = registry
        self._clock = clock

    def list(self, actor: Principal) -> list[ScheduleView]:
        """Platform admins: every schedule. Org admins: the schedules of the organization acted for."""
        query = select(Schedule).order_by(col(Schedule.workflow_name), col(Schedule.created_at))
        if not actor.is_platform_admin:
            query = query.where(Schedule.org_id == actor.org_id)
        with session_scope(self._db) as session:
            return [self._view(session, schedule) for schedule in session.exec(query).all()]

    def get(self, actor: Principal, schedule_id: str) -> ScheduleView:
        with session_scope(self._db) as session:
            return self._view(session, _managed(session, actor, schedule_id))

    def create(self, actor: Principal, org_id: str | None, settings: ScheduleSettings, *, ip: str) -> ScheduleView:
        """A schedule of `org_id` (None: a global one). `NotFoundError` for a workflow not in the workspace,
        `ForbiddenError` for one the actor may not start, `InvalidFieldsError` for parameters that do not fit
        it (located as FastAPI locates a malformed body's)."""
        self._check_workflow(actor, org_id, settings.workflow_name, settings.parameters)
        owner_id = schedule_owner(self._db, org_id)
        now = self._clock()
        schedule = Schedule(
            org_id=org_id,
            workflow_name=settings.workflow_name,
            description=settings.description,
            parameters=settings.parameters,
            cron=settings.cron,
            timezone=settings.timezone,
            enabled=settings.enabled,
            overlap_policy=settings.overlap_policy.value,
            catch_up_policy=settings.catch_up_policy.value,
            owner_user_id=owner_id,
            next_fire_at=next_fire_at(
                settings.cron, settings.timezone, enabled=settings.enabled, needs_attention=None, after=now
            ),
            created_by=actor.user_id,
            updated_by=actor.user_id,
            created_at=now,
            updated_at=now,
        )
        with session_scope(self._db) as session:
            session.add(schedule)
            record(
                session,
                "schedule.created",
                actor=actor,
                org_id=org_id,
                target=schedule.id,
                ip=ip,
                workflow=schedule.workflow_name,
                cron=schedule.cron,
                timezone=schedule.timezone,
            )
            session.commit()
            return self._view(session, schedule)

    def update(self, actor: Principal, schedule_id: str, changes: Mapping[str, Any], *, ip: str) -> ScheduleView:
        """Change the given fields (those of `ScheduleSettings`). `ConflictError` for what a decorator's schedule
        takes from its decorator; as `create` for a workflow or parameters that do not fit. Its next fire is
        computed anew when its times change or it comes to fire again; a change of parameters alone keeps it."""
        with session_scope(self._db) as session:
            schedule = _managed(session, actor, schedule_id)
            if schedule.source == ScheduleSource.DECORATOR.value:
                fixed = sorted(
                    field for field in FROM_THE_DECORATOR & set(changes) if changes[field] != getattr(schedule, field)
                )
                if fixed:
                    raise _FromTheDecoratorError(schedule, fixed)
            workflow_name = changes.get("workflow_name", schedule.workflow_name)
            parameters = changes.get("parameters", schedule.parameters)
            if "workflow_name" in changes or "parameters" in changes:
                self._check_workflow(actor, schedule.org_id, workflow_name, parameters)
            before = (schedule.cron, schedule.timezone, schedule.enabled, schedule.needs_attention)
            for field, value in changes.items():
                setattr(schedule, field, value.value if isinstance(value, OverlapPolicy | CatchUpPolicy) else value)
            schedule.needs_attention = attention_needed(self._registry.snapshot, workflow_name, parameters)
            now = self._clock()
            after = (schedule.cron, schedule.timezone, schedule.enabled, schedule.needs_attention)
            if after != before or schedule.next_fire_at is None:
                schedule.next_fire_at = next_fire_at(
                    schedule.cron,
                    schedule.timezone,
                    enabled=schedule.enabled,
                    needs_attention=schedule.needs_attention,
                    after=now,
                )
            schedule.version += 1
            schedule.updated_by = actor.user_id
            schedule.updated_at = now
            session.add(schedule)
            record(
                session,
                "schedule.updated",
                actor=actor,
                org_id=schedule.org_id,
                target=schedule.id,
                ip=ip,
                changed=sorted(changes),
            )
            session.commit()
            return self._view(session, schedule)

    def delete(self, actor: Principal, schedule_id: str, *, ip: str) -> None:
        """Delete a schedule and the record of its fires (its runs stay). `ConflictError` for a decorator's."""
        with session_scope(self._db) as session:
            schedule = _managed(session, actor, schedule_id)
            if schedule.source == ScheduleSource.DECORATOR.value:
                raise ConflictError(
                    f"schedule {schedule.id!r} is made by @workflow(schedule=...) of workflow "
                    f"{schedule.workflow_name!r}: remove the option there, or disable the schedule"
                )
            session.execute(delete(ScheduleFire).where(col(ScheduleFire.schedule_id) == schedule.id))
            session.delete(schedule)
            record(
                session,
                "schedule.deleted",
                actor=actor,
                org_id=schedule.org_id,
                target=schedule.id,
                ip=ip,
                workflow=schedule.workflow_name,
            )
            session.commit()

    def _check_workflow(
        self, actor: Principal, org_id: str | None, workflow_name: str, parameters: dict[str, Any]
    ) -> None:
        workflow = self._registry.get(workflow_name)
        if workflow is None:
            raise NotFoundError(f"no workflow named {workflow_name!r} in the workspace")
        with session_scope(self._db) as session:
            acting = replace(actor, org_id=org_id)
            if not may_start(session, acting, workflow_name):
                raise ForbiddenError(f"workflow {workflow_name!r} is restricted to other roles")
        try:
            validate_parameters(workflow.parameters_schema, parameters)
        except ParameterValidationError as exc:
            raise InvalidFieldsError(
                [
                    FieldProblem(("body", "parameters", *_path(error.field)), error.message, error.type)
                    for error in exc.errors
                ]
            ) from exc

    def _view(self, session: Session, schedule: Schedule) -> ScheduleView:
        fires = session.exec(
            select(ScheduleFire, Execution.status)
            .join(Execution, col(Execution.id) == col(ScheduleFire.execution_id), isouter=True)
            .where(ScheduleFire.schedule_id == schedule.id)
            .order_by(desc(col(ScheduleFire.fire_time)))
            .limit(SHOWN_FIRES)
        ).all()
        return ScheduleView(
            schedule=schedule,
            next_fire_times=next_fire_times(
                schedule.cron, time_zone(schedule.timezone), self._clock(), SHOWN_FIRE_TIMES
            ),
            last_fires=[FireRecord(fire, _status(status)) for fire, status in fires],
        )


def _path(dotted_field: str) -> tuple[str | int, ...]:
    """`items.2.name` as ("items", 2, "name"), the way FastAPI locates errors."""
    return tuple(int(part) if part.isdigit() else part for part in dotted_field.split(".") if part)


def _status(value: str | None) -> ExecutionStatus | None:
    return None if value is None else ExecutionStatus(value)


class _FromTheDecoratorError(ConflictError):
    def __init__(self, schedule: Schedule, fields: list[str]) -> None:
        super().__init__(
            f"schedule {schedule.id!r} is made by @workflow(schedule=...) of workflow {schedule.workflow_name!r}, "
            f"which sets its {' and '.join(fields)}: change them there"
        )


def _managed(session: Session, actor: Principal, schedule_id: str) -> Schedule:
    """The schedule, if the actor may manage it; `NotFoundError` otherwise."""
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or not actor.may_administer_org(schedule.org_id):
        raise NotFoundError(f"no schedule {schedule_id!r}")
    if not actor.is_platform_admin and schedule.org_id != actor.org_id:
        raise NotFoundError(f"no schedule {schedule_id!r}")
    return schedule
