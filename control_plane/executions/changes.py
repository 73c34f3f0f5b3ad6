"""What a commit changed in an execution, as it is announced: to live subscribers (SSE), to whoever waits for
its end, and to the other replicas."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from bifrost._internal.protocol import ExecutionStatus

LiveKind = Literal["log", "status", "variables", "result"]


class LiveEvent(BaseModel):
    """One change to an execution, delivered after it is committed to the database.

    `id` is the log line number for `log` events and the runner's event seq otherwise. A status the control
    plane decides itself (runner gone, cancel) carries the seq the next runner event would have had, so it
    always sorts after what the database held when it was decided.

    `data` is JSON-ready, by kind: log — `line`, `ts` (ISO 8601, UTC), `level`, `logger`, `message`; status —
    `status`, `error_type`, `error_message`, `duration_ms`; variables — `variables`; result — `result`.
    """

    kind: LiveKind
    id: int
    data: dict[str, Any]


class LogRange(BaseModel):
    """Log lines `first` to `last` of one commit, in place of one `log` event per line."""

    kind: Literal["log_range"] = "log_range"
    first: int
    last: int


def log_live_event(row: Mapping[Any, Any]) -> LiveEvent:
    """The `log` event of an `execution_logs` row (a database row, or one about to be written)."""
    # Built without validation from a row just written or read: this runs for every log line delivered.
    return LiveEvent.model_construct(kind="log", id=row["line"], data=log_data(row))


def log_data(row: Mapping[Any, Any]) -> dict[str, Any]:
    """An `execution_logs` row as the API writes a log line (`LogLine`), JSON-ready."""
    return {
        "line": row["line"],
        "ts": _json_timestamp(row["ts"]),
        "level": row["level"],
        "logger": row["logger"],
        "message": row["message"],
    }


@dataclass(frozen=True)
class LogBatch:
    """Consecutive stored log lines as one JSON array of `LogLine`s, as a long log is read back."""

    json: str
    count: int
    last_line: int
    """The number of the batch's last line; 0 for an empty batch."""

    @classmethod
    def of(cls, lines: Sequence[str]) -> LogBatch:
        """The batch of lines in JSON."""
        last_line = json.loads(lines[-1])["line"] if lines else 0
        return cls(f"[{','.join(lines)}]", len(lines), last_line)


def _json_timestamp(ts: datetime) -> str:
    """As pydantic writes a UTC timestamp in JSON."""
    if ts.tzinfo is None:  # as SQLite hands back what Bifrost wrote in UTC
        return ts.isoformat() + "Z"
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def status_data(
    status: ExecutionStatus,
    *,
    error_type: str | None = None,
    error_message: str | None = None,
    duration_ms: float | None = None,
) -> dict[str, Any]:
    """The `data` of a `status` event."""
    return {
        "status": status.value,
        "error_type": error_type,
        "error_message": error_message,
        "duration_ms": duration_ms,
    }


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


Announce = Callable[[list[Committed]], Awaitable[None]]
"""Announces commits to whoever follows them, once they are durable."""
