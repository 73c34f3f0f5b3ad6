"""The execution engine: queue and dispatch, event ingestion, runner exits, cancel and live events."""

from control_plane.engine.engine import Engine, EngineNotStartedError, ExecutionNotFoundError
from control_plane.engine.live import LiveEvent, LiveStreamLaggedError, LiveSubscription

__all__ = [
    "Engine",
    "EngineNotStartedError",
    "ExecutionNotFoundError",
    "LiveEvent",
    "LiveStreamLaggedError",
    "LiveSubscription",
]
