"""What a service refuses, by kind. Services raise these with a message meant for the caller; the API answers
each kind with its HTTP status (`api/errors.py`), so routes need not catch them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class RefusedError(Exception):
    """A request a service will not carry out; nothing was changed."""

    details: Mapping[str, Any] = {}
    """What the answer carries beside the message."""


class InvalidRequestError(RefusedError, ValueError):
    """The request is malformed in a way its schema cannot tell (400)."""


class NotAuthenticatedError(RefusedError):
    """The caller's credentials are missing, invalid or no longer valid (401)."""


class ForbiddenError(RefusedError):
    """The caller is known but may not do this (403)."""


class NotFoundError(RefusedError, LookupError):
    """No such thing, or none the caller may see (404)."""


class ConflictError(RefusedError):
    """The request contradicts what is stored (409)."""


@dataclass(frozen=True)
class FieldProblem:
    """What is wrong with one value of a request: where it is (`("values", "email")`), why, and its kind."""

    loc: tuple[str | int, ...]
    message: str
    type: str


class InvalidFieldsError(RefusedError, ValueError):
    """Values of the request are wrong, each said at its place (422, as FastAPI answers a malformed body)."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.message}" for p in self.problems))


class UpstreamError(RefusedError):
    """Code the request ran on the caller's behalf (a data provider) failed or answered nonsense (502)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class UpstreamTimeoutError(UpstreamError):
    """Code the request ran on the caller's behalf did not answer in time (504)."""
