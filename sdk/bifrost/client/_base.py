"""What the blocking and the asynchronous client share: their settings, the endpoints, and every decision about
retrying a request and following a stream; each client only does the input and output, its own way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

import httpx

from bifrost.client import _calls as calls
from bifrost.client._retry import Retry, never_sent, reason, retry_after
from bifrost.client._stream import EventLines, StreamEvent
from bifrost.client.errors import ConnectionFailedError, api_error
from bifrost.client.profiles import Connection, resolve

Http = TypeVar("Http", httpx.Client, httpx.AsyncClient)

ORG_HEADER = "X-Bifrost-Org"
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ClientSettings:
    url: str
    headers: dict[str, str]
    timeout: httpx.Timeout
    retry: Retry

    @classmethod
    def of(
        cls, url: str, api_key: str | None, *, org: str | None, timeout: float, retry: Retry | None
    ) -> ClientSettings:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the server URL {url!r} must start with http:// or https://")
        headers = {"User-Agent": f"bifrost-client httpx/{httpx.__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if org:
            headers[ORG_HEADER] = org
        return cls(
            url=url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)),
            retry=retry or Retry(),
        )


class ClientBase(calls.Endpoints, Generic[Http]):
    """How a client is made, over the httpx client `Http` it sends with; its endpoints come from `Endpoints`."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        org: str | None = None,
        timeout: float = 60.0,
        retry: Retry | None = None,
    ) -> None:
        self._settings = ClientSettings.of(url, api_key, org=org, timeout=timeout, retry=retry)
        self._http: Http = self._open(
            base_url=self._settings.url, headers=self._settings.headers, timeout=self._settings.timeout
        )

    def _open(self, *, base_url: str, headers: dict[str, str], timeout: httpx.Timeout) -> Http:
        """The httpx client the requests go out with."""
        raise NotImplementedError

    @classmethod
    def connect(cls, *, profile: str | None = None, org: str | None = None, **options: Any) -> Self:
        """A client for the server a profile or the environment names (see `bifrost.client.profiles`)."""
        return cls.of(resolve(profile=profile, org=org), **options)

    @classmethod
    def of(cls, connection: Connection, **options: Any) -> Self:
        return cls(connection.url, connection.api_key, org=connection.org, **options)

    @property
    def url(self) -> str:
        return self._settings.url


class Attempts:
    """The tries of one request: after each failure, how long to wait before the next, or the error that ends
    them once retries are spent (or when a request that may have reached the server must not be sent again)."""

    def __init__(self, settings: ClientSettings, *, idempotent: bool = True) -> None:
        self._settings = settings
        self._idempotent = idempotent
        self.failures = 0

    def broke(self, exc: httpx.TransportError) -> float:
        """After a connection error: the pause before the next try, or `ConnectionFailedError`."""
        self.failures += 1
        if self.failures >= self._settings.retry.attempts or not (never_sent(exc) or self._idempotent):
            raise ConnectionFailedError(self._settings.url, reason(exc), self.failures) from exc
        return self._settings.retry.delay(self.failures)

    def unavailable(self, response: httpx.Response) -> float | None:
        """After a 503 the request does not expect: the pause before the next try, or None once retries are spent
        (the 503 is then the answer)."""
        if self.failures + 1 >= self._settings.retry.attempts:
            return None
        self.failures += 1
        return self._settings.retry.delay(self.failures, retry_after(response))

    def pause(self, call: calls.Call[Any], response: httpx.Response) -> float | None:
        """Whether `response` is the call's answer (None) or a 503 to try again after a pause."""
        if response.status_code == 503 and 503 not in call.accept:
            return self.unavailable(response)
        return None


class Follower:
    """One execution's stream, followed across reconnections: the request that resumes it after the last line
    seen, what a refusal or a broken connection leads to, and the events its lines make."""

    def __init__(
        self, http: httpx.Client | httpx.AsyncClient, settings: ClientSettings, execution_id: str, after_line: int
    ) -> None:
        self._http = http
        self._execution_id = execution_id
        self._attempts = Attempts(settings)
        self._lines = EventLines()
        self.last_line = after_line

    def request(self, read_timeout: float | None = None) -> httpx.Request:
        """The request of the stream, resumed after the last line seen; `read_timeout` shortens how long one read
        may wait."""
        self._lines = EventLines()
        headers = {"Accept": "text/event-stream"}
        if self.last_line:
            headers["Last-Event-ID"] = str(self.last_line)
        timeout = self._http.timeout
        if read_timeout is not None:
            read = max(min(read_timeout, timeout.read or read_timeout), 0.001)
            timeout = httpx.Timeout(timeout.connect, read=read, write=timeout.write, pool=timeout.pool)
        path = calls.stream_path(self._execution_id)
        return self._http.build_request("GET", path, headers=headers, timeout=timeout)

    def broke(self, exc: httpx.TransportError) -> float:
        return self._attempts.broke(exc)

    def refused(self, response: httpx.Response) -> float:
        """How long to wait before asking again after the server refused the stream (its body read) with a 503;
        any other refusal, or a 503 once retries are spent, raises its `ApiError`."""
        if response.status_code == 503:
            pause = self._attempts.unavailable(response)
            if pause is not None:
                return pause
        try:
            body = response.json()
        except ValueError:
            body = response.text.strip()
        path = calls.stream_path(self._execution_id)
        raise api_error(response.status_code, body, method="GET", path=path, execution_id=self._execution_id)

    def feed(self, line: str) -> list[StreamEvent]:
        """The events a line completes."""
        events = self._lines.feed(line)
        if events:
            self._attempts.failures = 0
            self.last_line = events[-1].last_line
        return events
