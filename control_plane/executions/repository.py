"""The engine's database work: blocking SQLAlchemy Core statements, called from worker threads.

Every status change goes through a conditional UPDATE, so a terminal status is never overwritten and two
replicas (or a replayed event) cannot move an execution backwards.
"""

from __future__ import annotations

import collections
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from bifrost.metadata import Resources
from bifrost.protocol import (
    Event,
    ExecutionStatus,
    FinishedEvent,
    LogEvent,
    OrganizationInfo,
    ResultEvent,
    RunPayload,
    StartedEvent,
    UserInfo,
    VariablesEvent,
)
from control_plane.db.models import Execution, ExecutionLog, Organization, User, Workflow, utcnow
from control_plane.engine.live import LiveEvent, LogRange, log_live_event
from control_plane.executions.sealed_parameters import unseal
from control_plane.security.encryption import SecretCipher, SecretDecryptionError

EXECUTIONS: Table = Execution.__table__  # type: ignore[attr-defined]
EXECUTION_LOGS: Table = ExecutionLog.__table__  # type: ignore[attr-defined]
WORKFLOWS: Table = Workflow.__table__  # type: ignore[attr-defined]
USERS: Table = User.__table__  # type: ignore[attr-defined]
ORGANIZATIONS: Table = Organization.__table__  # type: ignore[attr-defined]

ACTIVE_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
PLATFORM_LOGGER = "bifrost"


@dataclass
class Committed:
    """What one commit changed for one execution, to be announced once the transaction is durable."""

    execution_id: str
    workflow_name: str
    changes: list[LiveEvent | LogRange] = field(default_factory=list)
    """In commit order; log lines as ranges of `log_rows`."""
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    terminal_status: ExecutionStatus | None = None
    launched: bool = False
    duration_ms: float | None = None
    final_row: dict[str, Any] | None = None
    """The execution's whole row as this commit left it, when the commit ended the execution."""

    def drop_status_changes(self) -> None:
        self.terminal_status = None
        self.duration_ms = None
        self.changes = [change for change in self.changes if change.kind != "status"]

    def live_events(self) -> list[LiveEvent]:
        if not self.log_rows:
            return [change for change in self.changes if isinstance(change, LiveEvent)]
        first_line = self.log_rows[0]["line"]
        events: list[LiveEvent] = []
        for change in self.changes:
            if isinstance(change, LogRange):
                rows = self.log_rows[change.first - first_line : change.last - first_line + 1]
                events.extend(log_live_event(row) for row in rows)
            else:
                events.append(change)
        return events


@dataclass
class IngestResult:
    ingested_through: dict[str, int] = field(default_factory=dict)
    unknown_executions: set[str] = field(default_factory=set)
    committed: list[Committed] = field(default_factory=list)
    event_counts: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class LaunchProblem:
    """Why an execution cannot run at all, as its error."""

    error_type: str
    message: str


@dataclass(frozen=True)
class LaunchTarget:
    execution_id: str
    workflow_name: str
    org_id: str | None
    user_id: str
    created_at: datetime
    status: ExecutionStatus
    launched: bool
    resources: Resources | None
    """What the workflow asked for with `@workflow(resources=...)`; None: the backend's defaults."""
    parent_execution_id: str | None
    active_counts: dict[str, int] | None
    """What the limits count, read with the row; None when no limit applies (not launchable, or a
    sub-workflow)."""
    payload: RunPayload | None
    """What the runner runs; None when it cannot run, because of `problem`."""
    problem: LaunchProblem | None

    @property
    def launchable(self) -> bool:
        return not self.launched and not self.status.is_terminal


def status_data(
    status: ExecutionStatus,
    *,
    error_type: str | None = None,
    error_message: str | None = None,
    duration_ms: float | None = None,
) -> dict[str, Any]:
    return {
        "status": status.value,
        "error_type": error_type,
        "error_message": error_message,
        "duration_ms": duration_ms,
    }


class _ExecutionChanges:
    """The changes one ingest batch makes to one execution row, built event by event."""

    def __init__(self, row: RowMapping) -> None:
        self.execution_id: str = row["id"]
        self.status: ExecutionStatus = row["status"]
        self.status_read: ExecutionStatus = row["status"]
        self.last_event_seq: int = row["last_event_seq"]
        self.log_count: int = row["log_count"]
        self.has_started_at = row["started_at"] is not None
        self.values: dict[str, Any] = {}
        self.status_values: dict[str, Any] = {}
        self.committed = Committed(
            execution_id=self.execution_id, workflow_name=row["workflow_name"], launched=row["backend"] is not None
        )

    def add_note(self, ts: datetime, message: str) -> None:
        self._add_log_line(ts, "WARNING", PLATFORM_LOGGER, message)

    def _add_log_line(self, ts: datetime, level: str, logger: str, message: str) -> None:
        if "\x00" in message:
            # PostgreSQL text cannot hold NUL; one such line must not stall the whole batch.
            message = message.replace("\x00", "\ufffd")
        self.log_count += 1
        row = {
            "execution_id": self.execution_id,
            "line": self.log_count,
            "ts": ts,
            "level": level,
            "logger": logger,
            "message": message,
        }
        self.committed.log_rows.append(row)
        changes = self.committed.changes
        if changes and isinstance(changes[-1], LogRange) and changes[-1].last == self.log_count - 1:
            changes[-1].last = self.log_count
        else:
            changes.append(LogRange(first=self.log_count, last=self.log_count))

    def apply(self, event: Event) -> None:
        if isinstance(event, StartedEvent):
            self._apply_started(event)
        elif isinstance(event, LogEvent):
            if event.dropped:
                self.add_note(event.ts, f"{event.dropped} log records were dropped: the runner's log limit was hit")
            for record in event.records:
                self._add_log_line(record.ts, record.level, record.logger, record.message)
        elif isinstance(event, VariablesEvent):
            self.values["variables"] = event.variables
            variables = LiveEvent(kind="variables", id=event.seq, data={"variables": event.variables})
            self.committed.changes.append(variables)
        elif isinstance(event, ResultEvent):
            self.values["result"] = event.result
            self.committed.changes.append(LiveEvent(kind="result", id=event.seq, data={"result": event.result}))
        else:
            self._apply_finished(event)
        self.last_event_seq = event.seq

    def _apply_started(self, event: StartedEvent) -> None:
        if not self.has_started_at:
            self.values["started_at"] = event.ts
            self.has_started_at = True
        if event.workspace_revision is not None:
            self.values["workspace_revision"] = event.workspace_revision
        if self.status == ExecutionStatus.PENDING:
            self.status = ExecutionStatus.RUNNING
            self.status_values["status"] = ExecutionStatus.RUNNING
            self.committed.changes.append(
                LiveEvent(kind="status", id=event.seq, data=status_data(ExecutionStatus.RUNNING))
            )

    def _apply_finished(self, event: FinishedEvent) -> None:
        if self.status.is_terminal:
            return
        status, error_type, error_message = event.status, event.error_type, event.error_message
        if not status.is_terminal:
            status, error_type = ExecutionStatus.FAILED, "InvalidFinalStatus"
            error_message = f"the runner finished with the non-final status {event.status.value!r}"
        self.status = status
        self.status_values.update(
            status=status,
            sealed_parameters=None,  # no runner needs them any more
            finished_at=event.ts,
            error_type=error_type,
            error_message=error_message,
            traceback=event.traceback,
            duration_ms=event.duration_ms,
        )
        self.committed.terminal_status = status
        self.committed.duration_ms = event.duration_ms
        self.committed.changes.append(
            LiveEvent(
                kind="status",
                id=event.seq,
                data=status_data(
                    status, error_type=error_type, error_message=error_message, duration_ms=event.duration_ms
                ),
            )
        )


class ExecutionStore:
    def __init__(self, db: Engine, cipher: SecretCipher) -> None:
        self._db = db
        self._cipher = cipher

    def status(self, execution_id: str) -> ExecutionStatus | None:
        with self._db.connect() as conn:
            status: ExecutionStatus | None = conn.execute(
                _STATUS_QUERY, {"execution_id": execution_id}
            ).scalar_one_or_none()
            return status

    def last_event_seq(self, execution_id: str) -> int | None:
        with self._db.connect() as conn:
            seq: int | None = conn.execute(
                select(EXECUTIONS.c.last_event_seq).where(EXECUTIONS.c.id == execution_id)
            ).scalar_one_or_none()
            return seq

    def log_lines(self, execution_id: str, first: int, last: int) -> list[LiveEvent]:
        query = (
            select(
                EXECUTION_LOGS.c.execution_id,
                EXECUTION_LOGS.c.line,
                EXECUTION_LOGS.c.ts,
                EXECUTION_LOGS.c.level,
                EXECUTION_LOGS.c.logger,
                EXECUTION_LOGS.c.message,
            )
            .where(EXECUTION_LOGS.c.execution_id == execution_id, EXECUTION_LOGS.c.line.between(first, last))
            .order_by(EXECUTION_LOGS.c.line)
        )
        with self._db.connect() as conn:
            return [log_live_event(dict(row)) for row in conn.execute(query).mappings()]

    def insert(self, new_row: Mapping[str, Any]) -> None:
        """Record a new execution."""
        with self._db.begin() as conn:
            conn.execute(_INSERT_EXECUTION, new_row)

    def launch_target(
        self, execution_id: str, max_result_bytes: int, max_json_depth: int, new_row: Mapping[str, Any] | None = None
    ) -> LaunchTarget | None:
        """The execution as the dispatcher launches it (with the counts its limits need) and as its runner
        receives it; None when there is no such execution. With `new_row`, the execution is recorded first, in
        the same transaction."""
        with self._db.begin() as conn:
            if new_row is not None:
                conn.execute(_INSERT_EXECUTION, new_row)
            row = conn.execute(_LAUNCH_QUERY, {"execution_id": execution_id}).mappings().one_or_none()
            if row is None:
                return None
            limited = row["backend"] is None and row["status"] == ExecutionStatus.PENDING
            counts = self._active_counts(conn) if limited and row["parent_execution_id"] is None else None
        return _launch_target(row, counts, max_result_bytes, max_json_depth, self._cipher)

    def run_target(self, execution_id: str, max_result_bytes: int, max_json_depth: int) -> LaunchTarget | None:
        """`launch_target` without the counts: what a runner asks for once it runs."""
        with self._db.connect() as conn:
            row = conn.execute(_LAUNCH_QUERY, {"execution_id": execution_id}).mappings().one_or_none()
        return None if row is None else _launch_target(row, None, max_result_bytes, max_json_depth, self._cipher)

    def active_counts(self) -> dict[str, int]:
        """Launched, unfinished executions per workflow: what the concurrency limits count."""
        with self._db.connect() as conn:
            return self._active_counts(conn)

    @staticmethod
    def _active_counts(conn: Connection) -> dict[str, int]:
        return {name: count for name, count in conn.execute(_ACTIVE_COUNTS_QUERY)}

    def record_launch(self, execution_id: str, backend: str, runner_ref: str | None = None) -> ExecutionStatus:
        """Mark the execution as handed to `backend`, whose handle on its runner is `runner_ref`; its status now
        (it may have been cancelled meanwhile)."""
        with self._db.begin() as conn:
            status: ExecutionStatus = conn.execute(
                _RECORD_LAUNCH, {"b_id": execution_id, "backend": backend, "runner_ref": runner_ref}
            ).scalar_one()
            return status

    def launched_active_ids(self, backend: str) -> list[str]:
        query = select(EXECUTIONS.c.id).where(EXECUTIONS.c.status.in_(ACTIVE_STATUSES), EXECUTIONS.c.backend == backend)
        with self._db.connect() as conn:
            return list(conn.execute(query).scalars())

    def unlaunched_pending_ids(self) -> list[str]:
        query = (
            select(EXECUTIONS.c.id)
            .where(EXECUTIONS.c.status == ExecutionStatus.PENDING, EXECUTIONS.c.backend.is_(None))
            .order_by(EXECUTIONS.c.created_at)
        )
        with self._db.connect() as conn:
            return list(conn.execute(query).scalars())

    def close(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        error_type: str,
        error_message: str,
        runner_log_tail: str | None = None,
        only_unlaunched: bool = False,
    ) -> Committed | None:
        """Move an unfinished execution to a terminal `status` the control plane decided; None when it was
        already terminal (or, with `only_unlaunched`, already handed to a backend). `runner_log_tail`: what the
        runner printed last, when it ended without reporting."""
        conditions = [EXECUTIONS.c.id == execution_id, EXECUTIONS.c.status.in_(ACTIVE_STATUSES)]
        if only_unlaunched:
            conditions.append(EXECUTIONS.c.backend.is_(None))
        now = utcnow()
        with self._db.begin() as conn:
            row = (
                conn.execute(
                    select(EXECUTIONS.c.workflow_name, EXECUTIONS.c.last_event_seq, EXECUTIONS.c.backend)
                    .where(*conditions)
                    .with_for_update()
                )
                .mappings()
                .one_or_none()
            )
            if row is None:
                return None
            conn.execute(
                update(EXECUTIONS)
                .where(*conditions)
                .values(
                    status=status,
                    finished_at=now,
                    error_type=error_type,
                    error_message=error_message,
                    runner_log_tail=runner_log_tail,
                    sealed_parameters=None,
                )
            )
        data = status_data(status, error_type=error_type, error_message=error_message)
        return Committed(
            execution_id=execution_id,
            workflow_name=row["workflow_name"],
            changes=[LiveEvent(kind="status", id=row["last_event_seq"] + 1, data=data)],
            terminal_status=status,
            launched=row["backend"] is not None,
        )

    def ingest(self, events: Mapping[str, Sequence[Event]], accept_gaps: Collection[str]) -> IngestResult:
        """Apply runner events in one transaction. `events` holds each execution's events sorted by seq.
        An event at or below the row's `last_event_seq` was applied before and is skipped; one after a gap
        waits (it is left out) unless its execution is in `accept_gaps`, then the gap is noted in the log."""
        result = IngestResult()
        with self._db.begin() as conn:
            rows = self._lock_rows(conn, list(events))
            for execution_id, execution_events in events.items():
                row = rows.get(execution_id)
                if row is None:
                    result.unknown_executions.add(execution_id)
                    continue
                changes = _ExecutionChanges(row)
                for event in execution_events:
                    if event.seq <= changes.last_event_seq:
                        continue
                    if event.seq > changes.last_event_seq + 1:
                        if execution_id not in accept_gaps:
                            break
                        changes.add_note(
                            event.ts,
                            f"runner events {changes.last_event_seq + 1} to {event.seq - 1} never arrived",
                        )
                    changes.apply(event)
                    result.event_counts[event.type] += 1
                result.ingested_through[execution_id] = changes.last_event_seq
                if changes.last_event_seq == row["last_event_seq"]:
                    continue
                self._write(conn, changes)
                result.committed.append(changes.committed)
        return result

    @staticmethod
    def _lock_rows(conn: Connection, execution_ids: list[str]) -> dict[str, RowMapping]:
        rows = conn.execute(_LOCK_ROWS_QUERY, {"execution_ids": execution_ids}).mappings()
        return {row["id"]: row for row in rows}

    @staticmethod
    def _write(conn: Connection, changes: _ExecutionChanges) -> None:
        if changes.committed.log_rows:
            _insert_log_rows(conn, changes.committed.log_rows)
        values = {
            "b_id": changes.execution_id,
            "last_event_seq": changes.last_event_seq,
            "log_count": changes.log_count,
            **changes.values,
        }
        if changes.status_values:
            # Compare and set: a status someone else wrote since it was read (a cancel, say) is not overwritten.
            # The row comes back as this update left it, for whoever waits for the end.
            moved = (
                conn.execute(
                    _MOVE_EXECUTION, {**values, **changes.status_values, "b_status_read": changes.status_read}
                )
                .mappings()
                .one_or_none()
            )
            if moved is not None:
                if changes.committed.terminal_status is not None:
                    changes.committed.final_row = dict(moved)
                return
            changes.committed.drop_status_changes()
        conn.execute(_UPDATE_EXECUTION, values)


_LOG_COLUMNS = ("execution_id", "line", "ts", "level", "logger", "message")


def _insert_log_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if conn.dialect.name != "postgresql":
        conn.execute(insert(EXECUTION_LOGS), rows)
        return
    # COPY, in the same transaction: several times faster than an INSERT per row.
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {EXECUTION_LOGS.name} ({', '.join(_LOG_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[column] for column in _LOG_COLUMNS])


def _workflow_resources(meta: Mapping[str, Any] | None) -> Resources | None:
    """The resources the registry recorded in a workflow's `meta`; None for no workflow or none asked for."""
    recorded = (meta or {}).get("resources")
    return Resources.model_validate(recorded) if recorded else None


# The statements of every launch and every ingest batch are built once: building one costs more than running it.
_ACTIVE_COUNTS_QUERY = (
    select(EXECUTIONS.c.workflow_name, func.count())
    .where(EXECUTIONS.c.status.in_(ACTIVE_STATUSES), EXECUTIONS.c.backend.is_not(None))
    .group_by(EXECUTIONS.c.workflow_name)
)

_LOCK_ROWS_QUERY = (
    select(
        EXECUTIONS.c.id,
        EXECUTIONS.c.workflow_name,
        EXECUTIONS.c.status,
        EXECUTIONS.c.last_event_seq,
        EXECUTIONS.c.log_count,
        EXECUTIONS.c.started_at,
        EXECUTIONS.c.backend,
    )
    .where(EXECUTIONS.c.id.in_(bindparam("execution_ids", expanding=True)))
    .order_by(EXECUTIONS.c.id)
    .with_for_update()
)

# Updates take their SET columns from the parameters they are run with; the WHERE parameters are named `b_*`,
# apart from every column name.
_INSERT_EXECUTION = insert(EXECUTIONS)

_UPDATE_EXECUTION = update(EXECUTIONS).where(EXECUTIONS.c.id == bindparam("b_id"))

_MOVE_EXECUTION = (
    update(EXECUTIONS)
    .where(EXECUTIONS.c.id == bindparam("b_id"), EXECUTIONS.c.status == bindparam("b_status_read"))
    .returning(*EXECUTIONS.c)
)

_RECORD_LAUNCH = _UPDATE_EXECUTION.returning(EXECUTIONS.c.status)

_STATUS_QUERY = select(EXECUTIONS.c.status).where(EXECUTIONS.c.id == bindparam("execution_id"))

_LAUNCH_QUERY: Select[Any] = (
    select(
        EXECUTIONS.c.id,
        EXECUTIONS.c.workflow_name,
        EXECUTIONS.c.org_id,
        EXECUTIONS.c.user_id,
        EXECUTIONS.c.created_at,
        EXECUTIONS.c.status,
        EXECUTIONS.c.backend,
        EXECUTIONS.c.parent_execution_id,
        EXECUTIONS.c.parameters,
        EXECUTIONS.c.sealed_parameters,
        EXECUTIONS.c.workspace_revision,
        WORKFLOWS.c.file,
        WORKFLOWS.c.function_name,
        WORKFLOWS.c.timeout_seconds,
        WORKFLOWS.c.meta,
        USERS.c.email.label("user_email"),
        USERS.c.name.label("user_name"),
        USERS.c.is_platform_admin,
        ORGANIZATIONS.c.name.label("org_name"),
    )
    .select_from(
        EXECUTIONS.outerjoin(WORKFLOWS, WORKFLOWS.c.name == EXECUTIONS.c.workflow_name)
        .outerjoin(USERS, USERS.c.id == EXECUTIONS.c.user_id)
        .outerjoin(ORGANIZATIONS, ORGANIZATIONS.c.id == EXECUTIONS.c.org_id)
    )
    .where(EXECUTIONS.c.id == bindparam("execution_id"))
)


def _opened_parameters(row: RowMapping, cipher: SecretCipher) -> tuple[dict[str, Any], list[str]] | LaunchProblem:
    """The execution's real parameters and the secret values among them."""
    if row["sealed_parameters"] is None:
        return row["parameters"], []
    try:
        return unseal(cipher, row["sealed_parameters"])
    except SecretDecryptionError as exc:
        return LaunchProblem("SecretDecryptionError", f"the secret values among its parameters: {exc}")


def _launch_target(
    row: RowMapping, counts: dict[str, int] | None, max_result_bytes: int, max_json_depth: int, cipher: SecretCipher
) -> LaunchTarget:
    payload: RunPayload | None = None
    problem: LaunchProblem | None = None
    opened = _opened_parameters(row, cipher)
    if row["file"] is None:
        problem = LaunchProblem("WorkflowNotFound", f"workflow {row['workflow_name']!r} is not in the registry")
    elif row["user_email"] is None:
        problem = LaunchProblem("UserNotFound", f"the execution's user {row['user_id']!r} no longer exists")
    elif isinstance(opened, LaunchProblem):
        problem = opened
    else:
        parameters, secrets = opened
        payload = RunPayload(
            execution_id=row["id"],
            workflow_name=row["workflow_name"],
            file=row["file"],
            function_name=row["function_name"],
            parameters=parameters,
            secrets=secrets,
            user=UserInfo(id=row["user_id"], email=row["user_email"], name=row["user_name"]),
            organization=OrganizationInfo(id=row["org_id"], name=row["org_name"]) if row["org_name"] else None,
            is_platform_admin=row["is_platform_admin"],
            timeout_seconds=row["timeout_seconds"],
            workspace_revision=row["workspace_revision"],
            parent_execution_id=row["parent_execution_id"],
            max_result_bytes=max_result_bytes,
            max_json_depth=max_json_depth,
        )
    return LaunchTarget(
        execution_id=row["id"],
        workflow_name=row["workflow_name"],
        org_id=row["org_id"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        status=row["status"],
        launched=row["backend"] is not None,
        resources=_workflow_resources(row["meta"]),
        parent_execution_id=row["parent_execution_id"],
        active_counts=counts,
        payload=payload,
        problem=problem,
    )
