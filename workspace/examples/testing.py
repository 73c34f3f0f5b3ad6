"""Workflows with exactly predictable behaviour: echo, sleep, log, fail, call a sub-workflow."""

import asyncio
import logging
import time

from bifrost import workflow, workflows

logger = logging.getLogger(__name__)


@workflow(category="Testing")
async def echo(message: str, count: int = 1) -> dict[str, object]:
    """Return the message and count it was given.

    Args:
        message: Text to send back.
        count: Any number; sent back as given.
    """
    return {"message": message, "count": count}


@workflow(category="Testing")
async def sleep_for(seconds: float) -> float:
    """Sleep without blocking, then return how long.

    Args:
        seconds: How long to sleep.
    """
    await asyncio.sleep(seconds)
    return seconds


@workflow(category="Testing")
async def log_lines(count: int) -> int:
    """Log `count` numbered lines, then return the count.

    Args:
        count: How many lines to log.
    """
    for i in range(count):
        logger.info("line %d", i)
    return count


@workflow(category="Testing")
async def fail_on_purpose(reason: str = "boom") -> None:
    """Raise RuntimeError, so the execution ends Failed with a traceback.

    Args:
        reason: The exception message.
    """
    raise RuntimeError(reason)


@workflow(category="Testing")
async def soft_failure() -> dict[str, object]:
    """Report an error without raising: the execution ends CompletedWithErrors."""
    return {"success": False, "error": "the remote system refused the change"}


@workflow(category="Testing")
async def parent_calls_child(message: str) -> object:
    """Run `echo` as a sub-workflow and return its result.

    Args:
        message: Passed on to `echo`.
    """
    return await workflows.run("echo", message=message)


@workflow(category="Testing", execution_mode="sync", endpoint_enabled=True)
async def sync_echo(message: str) -> dict[str, str]:
    """Answer at once with the message it was given (a synchronous endpoint).

    Args:
        message: Text to send back.
    """
    return {"message": message}


@workflow(category="Testing")
def blocking_sleep(seconds: float) -> float:
    """Block in `time.sleep` (a plain `def` runs in a worker thread), then return how long.

    Args:
        seconds: How long to sleep.
    """
    time.sleep(seconds)
    return seconds
