"""Turning how the workflow call ended into the execution's final status, error and result."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pydantic_core

from bifrost import UserError
from bifrost._internal.protocol import ExecutionStatus
from bifrost._internal.storable import Storable, may_be_unstorable, nests_deeper
from bifrost_runner.execute import Interruption, Invocation

_RUNNER_DIR = str(Path(__file__).parent)
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class Outcome:
    status: ExecutionStatus
    result: Any = None
    has_result: bool = False
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    user_error: bool = False


def _author_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the first frame that is not the runner's own or importlib's."""
    while tb is not None and (
        tb.tb_frame.f_code.co_filename.startswith(_RUNNER_DIR)
        or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")
    ):
        tb = tb.tb_next
    return tb


def _soft_limit(kind: int) -> int | None:
    soft, _ = resource.getrlimit(kind)
    return None if soft == resource.RLIM_INFINITY else soft


def _tasks_of_this_user() -> int:
    """Processes and threads of this process's user that this process can see: what RLIMIT_NPROC counts."""
    uid, count = str(os.getuid()), 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/status") as status:
                    fields = dict(line.split(":", 1) for line in status if ":" in line)
                if fields["Uid"].split()[0] == uid:
                    count += int(fields["Threads"])
    return count


def _cgroup_process_limit_reached() -> int | None:
    """The process limit (`pids.max`) of the runner's cgroup once the cgroup refused a process or thread for it
    (`pids.events`); None before, or outside such a cgroup."""
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for membership in memberships:
        _, controllers, path = membership.split(":", 2)
        if controllers == "":
            folder = CGROUP_ROOT / path.lstrip("/")
        elif "pids" in controllers.split(","):
            folder = CGROUP_ROOT / controllers / path.lstrip("/")
        else:
            continue
        try:
            limit = (folder / "pids.max").read_text().strip()
            events = dict(line.split() for line in (folder / "pids.events").read_text().splitlines())
        except (OSError, ValueError):
            continue
        if limit != "max" and int(events.get("max", "0")) > 0:
            return int(limit)
    return None


def _starting_a_process(exception: BaseException) -> bool:
    """Whether `exception` came from starting a process: in `subprocess` or `multiprocessing`, or on a line of
    the workflow's that forks or spawns one itself."""
    frames = traceback.extract_tb(exception.__traceback__)
    if any(frame.name in ("_execute_child", "_launch") for frame in frames):
        return True
    return bool(frames) and any(word in (frames[-1].line or "") for word in ("fork", "spawn"))


def limit_reached(exception: BaseException) -> str | None:
    """Which of the runner's limits `exception` says was reached, in words; None when it is not about one."""
    if isinstance(exception, MemoryError):
        memory = _soft_limit(resource.RLIMIT_AS)
        if memory is not None:
            return f"memory limit of {memory // (1024 * 1024)} MB reached"
    if not _refused_a_process(exception):
        return None
    # The cgroup's limit first: its count of refusals says for sure that it was the one reached.
    processes = _cgroup_process_limit_reached()
    if processes is None and isinstance(exception, BlockingIOError):
        processes = _soft_limit(resource.RLIMIT_NPROC)
        # The processes that were there may be gone already: the exception ended the code that held them.
        if processes is not None and not (_starting_a_process(exception) or _tasks_of_this_user() >= processes):
            processes = None
    if processes is None:
        return None
    return f"process limit of {processes} processes and threads reached: could not start another ({exception})"


def _refused_a_process(exception: BaseException) -> bool:
    """Whether `exception` is what starting a process or a thread raises when the kernel refuses it."""
    if isinstance(exception, BlockingIOError):
        return exception.errno == errno.EAGAIN
    return isinstance(exception, RuntimeError) and "can't start new thread" in str(exception)


def failure(exception: BaseException) -> Outcome:
    if isinstance(exception, UserError):
        name = type(exception).__name__
        return Outcome(ExecutionStatus.FAILED, error_type=name, error_message=exception.message, user_error=True)
    tb = _author_frames(exception.__traceback__) or exception.__traceback__
    return Outcome(
        ExecutionStatus.FAILED,
        error_type=type(exception).__name__,
        error_message=limit_reached(exception) or str(exception) or type(exception).__name__,
        traceback="".join(traceback.format_exception(type(exception), exception, tb)),
    )


def _size(count: int) -> str:
    return f"{count / 1024 / 1024:.1f} MB" if count >= 1024 * 1024 else f"{count:,} bytes"


def _storable_json(value: Any, max_json_depth: int) -> tuple[Any, bytes]:
    """The value as JSON made storable, and its text. Walked value by value only when it needs it."""
    try:
        result = pydantic_core.to_jsonable_python(value)
        data = pydantic_core.to_json(result)
    except ValueError:
        # Text that is not text, nesting past pydantic's own limit, or no JSON at all (that fails again here).
        storable = Storable(max_json_depth)
        result = storable.value(pydantic_core.to_jsonable_python(storable.value(value)))
        return result, pydantic_core.to_json(result)
    if may_be_unstorable(data) or nests_deeper(result, max_json_depth):
        result = Storable(max_json_depth).value(result)
        data = pydantic_core.to_json(result)
    return result, data


def returned(value: Any, max_result_bytes: int, max_json_depth: int) -> Outcome:
    try:
        result, data = _storable_json(value, max_json_depth)
    except (pydantic_core.PydanticSerializationError, ValueError) as exc:
        return Outcome(
            ExecutionStatus.FAILED,
            error_type="ResultNotSerializable",
            error_message=f"the workflow returned a {type(value).__name__} that is not JSON-serialisable: {exc}",
        )
    size = len(data)
    if size > max_result_bytes:
        return Outcome(
            ExecutionStatus.FAILED,
            error_type="ResultTooLarge",
            error_message=f"the result is {_size(size)}, over the limit of {_size(max_result_bytes)}",
        )
    if isinstance(value, dict) and value.get("success") is False:
        error = value.get("error")
        return Outcome(
            ExecutionStatus.COMPLETED_WITH_ERRORS,
            result=result,
            has_result=True,
            error_message=None if error is None else str(error),
        )
    return Outcome(ExecutionStatus.SUCCESS, result=result, has_result=True)


def outcome_of(
    invocation: Invocation, timeout_seconds: float, cancel_reason: str, max_result_bytes: int, max_json_depth: int
) -> Outcome:
    if invocation.interruption is Interruption.TIMEOUT:
        return Outcome(
            ExecutionStatus.TIMEOUT,
            error_type="TimeoutError",
            error_message=f"the workflow did not finish within its timeout of {timeout_seconds:g} s",
        )
    if invocation.interruption is Interruption.CANCEL:
        return Outcome(ExecutionStatus.CANCELLED, error_type="Cancelled", error_message=cancel_reason)
    if invocation.exception is not None:
        return failure(invocation.exception)
    return returned(invocation.returned, max_result_bytes, max_json_depth)
