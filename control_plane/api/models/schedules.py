"""Request and response bodies of schedules (defined in `bifrost.api`); here, the time zone checked against the
server's zone database, and how each answer is made from what the service returns."""

from __future__ import annotations

from pydantic import field_validator

from bifrost.api import schedules as api
from bifrost.api.schedules import CatchUpPolicy, OverlapPolicy, ScheduleSource
from control_plane.db.models import as_utc
from control_plane.schedules.cron import time_zone
from control_plane.schedules.service import FireRecord, ScheduleView

__all__ = ["FireOut", "ScheduleIn", "ScheduleOut", "SchedulePatch"]


def _valid_timezone(value: str | None) -> str | None:
    if value is not None:
        time_zone(value)
    return value


class ScheduleIn(api.ScheduleIn):
    _timezone = field_validator("timezone")(_valid_timezone)


class SchedulePatch(api.SchedulePatch):
    _timezone = field_validator("timezone")(_valid_timezone)


class FireOut(api.FireOut):
    @classmethod
    def of(cls, record: FireRecord) -> FireOut:
        fire = record.fire
        return cls(
            fire_time=as_utc(fire.fire_time),
            fired_at=as_utc(fire.fired_at),
            outcome=fire.outcome,
            execution_id=fire.execution_id,
            execution_status=record.execution_status,
            detail=fire.detail,
        )


class ScheduleOut(api.ScheduleOut):
    @classmethod
    def of(cls, view: ScheduleView) -> ScheduleOut:
        schedule = view.schedule
        return cls(
            id=schedule.id,
            workflow_name=schedule.workflow_name,
            org_id=schedule.org_id,
            description=schedule.description,
            parameters=schedule.parameters,
            cron=schedule.cron,
            timezone=schedule.timezone,
            enabled=schedule.enabled,
            overlap_policy=OverlapPolicy(schedule.overlap_policy),
            catch_up_policy=CatchUpPolicy(schedule.catch_up_policy),
            source=ScheduleSource(schedule.source),
            owner_user_id=schedule.owner_user_id,
            needs_attention=schedule.needs_attention,
            next_fire_at=as_utc(schedule.next_fire_at) if schedule.next_fire_at else None,
            next_fire_times=view.next_fire_times,
            last_runs=[FireOut.of(record) for record in view.last_fires],
            created_at=as_utc(schedule.created_at),
            updated_at=as_utc(schedule.updated_at),
        )
