"""What every request passes before a route reads its body.

- Routes that take a body authenticate their caller first: an anonymous request, or one with a wrong key or
  token, is answered 401 without its body being read, let alone parsed.
- A body is limited in size while it streams in (`BIFROST_MAX_REQUEST_BYTES`; the workspace upload routes
  `BIFROST_MAX_UPLOAD_BYTES`), announced with Content-Length or chunked: past the limit it is answered 413
  without the rest being read.
- A JSON body may hold only what every database stores and every answer carries back: no NUL characters, no
  unpaired surrogates, no non-finite numbers, nesting no deeper than `BIFROST_MAX_JSON_DEPTH`. Anything else is
  answered 422 naming the field, before any route runs, so one caller's input cannot break what others read.
- So may the query parameters and path parameters of a request (a NUL character is what decoding the URL can make
  of them that no database stores): answered 422 naming the parameter, once the caller is authenticated as the
  route requires.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.api import workspace
from control_plane.api.dependencies import (
    AUTHENTICATED_SCOPE_KEY,
    STARTER_SCOPE_KEY,
    Services,
    authorized_starter,
    bearer_of,
    credentials_of,
    require_execution_token,
    require_starter,
    require_user,
)
from control_plane.settings import Settings

_UPLOAD_ENDPOINTS = frozenset({workspace.write_file, workspace.sync_folder})


class BodyTooLargeError(HTTPException):
    """Raised as the body is read, wherever that happens: routes answer it as any HTTPException, with 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE, detail=f"the request body is larger than the limit of {limit} bytes"
        )


@dataclass(frozen=True)
class BadValue:
    location: tuple[str | int, ...]
    message: str
    kind: str


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._routes: list[APIRoute] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self._route_of(scope)
        if route is not None and (url_problem := _url_problem(route, scope)) is not None:
            refusal = await self._refusal(route, scope)
            await (refusal or _unprocessable(*url_problem))(scope, receive, send)
            return
        limit = self._limit_of(route)
        takes_body = route is not None and route.body_field is not None
        if route is not None and takes_body and (refusal := await self._refusal(route, scope)) is not None:
            await refusal(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _answer(BodyTooLargeError(limit))(scope, receive, send)
            return
        limited: Receive = _LimitedReceive(receive, limit)
        if takes_body and _is_json(scope):
            try:
                body = await _read_all(limited)
            except BodyTooLargeError as exc:
                await _answer(exc)(scope, receive, send)
                return
            problem = self._problem_of(body)
            if problem is not None:
                await _unprocessable(problem)(scope, receive, send)
                return
            limited = _replay(body, limited)
        await self.app(scope, limited, send)

    def _route_of(self, scope: Scope) -> APIRoute | None:
        if self._routes is None:
            self._routes = [c.route for c in iter_route_contexts(scope["app"].routes) if isinstance(c.route, APIRoute)]
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
        return None

    def _limit_of(self, route: APIRoute | None) -> int:
        if route is not None and route.endpoint in _UPLOAD_ENDPOINTS:
            return self.settings.max_upload_bytes
        return self.settings.max_request_bytes

    async def _refusal(self, route: APIRoute, scope: Scope) -> Response | None:
        """The answer refusing the caller, or None to go on (the principal, or the execution token's claims, are
        left in the scope for the route)."""
        calls = set(_calls(route.dependant))
        services: Services = scope["app"].state.services
        _, matched = route.matches(scope)
        request = Request({**scope, **matched})  # with the path parameters the route will get
        try:
            if require_execution_token in calls:
                scope[AUTHENTICATED_SCOPE_KEY] = await run_in_threadpool(
                    require_execution_token, request, services, await bearer_of(request)
                )
            elif require_starter in calls:
                # The starter checked in the same worker-thread call: one hand-off less on a sync run's path.
                credentials = await credentials_of(request)
                scope[STARTER_SCOPE_KEY] = await run_in_threadpool(authorized_starter, request, services, credentials)
            elif require_user in calls:
                credentials = await credentials_of(request)
                scope[AUTHENTICATED_SCOPE_KEY] = await run_in_threadpool(require_user, request, services, credentials)
        except HTTPException as exc:
            return _answer(exc)
        return None

    def _problem_of(self, body: bytes) -> BadValue | None:
        try:
            value = json.loads(body)
        except RecursionError:
            return BadValue((), f"nested deeper than {self.settings.max_json_depth} levels", "json_too_deep")
        except json.JSONDecodeError:
            return None  # the route answers it as FastAPI does, with where the JSON breaks
        except ValueError as exc:
            return BadValue((), f"the body cannot be read as JSON: {exc}", "json_invalid")
        return next(_bad_values(value, (), self.settings.max_json_depth), None)


def _answer(exc: HTTPException) -> Response:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _bad_values(value: Any, location: tuple[str | int, ...], depth_left: int) -> Iterator[BadValue]:
    """What in a parsed JSON value no database stores or no answer carries back, first found first."""
    if isinstance(value, str):
        problem = _text_problem(value)
        if problem:
            yield BadValue(location, problem, "string_unstorable")
    elif isinstance(value, float):
        if not math.isfinite(value):
            yield BadValue(location, f"{value} is not a JSON number", "number_not_finite")
    elif isinstance(value, (dict, list)):
        if depth_left <= 0:
            yield BadValue(location, "nested too deep", "json_too_deep")
            return
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and (problem := _text_problem(key)):
                yield BadValue((*location, key), f"the key {problem}", "string_unstorable")
            yield from _bad_values(item, (*location, key), depth_left - 1)


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (\\ud800-\\udfff), which is not text"
    return None


def _url_problem(route: APIRoute, scope: Scope) -> tuple[BadValue, str] | None:
    """What in the request's query or path parameters no database stores, with where it is."""
    _, child_scope = route.matches(scope)
    parameters = (
        ("query", Request(scope).query_params.multi_items()),
        ("path", list(child_scope.get("path_params", {}).items())),
    )
    for section, items in parameters:
        for name, value in items:
            for text, what in ((name, "the name "), (str(value), "")):
                if "\x00" in text:
                    return BadValue((name,), f"{what}contains a NUL character (\\u0000)", "string_unstorable"), section
    return None


def _unprocessable(problem: BadValue, section: str = "body") -> Response:
    # The location may hold the very key that is not text: it is shown escaped.
    location = [
        part.encode("utf-8", "backslashreplace").decode() if isinstance(part, str) else part
        for part in problem.location
    ]
    return JSONResponse(
        {"detail": [{"type": problem.kind, "loc": [section, *location], "msg": problem.message}]},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _content_length(scope: Scope) -> int | None:
    try:
        return int(Request(scope).headers.get("content-length", ""))
    except ValueError:
        return None


def _is_json(scope: Scope) -> bool:
    media = Request(scope).headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class _LimitedReceive:
    """The body as it arrives, refused once more than `limit` bytes came: nothing past that is read."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self._received = 0

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limit:
                raise BodyTooLargeError(self._limit)
        return message


async def _read_all(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` as if its body had not been read yet."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
