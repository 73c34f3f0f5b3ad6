"""How runner events move an execution: the changes one ingest batch makes to one execution's row, applied
event by event in seq order, and what they announce once committed.

`started` moves Pending to Running; `log` lines are numbered on; `variables` and `result` are kept as they
come; `finished` sets the final status, once: an execution already terminal (cancelled meanwhile, say) stays as
it is. A `finished` with a status that is not final fails the execution.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping

from bifrost._internal.protocol import (
    Event,
    ExecutionStatus,
    FinishedEvent,
    LogEvent,
    ResultEvent,
    StartedEvent,
    VariablesEvent,
)
from control_plane.executions.changes import Committed, LiveEvent, LogRange, status_data

PLATFORM_LOGGER = "bifrost"
"""The logger of the lines the control plane itself adds to an execution's log."""


class ExecutionChanges:
    """The changes one ingest batch makes to one execution row, built event by event from the row as read
    (locked) at the batch's start."""

    def __init__(self, row: RowMapping) -> None:
        self.execution_id: str = row["id"]
        self.status: ExecutionStatus = row["status"]
        self.status_read: ExecutionStatus = row["status"]
        self.last_event_seq: int = row["last_event_seq"]
        self.log_count: int = row["log_count"]
        self.has_started_at = row["started_at"] is not None
        self.values: dict[str, Any] = {}
        """Columns to set whatever the status is by now."""
        self.status_values: dict[str, Any] = {}
        """Columns to set only if the status is still `status_read`."""
        self.user_error = False
        """Whether the final status came from a `UserError` the workflow raised."""
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
        self.user_error = event.user_error
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
