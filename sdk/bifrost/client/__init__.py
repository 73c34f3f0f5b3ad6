"""Bifrost's HTTP API from Python: `Client` (blocking) and `AsyncClient`, typed with the API's own bodies
(`bifrost.api`). Needs the SDK's `client` extra: `pip install 'bifrost-sdk[client]'`.

    from bifrost.client import Client

    with Client.connect() as bifrost:          # BIFROST_URL and BIFROST_API_KEY, or a profile
        execution = bifrost.run("create_user", {"email": "a@example.com"}, check=True)
        print(execution.result)
"""

from typing import TYPE_CHECKING, Any

from bifrost.client._retry import Retry
from bifrost.client._stream import StreamEvent
from bifrost.client._sync import Client
from bifrost.client.errors import (
    ApiError,
    BifrostError,
    ConflictError,
    ConnectionFailedError,
    ExecutionFailedError,
    ForbiddenError,
    InvalidRequestError,
    NotAuthenticatedError,
    NotFoundError,
    ServerError,
    WaitTimeoutError,
)
from bifrost.client.profiles import Connection, ProfileError

if TYPE_CHECKING:
    from bifrost.client._async import AsyncClient

__all__ = [
    "ApiError",
    "AsyncClient",
    "BifrostError",
    "Client",
    "ConflictError",
    "Connection",
    "ConnectionFailedError",
    "ExecutionFailedError",
    "ForbiddenError",
    "InvalidRequestError",
    "NotAuthenticatedError",
    "NotFoundError",
    "ProfileError",
    "Retry",
    "ServerError",
    "StreamEvent",
    "WaitTimeoutError",
]


def __getattr__(name: str) -> Any:
    # `AsyncClient` brings asyncio along: imported when asked for, so that a blocking client starts without it.
    if name == "AsyncClient":
        from bifrost.client._async import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
