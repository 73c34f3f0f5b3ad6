"""What the blocking and the asynchronous client share: their settings, and how a stream is asked for."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from bifrost.client import _calls as calls
from bifrost.client._retry import Retry, retry_after
from bifrost.client.errors import api_error

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


def follow_request(
    http: httpx.Client | httpx.AsyncClient, execution_id: str, last_line: int, read_timeout: float | None
) -> httpx.Request:
    """The request of an execution's stream, resumed after `last_line`; `read_timeout` shortens how long one read
    may wait."""
    headers = {"Accept": "text/event-stream"}
    if last_line:
        headers["Last-Event-ID"] = str(last_line)
    timeout = http.timeout
    if read_timeout is not None:
        read = max(min(read_timeout, timeout.read or read_timeout), 0.001)
        timeout = httpx.Timeout(timeout.connect, read=read, write=timeout.write, pool=timeout.pool)
    return http.build_request("GET", calls.stream_path(execution_id), headers=headers, timeout=timeout)


def stream_failure(response: httpx.Response, execution_id: str, failures: int, retry: Retry) -> float:
    """How long to wait before asking for a stream again after the server refused it with a 503; any other
    refusal, or a 503 once retries are spent, raises its `ApiError`."""
    if response.status_code == 503 and failures < retry.attempts:
        return retry.delay(failures, retry_after(response))
    try:
        body = response.json()
    except ValueError:
        body = response.text.strip()
    raise api_error(
        response.status_code, body, method="GET", path=calls.stream_path(execution_id), execution_id=execution_id
    )
