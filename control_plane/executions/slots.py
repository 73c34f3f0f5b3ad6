"""The concurrency limits, held in the database: a dispatcher launches only the executions it claimed, and claims
them in a transaction that runs alone among every replica's claims (`serialized_transaction`), so the limits
hold across replicas at every moment.

An execution holds a slot of the limits from its claim until it ends: while it is being launched (the claim is
renewed meanwhile), once its launch is recorded, and once its runner reported its start. Sub-workflows are
claimed too, so that one replica launches them, but hold no slot: they run within their parent's, which waits
for them (holding them back could leave a full system waiting on itself). Waiting executions are claimed in the
order they were created: the oldest whose limits allow it goes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Connection

from bifrost._internal.protocol import ExecutionStatus
from control_plane.db.models import as_utc
from control_plane.db.session import serialized_transaction
from control_plane.db.tables import EXECUTIONS, WORKFLOWS

CLAIM_LEASE = timedelta(seconds=15)
"""A claim whose launch is neither recorded nor renewed for this long is taken to be a dispatcher's that died:
the execution waits again (first in line, being older than the others)."""
SCAN_LIMIT = 500
"""Waiting executions looked at per claim, oldest first."""

_LOCK_NAME = "bifrost-dispatch"


@dataclass(frozen=True)
class Limits:
    total: int
    """Executions running at once (sub-workflows aside), over all workflows."""
    per_workflow: int
    """Executions of one workflow running at once, unless the workflow's `max_concurrency` is lower."""


@dataclass(frozen=True)
class Claim:
    execution_ids: list[str]
    """The executions claimed, oldest first."""
    total_reached: bool
    """Whether the total limit held back executions that were waiting: none can be claimed until one ends."""


@dataclass(frozen=True)
class _Waiting:
    execution_id: str
    workflow_name: str
    is_subworkflow: bool
    serial_key: str | None


@dataclass
class _Held:
    """The slots held: in all, per workflow and per schedule's queue (serial key)."""

    total: int = 0
    per_workflow: dict[str, int] = field(default_factory=dict)
    per_key: dict[str, int] = field(default_factory=dict)

    @classmethod
    def now(cls, conn: Connection, parameters: dict[str, Any]) -> _Held:
        held = cls()
        for workflow_name, serial_key, count in conn.execute(_HOLDING, parameters):
            held.add(workflow_name, serial_key, count)
        return held

    def add(self, workflow_name: str, serial_key: str | None, count: int) -> None:
        self.total += count
        self.per_workflow[workflow_name] = self.per_workflow.get(workflow_name, 0) + count
        if serial_key is not None:
            self.per_key[serial_key] = self.per_key.get(serial_key, 0) + count


class Slots:
    def __init__(self, db: Engine) -> None:
        self._db = db

    def waiting_count(self, now: datetime) -> int:
        """Executions waiting for a claim now (a cheap read, without the claims' lock)."""
        with self._db.connect() as conn:
            count: int = conn.execute(_WAITING_COUNT, _waiting_parameters(now)).scalar_one()
            return count

    def claim(
        self,
        dispatcher: str,
        limits: Limits,
        now: datetime,
        *,
        most: int,
        new_row: Mapping[str, Any] | None = None,
    ) -> Claim:
        """Claim, for `dispatcher`, up to `most` waiting executions the limits allow, oldest first. With `new_row`,
        that execution is recorded first, in the same transaction."""
        with serialized_transaction(self._db, _LOCK_NAME) as conn:
            if new_row is not None:
                conn.execute(EXECUTIONS.insert(), new_row)
            parameters = _waiting_parameters(now)
            waiting = [
                _Waiting(row.id, row.workflow_name, row.parent_execution_id is not None, row.serial_key)
                for row in conn.execute(_WAITING, {**parameters, "scan": SCAN_LIMIT})
            ]
            if not waiting:
                return Claim([], total_reached=False)
            claim = _within_limits(conn, waiting, limits, parameters, most)
            if claim.execution_ids:
                conn.execute(_CLAIM, {"ids": claim.execution_ids, "now": now, "dispatcher": dispatcher})
            return claim

    def holding_back(self, execution_id: str, limits: Limits, now: datetime) -> str | None:
        """What keeps a waiting execution from being launched now, in words; None when it does not wait (it is
        launched, claimed, or over)."""
        with self._db.connect() as conn:
            parameters = _waiting_parameters(now)
            row = conn.execute(
                select(
                    EXECUTIONS.c.workflow_name,
                    EXECUTIONS.c.parent_execution_id,
                    EXECUTIONS.c.serial_key,
                    EXECUTIONS.c.start_after,
                ).where(EXECUTIONS.c.id == execution_id, _IS_WAITING_OR_BACKING_OFF),
                parameters,
            ).one_or_none()
            if row is None:
                return None
            if row.start_after is not None and as_utc(row.start_after) > as_utc(now):
                return f"its retry's backoff, until {as_utc(row.start_after):%Y-%m-%d %H:%M:%S} UTC"
            if row.parent_execution_id is not None:
                return "its turn: a sub-workflow is launched as soon as a dispatcher takes it"
            held = _Held.now(conn, parameters)
            workflow_limit = _workflow_limits(conn, {row.workflow_name}, limits.per_workflow)[row.workflow_name]
        if held.total >= limits.total:
            return (
                f"the limit of {limits.total} executions running at once (BIFROST_MAX_CONCURRENCY): {held.total} "
                "run now"
            )
        of_workflow = held.per_workflow.get(row.workflow_name, 0)
        if of_workflow >= workflow_limit:
            whose = (
                f"workflow {row.workflow_name!r}'s max_concurrency of {workflow_limit}"
                if workflow_limit < limits.per_workflow
                else f"the limit of {workflow_limit} runs of one workflow at once "
                "(BIFROST_MAX_CONCURRENCY_PER_WORKFLOW)"
            )
            return f"{whose}: {of_workflow} run now"
        if row.serial_key is not None and held.per_key.get(row.serial_key, 0) >= 1:
            return "the run before it of the same schedule to end (the schedule queues overlapping runs)"
        return "its turn: older waiting executions go first"

    def renew(self, dispatcher: str, execution_ids: list[str], now: datetime) -> None:
        """Keep the claims of launches still under way."""
        if not execution_ids:
            return
        with self._db.begin() as conn:
            conn.execute(_RENEW, {"ids": execution_ids, "now": now, "dispatcher": dispatcher})

    def refused(self, execution_id: str, dispatcher: str, now: datetime) -> int:
        """The backend refused to launch the execution: its claim is given up, and it waits again, for longer
        after each refusal. How many launches were refused so far."""
        with self._db.begin() as conn:
            attempts: int | None = conn.execute(
                select(EXECUTIONS.c.launch_attempts).where(EXECUTIONS.c.id == execution_id)
            ).scalar_one_or_none()
            refused = (attempts or 0) + 1
            conn.execute(
                update(EXECUTIONS)
                .where(EXECUTIONS.c.id == execution_id, EXECUTIONS.c.slot_claimed_by == dispatcher)
                .values(
                    launch_attempts=refused,
                    slot_claimed_at=None,
                    slot_claimed_by=None,
                    start_after=now + timedelta(seconds=2**refused),
                )
            )
            return refused


def _waiting_parameters(now: datetime) -> dict[str, Any]:
    return {"now": now, "stale_before": now - CLAIM_LEASE}


def _within_limits(
    conn: Connection, waiting: list[_Waiting], limits: Limits, parameters: dict[str, Any], most: int
) -> Claim:
    held = _Held.now(conn, parameters)
    workflow_limits = _workflow_limits(conn, {row.workflow_name for row in waiting}, limits.per_workflow)
    claimed: list[str] = []
    total_reached = False
    for row in waiting:
        if len(claimed) >= most:
            break
        if row.is_subworkflow:
            claimed.append(row.execution_id)
            continue
        if held.total >= limits.total:
            total_reached = True
            continue
        if held.per_workflow.get(row.workflow_name, 0) >= workflow_limits[row.workflow_name]:
            continue
        if row.serial_key is not None and held.per_key.get(row.serial_key, 0) >= 1:
            continue
        claimed.append(row.execution_id)
        held.add(row.workflow_name, row.serial_key, 1)
    return Claim(claimed, total_reached)


def _workflow_limits(conn: Connection, names: set[str], default: int) -> dict[str, int]:
    """Each workflow's limit: the settings' per-workflow limit, or its own `max_concurrency` when lower."""
    limits = dict.fromkeys(names, default)
    rows = conn.execute(select(WORKFLOWS.c.name, WORKFLOWS.c.meta).where(WORKFLOWS.c.name.in_(names)))
    for name, meta in rows:
        own = (meta or {}).get("max_concurrency")
        if isinstance(own, int):
            limits[name] = min(default, own)
    return limits


_ACTIVE = EXECUTIONS.c.status.in_((ExecutionStatus.PENDING, ExecutionStatus.RUNNING))

# Pending, neither launched nor claimed (a stale claim's dispatcher died): waiting, or backing off before a retry.
_IS_WAITING_OR_BACKING_OFF = and_(
    EXECUTIONS.c.status == ExecutionStatus.PENDING,
    EXECUTIONS.c.backend.is_(None),
    or_(EXECUTIONS.c.slot_claimed_at.is_(None), EXECUTIONS.c.slot_claimed_at <= bindparam("stale_before")),
)

_IS_WAITING = and_(
    _IS_WAITING_OR_BACKING_OFF,
    or_(EXECUTIONS.c.start_after.is_(None), EXECUTIONS.c.start_after <= bindparam("now")),
)

_WAITING = (
    select(EXECUTIONS.c.id, EXECUTIONS.c.workflow_name, EXECUTIONS.c.parent_execution_id, EXECUTIONS.c.serial_key)
    .where(_IS_WAITING)
    .order_by(EXECUTIONS.c.created_at, EXECUTIONS.c.id)
    .limit(bindparam("scan"))
)

_WAITING_COUNT = select(func.count()).select_from(EXECUTIONS).where(_IS_WAITING)

# Slots held: unfinished executions that are no sub-workflow and were launched, have started, or are claimed.
_HOLDING = (
    select(EXECUTIONS.c.workflow_name, EXECUTIONS.c.serial_key, func.count())
    .where(
        _ACTIVE,
        EXECUTIONS.c.parent_execution_id.is_(None),
        or_(
            EXECUTIONS.c.backend.is_not(None),
            EXECUTIONS.c.status == ExecutionStatus.RUNNING,
            EXECUTIONS.c.slot_claimed_at > bindparam("stale_before"),
        ),
    )
    .group_by(EXECUTIONS.c.workflow_name, EXECUTIONS.c.serial_key)
)

_CLAIM = (
    update(EXECUTIONS)
    .where(EXECUTIONS.c.id.in_(bindparam("ids", expanding=True)))
    .values(slot_claimed_at=bindparam("now"), slot_claimed_by=bindparam("dispatcher"))
)

_RENEW = (
    update(EXECUTIONS)
    .where(
        EXECUTIONS.c.id.in_(bindparam("ids", expanding=True)),
        EXECUTIONS.c.slot_claimed_by == bindparam("dispatcher"),
        EXECUTIONS.c.backend.is_(None),
    )
    .values(slot_claimed_at=bindparam("now"))
)
