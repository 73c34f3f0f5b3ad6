"""The scheduler: runs in every control-plane replica, and fires each (schedule, fire time) once across them.

Every second it reads the schedules whose next fire time has come. One transaction per schedule moves the
schedule's next fire time on (compare and set: of replicas that read the same schedule, one moves it, the
others find it moved and leave it) and records each fire time it acts on in `schedule_fires`, whose unique
(schedule, fire time) row is what never lets a fire time run twice; the runs it starts are recorded in the same
transaction, and a dispatcher launches them like any other.

A fire time reached within `ON_TIME` counts as on time. Those reached later were missed (no control plane ran):
the schedule's catch-up policy says whether the latest of them runs once or none does. At each fire, the
schedule's overlap policy says what happens while its previous run has not ended.

When the workspace changes, the scheduler brings the schedules of `@workflow(schedule=...)` in line with their
decorators, and checks every schedule against its workflow: one whose workflow is gone, or whose parameters no
longer fit it, needs attention and does not fire until it fits again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bifrost._internal.protocol import ExecutionStatus
from bifrost._internal.schema import validate_parameters
from bifrost.api.executions import Trigger
from bifrost.api.schedules import CatchUpPolicy, OverlapPolicy, ScheduleSource
from control_plane.db.models import Schedule, as_utc, new_id, utcnow
from control_plane.db.tables import EXECUTIONS, SCHEDULE_FIRES, SCHEDULES
from control_plane.engine.tasks import cancel_and_wait
from control_plane.registry import Registry, RegistrySnapshot
from control_plane.schedules.cron import InvalidTimeZoneError, fire_times, time_zone
from control_plane.schedules.owners import OWNER_NAME, owner_email, schedule_owner
from control_plane.schedules.rules import attention_needed, next_fire_at
from control_plane.security.audit import record
from control_plane.security.principals import make_principal

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0
ON_TIME = timedelta(seconds=60)
"""How late the scheduler may reach a fire time for it to count as on time rather than missed."""
MISSED_WALK_LIMIT = 10_000
"""Missed fire times counted one by one at most; beyond, only the latest is looked for, within `SKIP_AHEAD`."""
SKIP_AHEAD = timedelta(days=31)

Submit = Callable[[str], Awaitable[None]]
"""Hands a recorded execution to the engine (wakes a dispatcher)."""


class Scheduler:
    def __init__(
        self,
        db: Engine,
        registry: Registry,
        submit: Submit,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._registry = registry
        self._submit = submit
        self._clock = clock
        self._checked_revision: str | None = None
        """The workspace revision the schedules were last checked against."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bifrost-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # the loop must outlive any one failure; what it did not fire is still due
                logger.exception("the scheduler's pass failed; trying again")
            await asyncio.sleep(POLL_SECONDS)

    async def tick(self) -> list[str]:
        """One pass at the clock's time: check the schedules against a changed workspace, fire what is due. The
        executions it started."""
        now = self._clock()
        snapshot = self._registry.snapshot
        # (A registry that has not read the workspace yet has no revision: nothing to check against.)
        if snapshot.revision is not None and snapshot.revision != self._checked_revision:
            followed = await asyncio.to_thread(self.follow_workspace, snapshot, now)
            self._checked_revision = snapshot.revision if followed else None
        started = await asyncio.to_thread(self.fire_due, now)
        for execution_id in started:
            await self._submit(execution_id)
        return started

    # Firing.

    def fire_due(self, now: datetime) -> list[str]:
        """Act on every schedule whose next fire time has come; the executions started."""
        due = select(SCHEDULES).where(
            SCHEDULES.c.next_fire_at <= now, SCHEDULES.c.enabled, SCHEDULES.c.needs_attention.is_(None)
        )
        with self._db.connect() as conn:
            schedules = list(conn.execute(due.order_by(SCHEDULES.c.next_fire_at)).mappings())
        started: list[str] = []
        for schedule in schedules:
            started.extend(self._fire(dict(schedule), now))
        return started

    def _fire(self, schedule: dict[str, Any], now: datetime) -> list[str]:
        try:
            zone = time_zone(schedule["timezone"])
        except InvalidTimeZoneError as exc:
            self._set_attention(schedule, str(exc), now)
            return []
        on_time, missed, following = _due_times(schedule["cron"], zone, as_utc(schedule["next_fire_at"]), now)
        with Session(self._db) as session:
            moved = session.connection().execute(
                update(SCHEDULES)
                .where(
                    SCHEDULES.c.id == schedule["id"],
                    SCHEDULES.c.version == schedule["version"],
                    SCHEDULES.c.next_fire_at == schedule["next_fire_at"],
                )
                .values(next_fire_at=following)
            )
            if moved.rowcount != 1:  # another replica acted on it, or an admin changed it meanwhile
                return []
            started = self._act(session, schedule, on_time, missed, now)
            try:
                session.commit()
            except IntegrityError:  # a fire time recorded meanwhile: it ran once, and the next pass goes on
                logger.warning("schedule %s: a fire time was acted on elsewhere", schedule["id"])
                return []
        return started

    def _act(
        self, session: Session, schedule: dict[str, Any], on_time: list[datetime], missed: _Missed, now: datetime
    ) -> list[str]:
        """What the due fire times start, in the session's transaction; the executions started."""
        runs: list[tuple[datetime, str | None]] = [(moment, None) for moment in on_time]
        if missed.latest is not None:
            if schedule["catch_up_policy"] == CatchUpPolicy.LATEST.value:
                runs.insert(0, (missed.latest, missed.note(run=True)))
            else:
                _record_fire(session, schedule, missed.latest, now, "missed", missed.note(run=False))
        started: list[str] = []
        for fire_time, note in runs:
            taken = session.execute(
                select(SCHEDULE_FIRES.c.id).where(
                    SCHEDULE_FIRES.c.schedule_id == schedule["id"], SCHEDULE_FIRES.c.fire_time == fire_time
                )
            ).first()
            if taken is not None:
                continue
            execution_id = self._start_run(session, schedule, fire_time, now, note)
            if execution_id is None:
                break
            if execution_id:
                started.append(execution_id)
        return started

    def _start_run(
        self, session: Session, schedule: dict[str, Any], fire_time: datetime, now: datetime, note: str | None
    ) -> str | None:
        """Start the run of one fire time; its execution id, "" when the overlap policy skipped it, None when
        the schedule needs attention instead."""
        overlap = schedule["overlap_policy"]
        if overlap == OverlapPolicy.SKIP.value:
            running = session.execute(
                select(EXECUTIONS.c.id)
                .where(
                    EXECUTIONS.c.schedule_id == schedule["id"],
                    EXECUTIONS.c.status.in_((ExecutionStatus.PENDING, ExecutionStatus.RUNNING)),
                )
                .order_by(EXECUTIONS.c.created_at)
            ).first()
            if running is not None:
                detail = f"the previous run (execution {running.id}) had not ended"
                _record_fire(session, schedule, fire_time, now, "skipped", detail)
                return ""
        snapshot = self._registry.snapshot
        problem = attention_needed(snapshot, schedule["workflow_name"], schedule["parameters"])
        workflow = snapshot.workflows.get(schedule["workflow_name"])
        if problem is not None or workflow is None:
            problem = problem or f"workflow {schedule['workflow_name']!r} is not in the workspace"
            session.execute(
                update(SCHEDULES)
                .where(SCHEDULES.c.id == schedule["id"])
                .values(needs_attention=problem, next_fire_at=None, version=SCHEDULES.c.version + 1)
            )
            _record_fire(session, schedule, fire_time, now, "not_started", problem)
            logger.warning("schedule %s needs attention and did not fire: %s", schedule["id"], problem)
            return None
        execution_id = new_id()
        session.execute(
            insert(EXECUTIONS).values(
                id=execution_id,
                org_id=schedule["org_id"],
                user_id=schedule["owner_user_id"],
                workflow_name=workflow.name,
                status=ExecutionStatus.PENDING,
                parameters=validate_parameters(workflow.parameters_schema, schedule["parameters"]),
                workspace_revision=snapshot.revision,
                trigger=Trigger.SCHEDULE.value,
                schedule_id=schedule["id"],
                serial_key=f"schedule:{schedule['id']}" if overlap == OverlapPolicy.QUEUE.value else None,
                created_at=utcnow(),
            )
        )
        _record_fire(session, schedule, fire_time, now, "started", note, execution_id)
        owner = make_principal(
            user_id=schedule["owner_user_id"],
            home_org_id=schedule["org_id"],
            email=owner_email(schedule["org_id"]),
            name=OWNER_NAME,
            is_platform_admin=False,
            roles={},
        )
        record(
            session,
            "schedule.fired",
            actor=owner,
            org_id=schedule["org_id"],
            target=schedule["id"],
            execution_id=execution_id,
            fire_time=fire_time.isoformat(),
        )
        return execution_id

    def _set_attention(self, schedule: dict[str, Any], problem: str, now: datetime) -> None:
        with self._db.begin() as conn:
            conn.execute(
                update(SCHEDULES)
                .where(SCHEDULES.c.id == schedule["id"], SCHEDULES.c.version == schedule["version"])
                .values(needs_attention=problem, next_fire_at=None, version=schedule["version"] + 1)
            )

    # Following the workspace.

    def follow_workspace(self, snapshot: RegistrySnapshot, now: datetime) -> bool:
        """Bring the decorators' schedules in line with the workspace, and check every schedule against its
        workflow. False when another replica changed a schedule meanwhile (the next pass does it again)."""
        complete = self._follow_decorators(snapshot, now)
        with self._db.connect() as conn:
            schedules = list(conn.execute(select(SCHEDULES)).mappings())
        for row in schedules:
            schedule = dict(row)
            problem = attention_needed(snapshot, schedule["workflow_name"], schedule["parameters"])
            if problem == schedule["needs_attention"]:
                continue
            if problem is not None:
                logger.warning("schedule %s needs attention: %s", schedule["id"], problem)
            following = next_fire_at(
                schedule["cron"],
                schedule["timezone"],
                enabled=schedule["enabled"],
                needs_attention=problem,
                after=now,
            )
            complete &= self._update(schedule, needs_attention=problem, next_fire_at=following)
        return complete

    def _follow_decorators(self, snapshot: RegistrySnapshot, now: datetime) -> bool:
        complete = True
        with self._db.connect() as conn:
            existing = {
                row["workflow_name"]: dict(row)
                for row in conn.execute(
                    select(SCHEDULES).where(SCHEDULES.c.source == ScheduleSource.DECORATOR.value)
                ).mappings()
            }
        declared = {name: info.schedule for name, info in snapshot.workflows.items() if info.schedule}
        for name, cron in declared.items():
            schedule = existing.get(name)
            if schedule is None:
                self._create_for_decorator(snapshot, name, cron, now)
            elif schedule["cron"] != cron:
                following = next_fire_at(
                    cron,
                    schedule["timezone"],
                    enabled=schedule["enabled"],
                    needs_attention=schedule["needs_attention"],
                    after=now,
                )
                complete &= self._update(schedule, cron=cron, next_fire_at=following)
        for name, schedule in existing.items():
            if name in snapshot.workflows and name not in declared:
                self._delete_for_decorator(schedule)
        return complete

    def _create_for_decorator(self, snapshot: RegistrySnapshot, workflow_name: str, cron: str, now: datetime) -> None:
        owner_id = schedule_owner(self._db, None)
        problem = attention_needed(snapshot, workflow_name, {})
        schedule = Schedule(
            workflow_name=workflow_name,
            cron=cron,
            source=ScheduleSource.DECORATOR.value,
            owner_user_id=owner_id,
            needs_attention=problem,
            next_fire_at=next_fire_at(cron, "UTC", enabled=True, needs_attention=problem, after=now),
            created_at=now,
            updated_at=now,
        )
        with Session(self._db, expire_on_commit=False) as session:
            session.add(schedule)
            record(
                session,
                "schedule.created",
                actor=None,
                actor_email="scheduler",
                org_id=None,
                target=schedule.id,
                workflow=workflow_name,
                cron=cron,
                source=ScheduleSource.DECORATOR.value,
            )
            try:
                session.commit()
            except IntegrityError:  # another replica made it meanwhile
                return
        logger.info("schedule %s made for @workflow(schedule=%r) of %s", schedule.id, cron, workflow_name)

    def _delete_for_decorator(self, schedule: dict[str, Any]) -> None:
        with Session(self._db) as session:
            session.execute(delete(SCHEDULE_FIRES).where(SCHEDULE_FIRES.c.schedule_id == schedule["id"]))
            gone = session.connection().execute(
                delete(SCHEDULES).where(SCHEDULES.c.id == schedule["id"], SCHEDULES.c.version == schedule["version"])
            )
            if gone.rowcount != 1:
                return
            record(
                session,
                "schedule.deleted",
                actor=None,
                actor_email="scheduler",
                org_id=None,
                target=schedule["id"],
                workflow=schedule["workflow_name"],
                reason="its workflow no longer declares a schedule",
            )
            session.commit()
        logger.info("schedule %s deleted: %s no longer declares a schedule", schedule["id"], schedule["workflow_name"])

    def _update(self, schedule: dict[str, Any], **values: Any) -> bool:
        """Compare and set on the schedule's version; whether it was still the one read."""
        with self._db.begin() as conn:
            changed = conn.execute(
                update(SCHEDULES)
                .where(SCHEDULES.c.id == schedule["id"], SCHEDULES.c.version == schedule["version"])
                .values(**values, version=schedule["version"] + 1)
            )
            return changed.rowcount == 1


class _Missed:
    """The fire times that came and went before the scheduler reached them."""

    def __init__(self) -> None:
        self.count = 0
        self.first: datetime | None = None
        self.latest: datetime | None = None
        self.more = False
        """Whether there were more than were counted."""

    def add(self, moment: datetime) -> None:
        self.count += 1
        self.first = self.first or moment
        self.latest = moment

    def note(self, *, run: bool) -> str:
        span = f"{'more than ' if self.more else ''}{self.count} fire time{'s' if self.count > 1 else ''}"
        first = self.first.isoformat() if self.first else "?"
        latest = self.latest.isoformat() if self.latest else "?"
        if run:
            return f"runs once for {span} missed while no control plane ran ({first} to {latest})"
        return f"{span} missed while no control plane ran ({first} to {latest}); the schedule skips missed fire times"


def _due_times(
    cron: str, zone: ZoneInfo, next_fire: datetime, now: datetime
) -> tuple[list[datetime], _Missed, datetime | None]:
    """From `next_fire` on: the fire times reached on time by `now`, the missed ones, and the first after `now`."""
    on_time: list[datetime] = []
    missed = _Missed()
    times = fire_times(cron, zone, next_fire - timedelta(microseconds=1))
    for moment in times:
        if moment > now:
            return on_time, missed, moment
        if moment > now - ON_TIME:
            on_time.append(moment)
            continue
        missed.add(moment)
        if missed.count == MISSED_WALK_LIMIT:
            # Far behind: only the latest missed fire time matters from here on.
            missed.more = True
            times = fire_times(cron, zone, max(moment, now - ON_TIME - SKIP_AHEAD))
    return on_time, missed, None


def _record_fire(
    session: Session,
    schedule: dict[str, Any],
    fire_time: datetime,
    now: datetime,
    outcome: str,
    detail: str | None,
    execution_id: str | None = None,
) -> None:
    session.execute(
        insert(SCHEDULE_FIRES).values(
            schedule_id=schedule["id"],
            fire_time=fire_time,
            fired_at=now,
            outcome=outcome,
            execution_id=execution_id,
            detail=detail,
        )
    )
