"""Stopping the engine's loops."""

from __future__ import annotations

import asyncio

CANCEL_POLL_SECONDS = 0.1


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it is done. The cancel is repeated: a library call that finishes at the
    very moment it is cancelled (a known `asyncio.wait_for` race) can swallow one cancellation."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_POLL_SECONDS)
