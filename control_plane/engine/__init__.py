"""The execution engine: queue and dispatch, event ingestion, runner exits, cancel and live events."""

from control_plane.engine.engine import EngineNotStartedError, ExecutionEngine, ExecutionNotFoundError
from control_plane.engine.live import LiveStreamLaggedError, LiveSubscription
from control_plane.executions.changes import LiveEvent

__all__ = [
    "EngineNotStartedError",
    "ExecutionEngine",
    "ExecutionNotFoundError",
    "LiveEvent",
    "LiveStreamLaggedError",
    "LiveSubscription",
]
