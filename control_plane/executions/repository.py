"""Every read and write of executions and their log lines: blocking SQLAlchemy Core statements, called from
worker threads. What the API reads comes back as `Execution` objects, stored log lines as JSON the database writes;
the engine's hot paths (launch, ingest) work on plain rows.

Every status change goes through a conditional UPDATE, so a terminal status is never overwritten and two
replicas (or a replayed event) cannot move an execution backwards.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, Text, bindparam, cast, func, insert, or_, select, type_coerce, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

from bifrost._internal.protocol import Event, ExecutionStatus
from bifrost.api.executions import ExecutionKind
from control_plane.db.models import MAX_LOG_LINE, Execution, utcnow
from control_plane.db.tables import EXECUTION_LOGS, EXECUTIONS, ORGANIZATIONS, USERS, WORKFLOWS
from control_plane.executions.changes import Committed, LiveEvent, LogBatch, log_live_event, status_data
from control_plane.executions.retries import RETRIED_STATUSES, record_retry
from control_plane.executions.transitions import ExecutionChanges
from control_plane.security.principals import Principal

ACTIVE_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


@dataclass
class IngestResult:
    ingested_through: dict[str, int] = field(default_factory=dict)
    unknown_executions: set[str] = field(default_factory=set)
    committed: list[Committed] = field(default_factory=list)
    event_counts: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass(frozen=True)
class ExecutionFilters:
    workflow: str | None = None
    kind: ExecutionKind = ExecutionKind.WORKFLOW
    form_id: str | None = None
    status: ExecutionStatus | None = None
    org_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class ExecutionRepository:
    def __init__(self, db: Engine) -> None:
        self._log_query = _compiled(db, _log_json_query(db.dialect.name, through=False))
        self._log_page_query = _compiled(db, _log_json_query(db.dialect.name, through=True))
        self._db = db

    # Reads of single values, for the engine and the runner routes.

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

    def launched(self, execution_id: str) -> bool:
        """Whether the execution was handed to a backend."""
        with self._db.connect() as conn:
            backend = conn.execute(
                select(EXECUTIONS.c.backend).where(EXECUTIONS.c.id == execution_id)
            ).scalar_one_or_none()
            return backend is not None

    def secret_scope(self, execution_id: str) -> tuple[str | None, str | None] | None:
        """The execution's organization and sealed parameters: where the secrets it could read come from. None
        when there is no such execution."""
        query = select(EXECUTIONS.c.org_id, EXECUTIONS.c.sealed_parameters).where(EXECUTIONS.c.id == execution_id)
        with self._db.connect() as conn:
            row = conn.execute(query).one_or_none()
        return None if row is None else (row.org_id, row.sealed_parameters)

    # Executions as the API shows them, within what the caller may see.

    def get(self, execution_id: str) -> Execution | None:
        with self._db.connect() as conn:
            row = conn.execute(select(EXECUTIONS).where(EXECUTIONS.c.id == execution_id)).mappings().one_or_none()
        return None if row is None else Execution.model_validate(dict(row))

    def visible(self, principal: Principal, execution_id: str) -> Execution | None:
        query = _visible_to(select(EXECUTIONS).where(EXECUTIONS.c.id == execution_id), principal)
        with self._db.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else Execution.model_validate(dict(row))

    def newest(
        self, principal: Principal, filters: ExecutionFilters, *, before: tuple[datetime, str] | None, limit: int
    ) -> list[Execution]:
        """Up to `limit` executions the principal may see, newest first; with `before`, only those created before
        it (`created_at`, then `id`)."""
        query = _visible_to(select(EXECUTIONS), principal).where(EXECUTIONS.c.kind == filters.kind)
        if filters.form_id is not None:
            query = query.where(EXECUTIONS.c.form_id == filters.form_id)
        if filters.workflow is not None:
            query = query.where(EXECUTIONS.c.workflow_name == filters.workflow)
        if filters.status is not None:
            query = query.where(EXECUTIONS.c.status == filters.status)
        if filters.org_id is not None:
            query = query.where(EXECUTIONS.c.org_id == filters.org_id)
        if filters.user_id is not None:
            query = query.where(EXECUTIONS.c.user_id == filters.user_id)
        if filters.since is not None:
            query = query.where(EXECUTIONS.c.created_at >= filters.since)
        if filters.until is not None:
            query = query.where(EXECUTIONS.c.created_at < filters.until)
        if before is not None:
            created_at, execution_id = before
            query = query.where(
                or_(
                    EXECUTIONS.c.created_at < created_at,
                    (EXECUTIONS.c.created_at == created_at) & (EXECUTIONS.c.id < execution_id),
                )
            )
        query = query.order_by(EXECUTIONS.c.created_at.desc(), EXECUTIONS.c.id.desc()).limit(limit)
        with self._db.connect() as conn:
            return [Execution.model_validate(dict(row)) for row in conn.execute(query).mappings()]

    def attempts(self, first_execution_id: str) -> list[Execution]:
        """The first attempt and its retries, in order."""
        query = (
            select(EXECUTIONS)
            .where(or_(EXECUTIONS.c.id == first_execution_id, EXECUTIONS.c.retry_of == first_execution_id))
            .order_by(EXECUTIONS.c.attempt)
        )
        with self._db.connect() as conn:
            return [Execution.model_validate(dict(row)) for row in conn.execute(query).mappings()]

    def logs(self, execution_id: str, *, after_line: int, limit: int) -> tuple[LogBatch, bool]:
        """Up to `limit` log lines after `after_line`, and whether more are stored."""
        # An execution's lines are numbered from 1 without a gap (`ExecutionChanges` numbers them as it writes
        # them), so the page and the line after it are the numbers up to `after_line + limit + 1`. Read as that
        # range, a page costs the same however long the log goes on after it, whatever the plan: PostgreSQL,
        # which takes a log it has no statistics of yet for a few lines, would otherwise fetch and sort every
        # line after `after_line` for each page.
        through = min(after_line + limit + 1, MAX_LOG_LINE)
        bounds = {"execution_id": execution_id, "after": after_line, "through": through}
        with self._db.connect() as conn:
            rows = _first_column(conn, self._log_page_query, bounds)
        return LogBatch.of(rows[:limit]), len(rows) > limit

    def with_log(
        self, execution_id: str, *, after_line: int = 0, batch_size: int
    ) -> tuple[Execution, list[LogBatch]] | None:
        """The execution and its log after `after_line` in batches of `batch_size` lines, read together; None when
        there is no such execution."""
        with self._db.connect() as conn:
            row = conn.execute(select(EXECUTIONS).where(EXECUTIONS.c.id == execution_id)).mappings().one_or_none()
            if row is None:
                return None
            bounds = {"execution_id": execution_id, "after": after_line}
            lines = _first_column(conn, self._log_query, bounds)
        batches = [LogBatch.of(lines[start : start + batch_size]) for start in range(0, len(lines), batch_size)]
        return Execution.model_validate(dict(row)), batches

    def log_lines(self, execution_id: str, first: int, last: int) -> list[LiveEvent]:
        """Log lines `first` to `last` as `log` events."""
        with self._db.connect() as conn:
            lines = conn.execute(_LOG_LINES_QUERY, {"execution_id": execution_id, "first": first, "last": last})
            return [log_live_event(line) for line in lines.mappings()]

    # Starting and launching.

    def insert(self, new_row: Mapping[str, Any]) -> None:
        """Record a new execution."""
        with self._db.begin() as conn:
            conn.execute(_INSERT_EXECUTION, new_row)

    def launch_row(self, execution_id: str) -> RowMapping | None:
        """The execution with its workflow, user and organization (what `launch.launch_target` reads); None when
        there is no such execution."""
        with self._db.connect() as conn:
            query = conn.execute(_LAUNCH_QUERY, {"execution_id": execution_id})
            row: RowMapping | None = query.mappings().one_or_none()
            return row

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

    # Status changes.

    def close(
        self,
        execution_id: str,
        status: ExecutionStatus,
        *,
        error_type: str,
        error_message: str,
        runner_log_tail: str | None = None,
        only_unlaunched: bool = False,
        retryable: bool = True,
    ) -> Committed | None:
        """Move an unfinished execution to a terminal `status` the control plane decided; None when it was
        already terminal (or, with `only_unlaunched`, already handed to a backend). `runner_log_tail`: what the
        runner printed last, when it ended without reporting. A `Failed` or `Timeout` execution is retried as its
        workflow says (`executions.retries`) unless not `retryable` (it cannot run at all)."""
        conditions = [EXECUTIONS.c.id == execution_id, EXECUTIONS.c.status.in_(ACTIVE_STATUSES)]
        if only_unlaunched:
            conditions.append(EXECUTIONS.c.backend.is_(None))
        now = utcnow()
        with self._db.begin() as conn:
            row = (
                conn.execute(
                    select(
                        EXECUTIONS.c.workflow_name,
                        EXECUTIONS.c.last_event_seq,
                        EXECUTIONS.c.backend,
                        EXECUTIONS.c.sealed_parameters,
                    )
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
            if retryable and status in RETRIED_STATUSES:
                record_retry(conn, execution_id, row["sealed_parameters"])
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
            rows = self.lock_rows(conn, list(events))
            for execution_id, execution_events in events.items():
                row = rows.get(execution_id)
                if row is None:
                    result.unknown_executions.add(execution_id)
                    continue
                changes = ExecutionChanges(row)
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
                self.write(conn, changes)
                result.committed.append(changes.committed)
        return result

    @staticmethod
    def lock_rows(conn: Connection, execution_ids: list[str]) -> dict[str, RowMapping]:
        """The rows of these executions, locked for the transaction: what `ExecutionChanges` starts from."""
        rows = conn.execute(_LOCK_ROWS_QUERY, {"execution_ids": execution_ids}).mappings()
        return {row["id"]: row for row in rows}

    @staticmethod
    def write(conn: Connection, changes: ExecutionChanges) -> None:
        """Write what `changes` made of one execution; its status only if no one changed it since it was read."""
        if changes.committed.log_rows:
            _insert_log_rows(conn, changes.committed.log_rows)
        values = {
            "b_id": changes.execution_id,
            "last_event_seq": changes.last_event_seq,
            "log_count": changes.log_count,
            **changes.values,
        }
        if changes.status_values:
            ending = changes.committed.terminal_status
            retried = ending in RETRIED_STATUSES and not changes.user_error
            sealed = conn.execute(_SEALED_QUERY, {"execution_id": changes.execution_id}).scalar() if retried else None
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
                if ending is not None:
                    changes.committed.final_row = dict(moved)
                if retried:
                    record_retry(conn, changes.execution_id, sealed)
                return
            changes.committed.drop_status_changes()
        conn.execute(_UPDATE_EXECUTION, values)


def reseal_parameters(conn: Connection, reseal: Callable[[str], str]) -> None:
    """Replace the sealed parameters of every execution that still has them with `reseal` of them, in the
    caller's transaction (key rotation)."""
    sealed = conn.execute(
        select(EXECUTIONS.c.id, EXECUTIONS.c.sealed_parameters).where(EXECUTIONS.c.sealed_parameters.is_not(None))
    ).all()
    for execution_id, ciphertext in sealed:
        # Compare and set: a run that finished meanwhile has dropped its sealed values for good.
        conn.execute(
            update(EXECUTIONS)
            .where(EXECUTIONS.c.id == execution_id, EXECUTIONS.c.sealed_parameters == ciphertext)
            .values(sealed_parameters=reseal(ciphertext))
        )


def _visible_to(query: Select[Any], principal: Principal) -> Select[Any]:
    if principal.is_platform_admin:
        return query
    if principal.org_id is None:
        # Global executions are the platform's; a user without an organization sees only their own.
        return query.where(EXECUTIONS.c.org_id.is_(None), EXECUTIONS.c.user_id == principal.user_id)
    return query.where(EXECUTIONS.c.org_id == principal.org_id)


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


# The statements of every launch and every ingest batch are built once: building one costs more than running it.
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

_LOG_LINES_QUERY = (
    select(*(EXECUTION_LOGS.c[column] for column in _LOG_COLUMNS))
    .where(
        EXECUTION_LOGS.c.execution_id == bindparam("execution_id"),
        EXECUTION_LOGS.c.line.between(bindparam("first"), bindparam("last")),
    )
    .order_by(EXECUTION_LOGS.c.line)
)


def _log_json_query(dialect: str, *, through: bool) -> Select[str]:
    """Log lines after `after` (no `after + 1` that could overflow the column), with `through` up to line `through`
    only, each as its `LogLine` in JSON, written by the database: reading a long log back as Python values to encode
    them again took most of its time, and a row object per line made for long garbage collections."""
    iso: ColumnElement[str]
    if dialect == "postgresql":
        iso = func.to_char(func.timezone("UTC", EXECUTION_LOGS.c.ts), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"', type_=Text)
    else:  # SQLite holds what Bifrost wrote in UTC as `YYYY-MM-DD HH:MM:SS.ffffff`
        iso = func.replace(type_coerce(EXECUTION_LOGS.c.ts, Text), " ", "T", type_=Text).concat("Z")
    # As pydantic writes a timestamp: without a fraction of a second when it has none
    iso = func.replace(iso, ".000000Z", "Z", type_=Text)
    selected = select(
        EXECUTION_LOGS.c.line,
        iso.label("ts"),
        EXECUTION_LOGS.c.level,
        EXECUTION_LOGS.c.logger,
        EXECUTION_LOGS.c.message,
    ).where(EXECUTION_LOGS.c.execution_id == bindparam("execution_id"), EXECUTION_LOGS.c.line > bindparam("after"))
    if through:
        selected = selected.where(EXECUTION_LOGS.c.line <= bindparam("through"))
    lines = selected.subquery("log_line")
    line_json: ColumnElement[Any]
    if dialect == "postgresql":
        # A row of named columns as its JSON object: a fifth less of the database's time than json_build_object of
        # the same values
        line_json = func.row_to_json(lines.table_valued())
    else:
        line_json = func.json_object(*(part for column in lines.c for part in (column.name, column)))
    return select(cast(line_json, Text)).order_by(lines.c.line)


def _compiled(db: Engine, query: Select[Any]) -> SQLCompiler:
    compiled = query.compile(dialect=db.dialect)
    assert isinstance(compiled, SQLCompiler)
    return compiled


def _first_column(conn: Connection, query: SQLCompiler, values: dict[str, Any]) -> list[Any]:
    """The first column of the rows of `query`, read with the driver's own cursor: for a long log, SQLAlchemy's
    result rows took longer than the database's work, and the garbage collections they caused longer still."""
    params = query.construct_params(values)
    driver_params = tuple(params[name] for name in query.positiontup or ()) if query.positional else params
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(query.string, driver_params)
        return [row[0] for row in cursor.fetchall()]
    finally:
        cursor.close()


_STATUS_QUERY = select(EXECUTIONS.c.status).where(EXECUTIONS.c.id == bindparam("execution_id"))

_SEALED_QUERY = select(EXECUTIONS.c.sealed_parameters).where(EXECUTIONS.c.id == bindparam("execution_id"))

_LAUNCH_QUERY: Select[Any] = (
    select(
        EXECUTIONS.c.id,
        EXECUTIONS.c.workflow_name,
        EXECUTIONS.c.org_id,
        EXECUTIONS.c.user_id,
        EXECUTIONS.c.trigger,
        EXECUTIONS.c.created_at,
        EXECUTIONS.c.start_after,
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
