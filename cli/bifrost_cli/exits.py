"""The exit codes of the `bifrost` command, and the one-line message of every expected failure.

| code | meaning |
| --- | --- |
| 0 | success: the execution succeeded, the command did what it was asked |
| 1 | the execution failed (`Failed`); `discover` found problems |
| 2 | usage: the command line is wrong, or the server refused the request as invalid (bad parameters, an |
|   | unknown workflow or execution, a conflict) |
| 3 | the execution completed with errors (`CompletedWithErrors`) |
| 4 | the execution timed out (`Timeout`) |
| 5 | the execution was cancelled (`Cancelled`) |
| 6 | the server cannot be reached, or it failed (HTTP 5xx) |
| 7 | not allowed: no API key, a wrong, expired or revoked one, or a key without the right |
| 8 | still running: `--timeout` passed before the execution finished (it goes on) |
| 130 | interrupted (Ctrl-C), the execution left running |
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    FAILED = 1
    USAGE = 2
    COMPLETED_WITH_ERRORS = 3
    TIMEOUT = 4
    CANCELLED = 5
    CONNECTION = 6
    NOT_ALLOWED = 7
    STILL_RUNNING = 8
    INTERRUPTED = 130


_OF_STATUS = {
    "Success": ExitCode.SUCCESS,
    "Failed": ExitCode.FAILED,
    "CompletedWithErrors": ExitCode.COMPLETED_WITH_ERRORS,
    "Timeout": ExitCode.TIMEOUT,
    "Cancelled": ExitCode.CANCELLED,
}


def of_status(status: str) -> ExitCode:
    """The exit code of an execution's final status."""
    return _OF_STATUS[status]


class CliError(Exception):
    """An expected failure of a command: its message is printed as one line, without a traceback."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Failure:
    message: str
    code: ExitCode


def expected_failure(exc: BaseException) -> Failure | None:
    """How an expected error ends the command; None for a bug, whose traceback is shown."""
    if isinstance(exc, CliError):
        return Failure(str(exc), exc.code)
    client_errors = sys.modules.get("bifrost.client.errors")
    if client_errors is None:  # the client was never loaded: the error cannot be one of its own
        return None
    if isinstance(exc, client_errors.ApiError):
        if exc.status_code in (401, 403):
            code = ExitCode.NOT_ALLOWED
        elif exc.status_code >= 500:
            code = ExitCode.CONNECTION
        else:
            code = ExitCode.USAGE
        return Failure(str(exc), code)
    if isinstance(exc, client_errors.ConnectionFailedError):
        return Failure(str(exc), ExitCode.CONNECTION)
    if isinstance(exc, client_errors.WaitTimeoutError):
        return Failure(str(exc), ExitCode.STILL_RUNNING)
    if isinstance(exc, client_errors.BifrostError):
        return Failure(str(exc), ExitCode.USAGE)
    return None
