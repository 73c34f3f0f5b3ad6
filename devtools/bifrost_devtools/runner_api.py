"""The control plane's runner endpoints (`/api/runner/...`), served over real HTTP from what a test registers:
the payload of each execution by its token, secrets, config, and the outcome of sub-workflows."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bifrost._internal.protocol import RunPayload
from bifrost_devtools.services import free_port


@dataclass
class ChildRun:
    workflow: str
    parameters: dict[str, Any]
    parent_execution_id: str


@dataclass
class RunnerApi:
    payloads: dict[str, RunPayload] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    child_outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per sub-workflow name: the terminal execution document its long-poll returns."""
    children: dict[str, ChildRun] = field(default_factory=dict)
    polls_before_done: int = 1
    _child_ids: itertools.count[int] = field(default_factory=itertools.count)
    _polls: dict[str, int] = field(default_factory=dict)

    def register(self, payload: RunPayload) -> str:
        token = secrets.token_urlsafe(16)
        self.payloads[token] = payload
        return token

    def _payload_of(self, request: Request) -> RunPayload | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return self.payloads.get(token) if scheme == "Bearer" else None

    async def _payload(self, request: Request) -> Response:
        payload = self._payload_of(request)
        if payload is None:
            return JSONResponse({"detail": "invalid execution token"}, status_code=401)
        return Response(payload.model_dump_json(), media_type="application/json")

    async def _run(self, request: Request) -> Response:
        payload = self._payload_of(request)
        if payload is None:
            return JSONResponse({"detail": "invalid execution token"}, status_code=401)
        name = request.path_params["name"]
        if name not in self.child_outcomes:
            return JSONResponse({"detail": f"no workflow {name!r}"}, status_code=404)
        child_id = f"child-{next(self._child_ids)}"
        body = await request.json()
        self.children[child_id] = ChildRun(name, body["parameters"], payload.execution_id)
        return JSONResponse({"execution_id": child_id})

    async def _execution(self, request: Request) -> Response:
        if self._payload_of(request) is None:
            return JSONResponse({"detail": "invalid execution token"}, status_code=401)
        child_id = request.path_params["execution_id"]
        child = self.children.get(child_id)
        if child is None:
            return JSONResponse({"detail": "no such execution"}, status_code=404)
        polls = self._polls[child_id] = self._polls.get(child_id, 0) + 1
        if polls <= self.polls_before_done:
            return JSONResponse({"id": child_id, "status": "Running", "result": None})
        return JSONResponse({"id": child_id, **self.child_outcomes[child.workflow]})

    async def _value(self, request: Request, store: dict[str, Any]) -> Response:
        if self._payload_of(request) is None:
            return JSONResponse({"detail": "invalid execution token"}, status_code=401)
        name = request.path_params["name"]
        if name not in store:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return JSONResponse({"value": store[name]})

    async def _secret(self, request: Request) -> Response:
        return await self._value(request, self.secrets)

    async def _config(self, request: Request) -> Response:
        return await self._value(request, self.config)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/runner/payload", self._payload),
                Route("/api/runner/workflows/{name}/run", self._run, methods=["POST"]),
                Route("/api/runner/executions/{execution_id}", self._execution),
                Route("/api/runner/secrets/{name}", self._secret),
                Route("/api/runner/config/{name}", self._config),
            ]
        )


class ServedRunnerApi:
    """`RunnerApi` on a free loopback port, in a background thread."""

    def __init__(self, api: RunnerApi) -> None:
        self.api = api
        self.port = free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(api.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("the runner API did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
