"""What a service refuses, by kind. Services raise these with a message meant for the caller; the API answers
each kind with its HTTP status (`api/errors.py`), so routes need not catch them."""

from __future__ import annotations


class RefusedError(Exception):
    """A request a service will not carry out; nothing was changed."""


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
