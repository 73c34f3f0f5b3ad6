"""Answers for errors no route handles itself: a service's refusal, by its kind, and a value the database
refuses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from control_plane.errors import (
    ConflictError,
    ForbiddenError,
    InvalidFieldsError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotFoundError,
    RefusedError,
    UpstreamError,
    UpstreamTimeoutError,
)

_STATUS_OF_REFUSAL: dict[type[RefusedError], int] = {
    InvalidRequestError: status.HTTP_400_BAD_REQUEST,
    NotAuthenticatedError: status.HTTP_401_UNAUTHORIZED,
    ForbiddenError: status.HTTP_403_FORBIDDEN,
    NotFoundError: status.HTTP_404_NOT_FOUND,
    ConflictError: status.HTTP_409_CONFLICT,
    InvalidFieldsError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    UpstreamTimeoutError: status.HTTP_504_GATEWAY_TIMEOUT,
    UpstreamError: status.HTTP_502_BAD_GATEWAY,
}


def status_of_refusal(refusal: RefusedError) -> int:
    """The HTTP status that answers a refusal: that of its kind."""
    kind = next(kind for kind in type(refusal).__mro__ if kind in _STATUS_OF_REFUSAL)
    return _STATUS_OF_REFUSAL[kind]


async def _refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RefusedError)
    if isinstance(exc, InvalidFieldsError):
        detail: Any = [{"loc": list(p.loc), "msg": p.message, "type": p.type} for p in exc.problems]
    else:
        detail = str(exc)
    return JSONResponse({"detail": detail, **exc.details}, status_code=status_of_refusal(exc))


async def _database_refused_value(_request: Request, exc: Exception) -> JSONResponse:
    # The database refuses a value only SQL type rules forbid (PostgreSQL: a NUL character in text, a number
    # out of range); that is bad input, not a server fault.
    reason = str(getattr(exc, "orig", exc)).splitlines()[0]
    return JSONResponse(
        {"detail": f"the database cannot take a value of this request: {reason}"},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RefusedError, _refused)
    app.add_exception_handler(DataError, _database_refused_value)
