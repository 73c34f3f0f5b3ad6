"""Calling the workflow function: async ones on the event loop, sync ones in a thread (with the execution
context visible there), under a timeout and a cancel signal."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from bifrost_runner.variables import FrameCatcher
from bifrost_runner.workers import run_in_worker

CANCEL_UNWIND_SECONDS = 2.0
"""How long a cancelled async workflow may take to run its `finally` blocks before the runner moves on."""


class Interruption(enum.Enum):
    TIMEOUT = "timeout"
    CANCEL = "cancel"


@dataclass
class Invocation:
    """How the call ended: a value, an exception, or an interruption. `frame` holds the workflow's locals."""

    returned: Any = None
    exception: BaseException | None = None
    interruption: Interruption | None = None
    frame: FrameType | None = None


def _settle(future: asyncio.Future[Any], result: Any, exception: BaseException | None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _in_thread(func: Callable[..., Any], kwargs: dict[str, Any], catcher: FrameCatcher) -> asyncio.Future[Any]:
    """On a worker thread (see `bifrost_runner.workers`), its outcome settled on the event loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def target() -> None:
        catcher.install()
        try:
            result = context.run(func, **kwargs)
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)
        finally:
            catcher.uninstall()

    run_in_worker(target)
    return future


async def invoke(
    func: Callable[..., Any], kwargs: dict[str, Any], timeout_seconds: float, cancel: asyncio.Future[str]
) -> Invocation:
    catcher = FrameCatcher(inspect.unwrap(func).__code__)
    work: asyncio.Future[Any]
    if inspect.iscoroutinefunction(func):

        async def call() -> Any:
            catcher.install()
            try:
                return await func(**kwargs)
            finally:
                catcher.uninstall()

        work = asyncio.ensure_future(call())
    else:
        work = _in_thread(func, kwargs, catcher)

    done, _ = await asyncio.wait({work, cancel}, timeout=timeout_seconds, return_when=asyncio.FIRST_COMPLETED)
    if work in done:
        exception = work.exception()
        return Invocation(
            returned=None if exception else work.result(), exception=exception, frame=catcher.frame
        )
    work.cancel()
    if isinstance(work, asyncio.Task):
        await asyncio.wait({work}, timeout=CANCEL_UNWIND_SECONDS)
    with contextlib.suppress(BaseException):
        work.exception()  # retrieved, so asyncio does not log it as never retrieved
    interruption = Interruption.CANCEL if cancel in done else Interruption.TIMEOUT
    return Invocation(interruption=interruption, frame=catcher.frame)
