"""An execution's stream of server-sent events, read line by line (the `text/event-stream` format)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from bifrost.api.executions import LogLine, StatusChange

_LOG_LINES = TypeAdapter(list[LogLine])


@dataclass(frozen=True)
class StreamEvent:
    """One event of an execution's stream. `kind` says which of the other fields it carries: `log` a log line (a
    batch of stored lines comes as one `log` event per line), `status` a status change, `variables` the
    workflow's variables, `result` its result. `last_line` is the number of the last log line sent so far:
    resuming after it loses no line and repeats none."""

    kind: str
    last_line: int
    log: LogLine | None = None
    status: StatusChange | None = None
    variables: dict[str, Any] | None = None
    result: Any = None

    @property
    def is_final(self) -> bool:
        """Whether this is the final status, the stream's last event."""
        return self.status is not None and self.status.status.is_terminal


class EventLines:
    """Turns the lines of an event stream into events; comments (keep-alive pings) make none."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> list[StreamEvent]:
        """The events a blank line completes: a `logs` event (a batch of log lines) makes one `log` event per
        line."""
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    self._data.append(value)
                elif name == "event":
                    self._event = value
                elif name == "id":
                    self._id = value
            return []
        event, data, event_id = self._event, self._data, self._id
        self._event, self._data, self._id = "", [], None
        if not data or event_id is None:
            return []
        return _stream_events(event, event_id, json.loads("\n".join(data)))


def _stream_events(kind: str, event_id: str, data: Any) -> list[StreamEvent]:
    if kind == "logs":
        lines = _LOG_LINES.validate_python(data)
        return [StreamEvent("log", line.line, log=line) for line in lines]
    event = _stream_event(kind, int(event_id), data)
    return [] if event is None else [event]


def _stream_event(kind: str, last_line: int, data: dict[str, Any]) -> StreamEvent | None:
    if kind == "log":
        return StreamEvent(kind, last_line, log=LogLine.model_validate(data))
    if kind == "status":
        return StreamEvent(kind, last_line, status=StatusChange.model_validate(data))
    if kind == "variables":
        return StreamEvent(kind, last_line, variables=data.get("variables"))
    if kind == "result":
        return StreamEvent(kind, last_line, result=data.get("result"))
    return None  # a kind this client does not know yet
