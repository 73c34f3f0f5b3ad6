"""Answers for errors no route handles itself."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError


async def _database_refused_value(_request: Request, exc: Exception) -> JSONResponse:
    # The database refuses a value only SQL type rules forbid (PostgreSQL: a NUL character in text, a number
    # out of range); that is bad input, not a server fault.
    reason = str(getattr(exc, "orig", exc)).splitlines()[0]
    return JSONResponse(
        {"detail": f"the database cannot take a value of this request: {reason}"},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DataError, _database_refused_value)
