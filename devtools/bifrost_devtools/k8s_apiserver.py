"""kmock's KubernetesEmulator (a real HTTP server speaking the Kubernetes API), completed with what a real API
server does and the backend relies on: uids, creation timestamps, resourceVersions, label selectors, watches
that resume from a resourceVersion (410 Gone once it is compacted away), server-side watch timeouts, and the
garbage collector deleting what a deleted object owned. Custom resources are served once their
CustomResourceDefinition is created (404 before, as on a cluster without it), and listed as a Table with the
CRD's printer columns for clients that ask for one (`kubectl get`). Tests can also end every open watch at once.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import datetime
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock

JOBS = kmock.resource("batch/v1/jobs")
PODS = kmock.resource("v1/pods")
SECRETS = kmock.resource("v1/secrets")
CRDS = kmock.resource("apiextensions.k8s.io/v1/customresourcedefinitions")


@dataclass(frozen=True)
class Change:
    version: int
    resource: kmock.resource
    type: str
    object: dict[str, Any]


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


_SINGLE_OBJECT_ACTIONS = frozenset({
    kmock.action.CREATE, kmock.action.FETCH, kmock.action.UPDATE, kmock.action.DELETE,
})
_CHANGE_TYPES: dict[kmock.action | None, str] = {
    kmock.action.CREATE: "ADDED", kmock.action.UPDATE: "MODIFIED", kmock.action.DELETE: "DELETED",
}


def _is_custom(resource: kmock.resource) -> bool:
    """Whether a resource comes from a CRD rather than Kubernetes itself (whose groups are single words or end
    in .k8s.io)."""
    group = resource.group or ""
    return "." in group and not group.endswith(".k8s.io")


def _cell(obj: dict[str, Any], column: dict[str, Any]) -> Any:
    """The value of a printer column's simple JSONPath (`.a.b`) in `obj`; a date as its age."""
    value: Any = obj
    for key in column["jsonPath"].lstrip(".").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return None
    if column["type"] == "date":
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return _age(datetime.datetime.now(tz=datetime.UTC) - moment)
    return value


def _age(elapsed: datetime.timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def now_timestamp() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    _version: int = attrs.field(default=0, init=False)
    _changes: list[Change] = attrs.field(factory=list, init=False)
    _compacted_below: int = attrs.field(default=0, init=False)
    _changed: asyncio.Condition = attrs.field(factory=asyncio.Condition, init=False)
    _watch_generation: int = attrs.field(default=0, init=False)
    creates: collections.Counter[kmock.resource] = attrs.field(factory=collections.Counter, init=False)
    """Create requests per resource, answered or refused (409 AlreadyExists)."""
    _definitions: dict[tuple[str, str], dict[str, Any]] = attrs.field(factory=dict, init=False)
    """The served version of each custom resource, by (group, plural), from its CRD."""
    direct: bool = False
    """Serve reads and writes of single objects straight from the store, skipping kmock's reaction matching
    (which compares every request with all earlier ones: too slow for thousands of objects). Reactions, and
    so fault injection, then apply to lists and watches only."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for resource, kind in ((JOBS, "Job"), (PODS, "Pod"), (SECRETS, "Secret")):
            self.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=True)
        self.resources[CRDS] = kmock.ResourceInfo(kind="CustomResourceDefinition", namespaced=False)

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource is None or request.subresource == "log":
            return await super()._handle(request)
        if _is_custom(request.resource) and request.resource.plural:
            version = self._definitions.get((request.resource.group or "", request.resource.plural or ""))
            if version is None or version["name"] != request.resource.version:
                return self._render_status(404, "NotFound")
            if request.action == kmock.action.LIST and "as=Table" in request.headers.get("Accept", ""):
                return aiohttp.web.json_response(self._table(request, version))
        if request.resource == CRDS and request.action == kmock.action.CREATE and isinstance(request.data, dict):
            self._define(request.data)
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            self.creates[request.resource] += 1
            metadata = request.data.setdefault("metadata", {})
            metadata.setdefault("namespace", request.namespace)
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", now_timestamp())
        key = (request.resource, request.namespace or (request.data or {}).get("metadata", {}).get("namespace"),
               request.name or (request.data or {}).get("metadata", {}).get("name"))
        try:
            if self.direct and request.action in _SINGLE_OBJECT_ACTIONS:
                self._requests.remove(request)
                return self._serve_directly(request, key)
            return await super()._handle(request)
        finally:
            await self._record(request, key)

    def _serve_directly(self, request: kmock.Request, key: Any) -> aiohttp.web.StreamResponse:
        stored = self.objects[key] if key in self.objects else None  # noqa: SIM401 - no .get() on it
        exists = stored is not None and not stored.deleted
        if request.action == kmock.action.CREATE:
            if exists:
                return self._render_status(409, "AlreadyExists")
            if stored is None:
                self.objects[key] = request.data
            else:
                stored.create(request.data)
            return aiohttp.web.json_response(self.objects[key].raw, status=201)
        if stored is None or not exists:
            return self._render_status(404, "NotFound")
        if request.action == kmock.action.UPDATE:
            stored.patch(request.data)
        elif request.action == kmock.action.DELETE:
            stored.delete()
            return aiohttp.web.json_response(stored.last.raw)
        return aiohttp.web.json_response(stored.raw)

    def _define(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        [served] = [version for version in spec["versions"] if version.get("storage")]
        resource = kmock.resource(f"{spec['group']}/{served['name']}/{spec['names']['plural']}")
        names = spec["names"]
        self.resources[resource] = kmock.ResourceInfo(
            kind=names["kind"], singular=names.get("singular"), namespaced=spec["scope"] == "Namespaced",
            verbs={"create", "get", "list", "watch", "patch", "update", "delete"},
            shortnames=set(names.get("shortNames", [])), categories=set(names.get("categories", [])),
        )
        self._definitions[(spec["group"], spec["names"]["plural"])] = served

    def _table(self, request: kmock.Request, version: dict[str, Any]) -> dict[str, Any]:
        """The objects a list request asks for, as the Table the API server answers `kubectl get` with: a Name
        column, then the CRD's printer columns (dates as ages, as kubectl shows them)."""
        columns = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}] + [
            {"name": column["name"], "type": column["type"], "format": column.get("format", ""),
             "description": column.get("description", ""), "priority": column.get("priority", 0)}
            for column in version.get("additionalPrinterColumns", [])
        ]
        items = [
            obj.raw for (resource, _, _), obj in list(self.objects.items())
            if not obj.deleted and self._visible(request, resource, obj.raw)
        ]
        rows = [{
            "cells": [item["metadata"]["name"]] + [
                _cell(item, column) for column in version.get("additionalPrinterColumns", [])
            ],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]},
        } for item in items]
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(self._version)},
                "columnDefinitions": columns, "rows": rows}

    @staticmethod
    def _render_status(code: int, reason: str) -> aiohttp.web.StreamResponse:
        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
        return aiohttp.web.json_response(status, status=code)

    async def _record(self, request: kmock.Request, key: Any) -> None:
        change_type = _CHANGE_TYPES.get(request.action)
        if change_type is None or key not in self.objects:
            return
        obj = self.objects[key]
        if obj.deleted != (change_type == "DELETED"):
            return
        async with self._changed:
            # Versions are assigned here, in the order the changes are recorded, so the history stays sorted.
            version = self._next_version()
            if change_type == "DELETED":
                raw = dict(obj.last.raw)
                raw["metadata"] = dict(raw.get("metadata", {}), resourceVersion=str(version))
            else:
                raw = obj.raw
                raw["metadata"]["resourceVersion"] = str(version)  # the stored object's own metadata
            self._changes.append(Change(version, key[0], change_type, raw))
            self._changed.notify_all()
        if change_type == "DELETED":
            await self._collect_garbage(raw["metadata"].get("uid"))

    async def _collect_garbage(self, owner_uid: str | None) -> None:
        """Delete what the deleted object owned, as Kubernetes' garbage collector does."""
        if not owner_uid:
            return
        for (resource, namespace, name), obj in list(self.objects.items()):
            if obj.deleted:
                continue
            owners = obj.raw.get("metadata", {}).get("ownerReferences") or []
            if any(owner.get("uid") == owner_uid for owner in owners):
                path = f"/api/v1/namespaces/{namespace}/{resource.plural}/{name}"
                if resource.group:
                    path = f"/apis/{resource.group}/{resource.version}/namespaces/{namespace}/{resource.plural}/{name}"
                async with self.delete(path) as response:
                    await response.read()

    def _visible(self, request: kmock.Request, resource: Any, obj: dict[str, Any]) -> bool:
        metadata = obj.get("metadata", {})
        if resource != request.resource:
            return False
        if request.namespace is not None and metadata.get("namespace") != request.namespace:
            return False
        return _selector_matches(request.params.get("labelSelector", ""), metadata.get("labels") or {})

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        items = [
            obj.raw for (resource, _, _), obj in list(self.objects.items())
            if not obj.deleted and self._visible(request, resource, obj.raw)
        ]
        return {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._version)},
                "items": items}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        yield b""
        generation = self._watch_generation
        timeout = float(request.params.get("timeoutSeconds", "3600"))
        deadline = asyncio.get_running_loop().time() + timeout
        since = request.params.get("resourceVersion", "")
        if since in ("", "0"):
            for (resource, _, _), obj in list(self.objects.items()):
                if not obj.deleted and self._visible(request, resource, obj.raw):
                    yield {"type": "ADDED", "object": obj.raw}
            position = int(self._version)
        else:
            position = int(since)
            if position < self._compacted_below:
                yield {"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired",
                    "message": f"too old resource version: {position} ({self._compacted_below})",
                }}
                return
        while generation == self._watch_generation:
            pending = self._changes_after(position)
            for change in pending:
                position = change.version
                if self._visible(request, change.resource, change.object):
                    yield {"type": change.type, "object": change.object}
            if pending:
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            # Woken by a change, or every half second to notice `end_watches()`.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changes_recorded_after(position), timeout=min(remaining, 0.5))

    async def _changes_recorded_after(self, version: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._changes_after(version)))

    def _changes_after(self, version: int) -> list[Change]:
        return self._changes[bisect.bisect_right(self._changes, version, key=lambda c: c.version):]

    async def changes(self) -> AsyncIterator[Change]:
        """Every change from now on, in order (for the test kubelet)."""
        position = self._version
        while True:
            pending = self._changes_after(position)
            for change in pending:
                position = change.version
                yield change
            if not pending:
                await self._changes_recorded_after(position)

    async def wait_until(self, condition: Callable[[], bool], within: float = 60.0) -> None:
        """Until `condition()` holds, checked after every change; TimeoutError after `within` seconds."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(condition)

    def compact(self) -> None:
        """Forget the change history, as etcd compaction does: resuming a watch from before now gets 410 Gone."""
        self._compacted_below = self._version + 1
        self._changes.clear()

    def end_watches(self) -> None:
        """Close every open watch stream (a load balancer or API server restart does this)."""
        self._watch_generation += 1

    def object(self, resource: kmock.resource, namespace: str, name: str) -> dict[str, Any] | None:
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        raw: dict[str, Any] = self.objects[key].raw
        return raw

    def live(self, resource: kmock.resource) -> list[dict[str, Any]]:
        return [obj.raw for (res, _, _), obj in list(self.objects.items()) if res == resource and not obj.deleted]

