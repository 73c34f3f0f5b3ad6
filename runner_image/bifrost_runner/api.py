"""The control-plane API as the runner sees it: every call carries the execution token."""

from __future__ import annotations

import asyncio
import functools
import ssl
from typing import Any

import httpx
from pydantic import ValidationError

from bifrost._internal.protocol import RunPayload
from bifrost_runner.logs import runner_call

_RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
LONG_POLL_SECONDS = 30


class ApiError(RuntimeError):
    """The control plane refused a runner request or could not be reached."""


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """Built once: the local backend's runner template builds it before forking, so runners skip the cost."""
    return httpx.create_ssl_context()


class ApiClient:
    def __init__(self, api_url: str, token: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0, read=LONG_POLL_SECONDS + 15.0),
            verify=ssl_context(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def authorize(self, token: str) -> None:
        """Send `token` from now on: a ready runner opens its client before it knows its execution."""
        self._client.headers["Authorization"] = f"Bearer {token}"

    async def payload(self) -> RunPayload:
        response = await self._request("GET", "/api/runner/payload")
        try:
            return RunPayload.model_validate_json(response.content)
        except ValidationError as exc:
            raise ApiError(f"GET /api/runner/payload: the control plane sent an invalid payload: {exc}") from None

    async def start_workflow(self, name: str, parameters: dict[str, Any], secrets: list[str]) -> str:
        """Start a sub-workflow; `secrets`: the secret values among the parameters, which it masks as its own."""
        body = {"parameters": parameters, "secrets": secrets}
        response = await self._request("POST", f"/api/runner/workflows/{name}/run", json=body)
        return str(response.json()["execution_id"])

    async def execution(self, execution_id: str, wait_seconds: int) -> dict[str, Any]:
        response = await self._request("GET", f"/api/runner/executions/{execution_id}", params={"wait": wait_seconds})
        body: dict[str, Any] = response.json()
        return body

    async def secret(self, name: str) -> Any:
        return await self._value(f"/api/runner/secrets/{name}")

    async def config(self, name: str) -> Any:
        return await self._value(f"/api/runner/config/{name}")

    async def _value(self, path: str) -> Any:
        response = await self._request("GET", path, absent_ok=True)
        return None if response.status_code == 404 else response.json()["value"]

    async def _request(self, method: str, path: str, *, absent_ok: bool = False, **kwargs: Any) -> httpx.Response:
        """Retries connection errors and 5xx answers a few times; any other error is final."""
        marker = runner_call.set(True)
        try:
            return await self._request_with_retries(method, path, absent_ok, **kwargs)
        finally:
            runner_call.reset(marker)

    async def _request_with_retries(
        self, method: str, path: str, absent_ok: bool, **kwargs: Any
    ) -> httpx.Response:
        attempt = 0
        while True:
            last_attempt = attempt == len(_RETRY_DELAYS)
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if last_attempt:
                    raise ApiError(f"{method} {path}: control plane unreachable: {exc!r}") from exc
            else:
                if response.status_code < 500 or last_attempt:
                    return self._checked(method, path, response, absent_ok)
            await asyncio.sleep(_RETRY_DELAYS[attempt])
            attempt += 1

    @staticmethod
    def _checked(method: str, path: str, response: httpx.Response, absent_ok: bool) -> httpx.Response:
        if response.is_success or (absent_ok and response.status_code == 404):
            return response
        problem = response.text[:500] or response.reason_phrase
        if response.status_code == 401:
            problem = f"the execution token was refused: {problem}"
        raise ApiError(f"{method} {path}: HTTP {response.status_code}: {problem}")
