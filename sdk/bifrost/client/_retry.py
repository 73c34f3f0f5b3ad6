"""When a request is sent again, and after how long."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class Retry:
    """Retries with exponential backoff and jitter: after a connection error, and after a 503 (which a proxy or
    load balancer answers while the server is away). A request whose connection broke after it was sent is sent
    again only when it is idempotent (GET, PUT, DELETE); one never sent, always."""

    attempts: int = 5
    """Tries in all, the first one included; 1 turns retrying off."""
    first_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """How long to wait after the `failures`-th failure in a row; `retry_after` is what the server asked."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        ceiling = min(self.max_delay, self.first_delay * 2 ** (failures - 1))
        return random.uniform(ceiling / 2, ceiling)


def never_sent(exc: httpx.TransportError) -> bool:
    """Whether the request surely did not reach the server."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return text if never_sent(exc) else f"the connection broke: {text}"
