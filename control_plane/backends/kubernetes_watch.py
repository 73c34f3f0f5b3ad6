"""ONE list-and-watch of a kind of object (Jobs or pods) in the runner namespace, shared by every execution.

It runs in a thread of its own (the official client blocks) and hands what it sees to the event loop: a full
listing after each (re)list, then every change. It resumes from the last resourceVersion after a disconnect,
lists again when the API server answers 410 Gone (the version was compacted away), and reconnects with
exponential backoff when the API server is unreachable or failing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from control_plane.backends.kubernetes_spec import MANAGED_SELECTOR

logger = logging.getLogger(__name__)

_GONE = 410
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 10.0

ListFunction = Callable[..., Any]
OnListed = Callable[[list[dict[str, Any]], float], None]
"""Receives every object after a (re)list, and the monotonic time the listing started."""
OnEvent = Callable[[str, dict[str, Any]], None]
"""Receives the type (ADDED, MODIFIED, DELETED) and the object of one change."""


class WatchGone(Exception):
    """The API server no longer has the resourceVersion we resume from."""


class SharedWatch:
    def __init__(
        self,
        kind: str,
        list_function: ListFunction,
        namespace: str,
        on_listed: OnListed,
        on_event: OnEvent,
        timeout_seconds: int,
    ) -> None:
        self.kind = kind
        self._list = list_function
        self._namespace = namespace
        self._on_listed = on_listed
        self._on_event = on_event
        self._timeout_seconds = timeout_seconds
        self._stopping = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._thread = threading.Thread(target=self._run, name=f"bifrost-k8s-watch-{kind}", daemon=True)
        self.resource_version: str | None = None
        self.lists = 0
        """How many times the watch listed everything (once at start, then after each 410 Gone)."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        response = self._response
        if response is not None:
            # Unblocks the thread's read; the response may be closing on its own at the same moment.
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                response.shutdown()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                if self.resource_version is None:
                    self._relist()
                self._watch()
                backoff = _BACKOFF_FIRST
            except WatchGone:
                logger.info("%s watch: resourceVersion %s is gone, listing again", self.kind, self.resource_version)
                self.resource_version = None
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if self._stopping.is_set():
                    return
                if isinstance(exc, ApiException) and exc.status == _GONE:
                    self.resource_version = None
                    continue
                logger.warning("%s watch failed (%s); reconnecting in %.1fs", self.kind, exc, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def _relist(self) -> None:
        started = time.monotonic()
        response = self._list(
            self._namespace, label_selector=MANAGED_SELECTOR, _preload_content=False, _request_timeout=(10, 120)
        )
        listing = json.loads(response.data)
        self.lists += 1
        self._on_listed(list(listing.get("items") or []), started)
        self.resource_version = listing.get("metadata", {}).get("resourceVersion") or ""

    def _watch(self) -> None:
        response = self._list(
            self._namespace,
            label_selector=MANAGED_SELECTOR,
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._timeout_seconds,
            _preload_content=False,
            _request_timeout=(10, self._timeout_seconds + 30),
        )
        self._response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stopping.is_set():
                    return
                self._handle(json.loads(line))
        finally:
            self._response = None
            response.release_conn()

    def _handle(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == _GONE:
                raise WatchGone
            raise ApiException(status=obj.get("code"), reason=f"{obj.get('reason')}: {obj.get('message')}")
        version = obj.get("metadata", {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._on_event(kind, obj)
