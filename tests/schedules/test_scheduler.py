"""The scheduler against a real database and a real workspace registry, with a clock the test moves: due fires,
catch-up after downtime, overlap, daylight-saving changes, edits while due, workflows that change under their
schedules, and the schedules `@workflow(schedule=...)` makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from sqlalchemy import select, update

from bifrost._internal.protocol import ExecutionStatus
from bifrost.api.schedules import CatchUpPolicy, OverlapPolicy, ScheduleSource
from control_plane.db.models import AuditEvent, User
from control_plane.db.tables import EXECUTIONS
from control_plane.errors import ConflictError, InvalidFieldsError
from control_plane.executions.slots import Limits, Slots
from control_plane.schedules.owners import owner_email
from control_plane.schedules.scheduler import Scheduler
from control_plane.schedules.service import ScheduleService, ScheduleSettings
from control_plane.security.principals import Principal
from tests.schedules.conftest import (
    Clock,
    Submitted,
    Workspace,
    all_schedules,
    executions_of,
    fires_of,
    read_schedule,
)

REPORTS = """
    from bifrost import workflow

    @workflow
    def report(team: str, days: int = 7):
        return {"team": team}
"""


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 1, 5, hour, minute, second, tzinfo=UTC)


async def run_until(scheduler: Scheduler, clock: Clock, until: datetime, step: timedelta) -> None:
    """Tick the scheduler every `step` of the test's clock, as its loop does every second of a real one, up to
    `until`; the clock stays at the last tick."""
    while True:
        await scheduler.tick()
        if clock.now + step > until:
            return
        clock.now += step


def end(db: sqlalchemy.Engine, execution_id: str) -> None:
    """The run ends (as its runner's events would end it)."""
    with db.begin() as conn:
        conn.execute(update(EXECUTIONS).where(EXECUTIONS.c.id == execution_id).values(status=ExecutionStatus.SUCCESS))


def report_schedule(schedules: ScheduleService, admin: Principal, cron: str = "* * * * *", **options: object) -> str:
    settings = ScheduleSettings(workflow_name="report", parameters={"team": "ops"}, cron=cron, **options)  # type: ignore[arg-type]
    return schedules.create(admin, admin.org_id, settings, ip="127.0.0.1").schedule.id


async def test_a_schedule_fires_once_at_each_fire_time_as_its_owner(
    db: sqlalchemy.Engine,
    workspace: Workspace,
    scheduler: Scheduler,
    schedules: ScheduleService,
    org_admin: Principal,
    clock: Clock,
    submitted: Submitted,
) -> None:
    workspace.write("reports.py", REPORTS)
    schedule_id = report_schedule(schedules, org_admin, overlap_policy=OverlapPolicy.ALLOW)
    assert read_schedule(db, schedule_id).next_fire_at is not None

    await run_until(scheduler, clock, at(9, 2, 50), timedelta(seconds=20))
    await scheduler.tick()  # again at the same moment: nothing more is due

    fires = fires_of(db, schedule_id)
    assert [(fire.fire_time.replace(tzinfo=UTC), fire.outcome) for fire in fires] == [
        (at(9, 0), "started"),
        (at(9, 1), "started"),
        (at(9, 2), "started"),
    ]
    executions = executions_of(db, schedule_id)
    assert [execution.id for execution in executions] == [fire.execution_id for fire in fires] == submitted.ids
    owner = executions[0].user_id
    with sqlalchemy.orm.Session(db) as session:
        account = session.get(User, owner)
        assert account is not None
        assert (account.email, account.is_service_account) == (owner_email(org_admin.org_id), True)
    with sqlalchemy.orm.Session(db) as session:
        fired = session.scalars(select(AuditEvent).where(AuditEvent.action == "schedule.fired")).all()
        assert [(event.actor_user_id, event.target, event.detail["execution_id"]) for event in fired] == [
            (owner, schedule_id, execution.id) for execution in executions
        ]
    for execution in executions:
        assert (execution.trigger, execution.org_id, execution.user_id) == ("schedule", org_admin.org_id, owner)
        assert execution.parameters == {"team": "ops", "days": 7}
        assert execution.workspace_revision == workspace.registry.snapshot.revision
    assert read_schedule(db, schedule_id).next_fire_at.replace(tzinfo=UTC) == at(9, 3)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("policy", "outcome", "runs", "note"),
    [
        (CatchUpPolicy.SKIP, "missed", 0, "6 fire times missed while no control plane ran"),
        (CatchUpPolicy.LATEST, "started", 1, "runs once for 6 fire times missed while no control plane ran"),
    ],
)
async def test_fire_times_missed_while_no_control_plane_ran(
    db: sqlalchemy.Engine,
    workspace: Workspace,
    scheduler: Scheduler,
    schedules: ScheduleService,
    org_admin: Principal,
    clock: Clock,
    policy: CatchUpPolicy,
    outcome: str,
    runs: int,
    note: str,
) -> None:
    workspace.write("reports.py", REPORTS)
    schedule_id = report_schedule(
        schedules, org_admin, "*/5 * * * *", catch_up_policy=policy, overlap_policy=OverlapPolicy.ALLOW
    )
    clock.now = at(9, 0, 10)
    await scheduler.tick()
    assert len(executions_of(db, schedule_id)) == 1

    clock.now = at(9, 31, 10)  # down from 09:00:10: 09:05 to 09:30 came and went, 09:30 more than a minute ago
    await scheduler.tick()

    missed = fires_of(db, schedule_id)[1:]
    assert [(fire.fire_time.replace(tzinfo=UTC), fire.outcome) for fire in missed] == [(at(9, 30), outcome)]
    assert note in (missed[0].detail or "")
    assert len(executions_of(db, schedule_id)) == 1 + runs
    assert read_schedule(db, schedule_id).next_fire_at.replace(tzinfo=UTC) == at(9, 35)  # type: ignore[union-attr]

    await run_until(scheduler, clock, at(9, 35, 30), timedelta(seconds=30))
    assert len(executions_of(db, schedule_id)) == 2 + runs


async def test_a_fire_time_reached_late_but_within_a_minute_still_runs(
    db: sqlalchemy.Engine,
    workspace: Workspace,
    scheduler: Scheduler,
    schedules: ScheduleService,
    org_admin: Principal,
    clock: Clock,
) -> None:
    workspace.write("reports.py", REPORTS)
    schedule_id = report_schedule(schedules, org_admin, "0 * * * *", catch_up_policy=CatchUpPolicy.SKIP)
    clock.now = at(9, 0, 55)
    await scheduler.tick()
    assert [fire.outcome for fire in fires_of(db, schedule_id)] == ["started"]


async def test_overlap_policies(
    db: sqlalchemy.Engine,
    workspace: Workspace,
    scheduler: Scheduler,
    schedules: ScheduleService,
    org_admin: Principal,
    clock: Clock,
) -> None:
    workspace.write("reports.py", REPORTS)
    skip = report_schedule(schedules, org_admin, overlap_policy=OverlapPolicy.SKIP)
    queue = report_schedule(schedules, org_admin, overlap_policy=OverlapPolicy.QUEUE)
    allow = report_schedule(schedules, org_admin, overlap_policy=OverlapPolicy.ALLOW)

    await run_until(scheduler, clock, at(9, 1, 10), timedelta(seconds=20))  # none of the 09:00 runs has ended

    skipped = fires_of(db, skip)
    first = executions_of(db, skip)[0]
    assert [fire.outcome for fire in skipped] == ["started", "skipped"]
    assert skipped[1].detail == f"the previous run (execution {first.id}) had not ended"
    assert len(executions_of(db, allow)) == 2
    queued = executions_of(db, queue)
    assert len(queued) == 2

    # The queued run waits for the one before it, whatever the other limits allow.
    slots = Slots(db)
    limits = Limits(total=100, per_workflow=100)
    claimed = slots.claim("test", limits, at(9, 1, 20), most=100).execution_ids
    assert queued[0].id in claimed
    assert queued[1].id not in claimed
    end(db, queued[0].id)
    assert slots.claim("test", limits, at(9, 1, 30), most=100).execution_ids == [queued[1].id]

    end(db, first.id)
    await run_until(scheduler, clock, at(9, 2, 10), timedelta(seconds=20))
    assert [fire.outcome for fire in fires_of(db, skip)] == ["started", "skipped", "started"]


@pytest.mark.parametrize(
    ("zone", "cron", "night_start", "fire_time"),
    [
        # Berlin skips 02:00-03:00 on 2025-03-30: 02:30 runs once, at 03:00 CEST (01:00 UTC).
        ("Europe/Berlin", "30 2 * * *", datetime(2025, 3, 29, 23, 0, tzinfo=UTC), datetime(2025, 3, 30, 1, 0)),
        # Berlin passes 02:00-03:00 twice on 2025-10-26: 02:30 runs once, the first time (00:30 UTC).
        ("Europe/Berlin", "30 2 * * *", datetime(2025, 10, 25, 23, 0, tzinfo=UTC), datetime(2025, 10, 26, 0, 30)),
        # New York skips 02:00-03:00 on 2025-03-09: 02:30 runs at 03:00 EDT (07:00 UTC).
        ("America/New_York", "30 2 * * *", datetime(2025, 3, 9, 5, 0, tzinfo=UTC), datetime(2025, 3, 9, 7, 0)),
        # New York passes 01:00-02:00 twice on 2025-11-02: 01:30 runs once, on EDT (05:30 UTC).
        ("America/New_York", "30 1 * * *", datetime(2025, 11, 2, 4, 0, tzinfo=UTC), datetime(2025, 11, 2, 5, 30)),
    ],
)
async def test_a_daily_schedule_runs_once_through_a_daylight_saving_night(
    db: sqlalchemy.Engine,
    workspace: Workspace,
    scheduler: Scheduler,
    schedules: ScheduleService,
    org_admin: Principal,
    clock: Clock,
    zone: str,
    cron: str,
    night_start: datetime,
    fire_time: datetime,
) -> None:
    workspace.write("reports.py", REPORTS)
    clock.now = night_start
    schedule_id = report_schedule(schedules, org_admin, cron, timezone=zone, overlap_policy=OverlapPolicy.ALLOW)
    await run_until(scheduler, clock, night_start + timedelta(hours=4), timedelta(seconds=45))
    fires = fires_of(db, schedule_id)
    assert [(fire.fire_time.replace(tzinfo=None), fire.outcome) for fire in fires] == [(fire_time, "started")]


async def test_a_schedule_edited_or_disabled_while_due(
    db: sqlalchemy.Engine,
    workspace: Workspace,
    scheduler: Scheduler,
    schedules: ScheduleService,
    org_admin: Principal,
    clock: Clock,
) -> None:
    workspace.write("reports.py", REPORTS)
    edited = report_schedule(schedules, org_admin)
    disabled = report_schedule(schedules, org_admin)
    moved = report_schedule(schedules, org_admin)

    clock.now = at(9, 0, 5)  # all three are due; the scheduler has not acted yet
    schedules.update(org_admin, edited, {"parameters": {"team": "sales", "days": 1}}, ip="127.0.0.1")
    schedules.update(org_admin, disabled, {"enabled": False}, ip="127.0.0.1")
    schedules.update(org_admin, moved, {"cron": "30 9 * * *"}, ip="127.0.0.1")
    await scheduler.tick()

    assert [execution.parameters for execution in executions_of(db, edited)] == [{"team": "sales", "days": 1}]
    assert executions_of(db, disabled) == []
    assert read_schedule(db, disabled).next_fire_at is None
    assert executions_of(db, moved) == []
    assert read_schedule(db, moved).next_fire_at.replace(tzinfo=UTC) == at(9, 30)  # type: ignore[union-attr]

    # Enabled again later: what came while it was disabled was not missed, it was not due.
    clock.now = at(9, 10, 20)
    schedules.update(org_admin, disabled, {"enabled": True}, ip="127.0.0.1")
    assert read_schedule(db, disabled).next_fire_at.replace(tzinfo=UTC) == at(9, 11)  # type: ignore[union-attr]
    await scheduler.tick()
    assert executions_of(db, disabled) == []


async def test_a_workflow_that_changed_under_its_schedule(
    db: sqlalchemy.Engine,
    workspace: Workspace,
    scheduler: Scheduler,
    schedules: ScheduleService,
    org_admin: Principal,
    clock: Clock,
) -> None:
    workspace.write("reports.py", REPORTS)
    schedule_id = report_schedule(schedules, org_admin, overlap_policy=OverlapPolicy.ALLOW)
    await run_until(scheduler, clock, at(9, 0, 10), timedelta(seconds=20))
    assert len(executions_of(db, schedule_id)) == 1

    workspace.write("reports.py", REPORTS.replace("days: int = 7", "days: int = 7, *, region: str"))
    await run_until(scheduler, clock, at(9, 3, 10), timedelta(seconds=20))

    schedule = read_schedule(db, schedule_id)
    assert schedule.needs_attention == "its parameters do not fit workflow 'report': region: Field required"
    assert schedule.next_fire_at is None
    assert len(executions_of(db, schedule_id)) == 1  # nothing started into a refusal

    # Saving parameters that fit no more: refused, nothing stored.
    with pytest.raises(InvalidFieldsError, match=r"body\.parameters\.region"):
        schedules.update(org_admin, schedule_id, {"parameters": {"team": "ops", "region": 3}}, ip="127.0.0.1")
    schedules.update(org_admin, schedule_id, {"parameters": {"team": "ops", "region": "eu"}}, ip="127.0.0.1")
    assert read_schedule(db, schedule_id).needs_attention is None
    await run_until(scheduler, clock, at(9, 4, 10), timedelta(seconds=20))
    assert executions_of(db, schedule_id)[-1].parameters == {"team": "ops", "days": 7, "region": "eu"}

    workspace.remove("reports.py")
    await scheduler.tick()
    assert read_schedule(db, schedule_id).needs_attention == "workflow 'report' is not in the workspace"
    workspace.write("reports.py", REPORTS.replace("days: int = 7", "days: int = 7, *, region: str"))
    await scheduler.tick()
    assert read_schedule(db, schedule_id).needs_attention is None


CLEANUP = """
    from bifrost import workflow

    @workflow(schedule="*/10 * * * *")
    def cleanup():
        return {}
"""


async def test_the_schedule_of_a_decorator_follows_it(
    db: sqlalchemy.Engine,
    workspace: Workspace,
    scheduler: Scheduler,
    schedules: ScheduleService,
    platform_admin: Principal,
    clock: Clock,
    submitted: Submitted,
) -> None:
    workspace.write("cleanup.py", CLEANUP)
    await scheduler.tick()
    # A restarted control plane (a scheduler of its own) finds it and makes no second one.
    restarted = Scheduler(db, workspace.registry, submitted, clock=clock)
    await restarted.tick()
    [made] = all_schedules(db)
    assert (made.workflow_name, made.cron, made.source, made.org_id) == ("cleanup", "*/10 * * * *", "decorator", None)

    await run_until(restarted, clock, at(9, 0, 30), timedelta(seconds=30))
    assert [execution.trigger for execution in executions_of(db, made.id)] == ["schedule"]

    # Admins may disable it or give it other parameters, not another cron expression: that is the decorator's.
    with pytest.raises(ConflictError, match="which sets its cron: change them there"):
        schedules.update(platform_admin, made.id, {"cron": "0 * * * *"}, ip="127.0.0.1")
    with pytest.raises(ConflictError, match="remove the option there, or disable the schedule"):
        schedules.delete(platform_admin, made.id, ip="127.0.0.1")
    schedules.update(platform_admin, made.id, {"enabled": False}, ip="127.0.0.1")

    workspace.write("cleanup.py", CLEANUP.replace("*/10 * * * *", "0 3 * * *"))
    await scheduler.tick()
    followed = read_schedule(db, made.id)
    assert (followed.cron, followed.enabled) == ("0 3 * * *", False)

    workspace.write("cleanup.py", CLEANUP.replace('(schedule="*/10 * * * *")', ""))
    await scheduler.tick()
    assert all_schedules(db) == []


async def test_a_decorator_schedule_of_a_workflow_that_needs_parameters_waits_for_them(
    db: sqlalchemy.Engine,
    workspace: Workspace,
    scheduler: Scheduler,
    schedules: ScheduleService,
    platform_admin: Principal,
    clock: Clock,
) -> None:
    workspace.write("cleanup.py", CLEANUP.replace("def cleanup():", "def cleanup(older_than_days: int):"))
    await scheduler.tick()
    [made] = all_schedules(db)
    assert made.needs_attention == "its parameters do not fit workflow 'cleanup': older_than_days: Field required"
    assert made.source == ScheduleSource.DECORATOR

    schedules.update(platform_admin, made.id, {"parameters": {"older_than_days": 30}}, ip="127.0.0.1")
    await run_until(scheduler, clock, at(9, 0, 30), timedelta(seconds=30))
    [execution] = executions_of(db, made.id)
    assert execution.parameters == {"older_than_days": 30}
    assert execution.org_id is None
