"""The web UI: the built single-page app (`ui/dist`), served at `/`.

It answers only what no route of the API matched: a GET for one of the app's files gets it, any other GET
the app's `index.html`, so the app's own routes (`/executions/…`) load in the browser. Paths under the
server's own prefixes (`/api`, `/healthz`, `/login`, …) are never answered with the app: an unknown API path
stays a JSON 404, and a wrong method on an API path a 405.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

ASSETS_PREFIX = "assets/"
"""Where the build puts files named by the hash of their content: they never change, so browsers keep them."""

_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"
# The run form's validator (Ajv) compiles each workflow's parameter schema into a function: 'unsafe-eval'.
_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": _CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class WebUi:
    """The ASGI app a router calls when no route matched; `not_found` answers what is not the web UI's."""

    def __init__(self, directory: Path, not_found: ASGIApp) -> None:
        self.directory = directory
        self._not_found = not_found
        self._files: StaticFiles | None = None
        self._server_prefixes: frozenset[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or self._is_server_path(scope):
            await self._not_found(scope, receive, send)
            return
        response = await self._response(scope["path"].lstrip("/"), scope)
        await response(scope, receive, send)

    def _is_server_path(self, scope: Scope) -> bool:
        """Whether the path starts as a route of the server does: `api`, `healthz`, `login`, `docs`, …"""
        if self._server_prefixes is None:
            routes: list[BaseRoute] = scope["app"].routes
            self._server_prefixes = frozenset(_first_segment(c.path or "") for c in iter_route_contexts(routes)) - {""}
        return _first_segment(scope["path"]) in self._server_prefixes

    async def _response(self, path: str, scope: Scope) -> Response:
        if not (self.directory / "index.html").is_file():
            return _not_built(self.directory)
        if self._files is None:
            self._files = StaticFiles(directory=self.directory)
        try:
            response = await self._files.get_response(path or "index.html", scope)
            cache = _IMMUTABLE if path.startswith(ASSETS_PREFIX) else _REVALIDATE
        except HTTPException as exc:
            if exc.status_code != 404 or path.startswith(ASSETS_PREFIX):
                raise
            response = await self._files.get_response("index.html", scope)  # a route of the app itself
            cache = _REVALIDATE
        response.headers["Cache-Control"] = cache
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.media_type == "text/html":
            response.headers.update(_PAGE_HEADERS)
        return response


def _first_segment(path: str) -> str:
    return path.strip("/").split("/", 1)[0]


def _not_built(directory: Path) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'><title>Bifrost</title></head><body>"
        "<h1>Bifrost</h1><p>The web UI is not built: there is no <code>index.html</code> in "
        f"<code>{escape(str(directory))}</code>.</p>"
        "<p>Build it in the source folder with <code>make ui</code> (it needs Node.js 20.19 or newer and npm), "
        "or point <code>BIFROST_UI_DIR</code> at a built copy. The API works without it: see "
        '<a href="/docs">/docs</a>.</p></body></html>',
        status_code=404,
        headers={"Cache-Control": "no-store"},
    )
