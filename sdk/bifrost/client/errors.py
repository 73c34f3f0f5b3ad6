"""What the client raises: every error is a `BifrostError`, and says what went wrong in one line."""

from __future__ import annotations

from typing import Any

from bifrost.api.executions import ExecutionOut, ExecutionStatus


class BifrostError(Exception):
    """Anything the client raises."""


class ConnectionFailedError(BifrostError):
    """The server could not be reached, or kept answering 503, after every retry."""

    def __init__(self, url: str, reason: str, attempts: int) -> None:
        tries = "once" if attempts == 1 else f"{attempts} times"
        super().__init__(f"cannot reach Bifrost at {url} (tried {tries}): {reason}")
        self.url = url
        self.reason = reason
        self.attempts = attempts


class ApiError(BifrostError):
    """The server refused a request. `message` is the server's own explanation; `errors` the per-field errors of
    a 422; `execution_id` the execution the request was about, when it was about one."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        method: str,
        path: str,
        execution_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.method = method
        self.path = path
        self.execution_id = execution_id
        self.errors = errors or []

    def __str__(self) -> str:
        named = self.execution_id is None or self.execution_id in self.message
        about = "" if named else f" (execution {self.execution_id})"
        return f"{self.message}{about} [HTTP {self.status_code} on {self.method} {self.path}]"


class InvalidRequestError(ApiError):
    """400 or 422: the request itself is wrong (bad parameters, a bad value); `errors` names each field."""


class NotAuthenticatedError(ApiError):
    """401: no API key, or one that is wrong, expired or revoked."""


class ForbiddenError(ApiError):
    """403: the key's user may not do this (in this organization)."""


class NotFoundError(ApiError):
    """404: no such workflow, execution, file, ... (or one the caller may not see)."""


class ConflictError(ApiError):
    """409: the request conflicts with the current state, such as cancelling an execution that has finished."""


class ServerError(ApiError):
    """5xx: the server failed (a 503 is retried first)."""


class WaitTimeoutError(BifrostError):
    """The execution had not finished when the caller stopped waiting; it goes on running."""

    def __init__(self, execution_id: str, seconds: float) -> None:
        super().__init__(f"execution {execution_id} had not finished after {seconds:g} s; it goes on running")
        self.execution_id = execution_id
        self.seconds = seconds


class ExecutionFailedError(BifrostError):
    """An execution ended otherwise than with `Success` (raised by `run(..., check=True)`)."""

    def __init__(self, execution: ExecutionOut) -> None:
        error = execution.error
        why = ": " + "; ".join(part for part in (error.type, error.message) if part) if error else ""
        super().__init__(f"execution {execution.execution_id} of {execution.workflow_name} {execution.status}{why}")
        self.execution = execution
        self.execution_id = execution.execution_id
        self.status: ExecutionStatus = execution.status


_KINDS: dict[int, type[ApiError]] = {
    400: InvalidRequestError,
    401: NotAuthenticatedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
}


def api_error(status_code: int, body: Any, *, method: str, path: str, execution_id: str | None = None) -> ApiError:
    """The error of a refused request, from the body the server answered with (`{"detail": ...}`)."""
    detail = body.get("detail") if isinstance(body, dict) else None
    errors: list[dict[str, Any]] = []
    if isinstance(detail, list):
        errors = [error for error in detail if isinstance(error, dict)]
        message = "; ".join(_field_error(error) for error in errors) or "the request was refused"
    elif isinstance(detail, str) and detail:
        message = detail
    else:
        message = body if isinstance(body, str) and body else f"the server answered HTTP {status_code}"
    if isinstance(body, dict) and execution_id is None and isinstance(body.get("execution_id"), str):
        execution_id = body["execution_id"]
    kind = _KINDS.get(status_code, ServerError if status_code >= 500 else ApiError)
    return kind(status_code, message, method=method, path=path, execution_id=execution_id, errors=errors)


def _field_error(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    message = str(error.get("msg", "invalid"))
    return f"{'.'.join(location)}: {message}" if location else message
