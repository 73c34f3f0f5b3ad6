"""Calls to the Kubernetes API from the event loop: the official (synchronous) client on a small thread pool,
behind a client-side rate limit (QPS and burst), with retries of what a busy API server answers (429, 5xx,
connection errors). Objects go in and come out as plain dicts, as the API serves them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from control_plane.backends.kubernetes_runs import GROUP, PLURAL, VERSION
from control_plane.backends.kubernetes_spec import MANAGED_SELECTOR
from control_plane.settings import Settings

logger = logging.getLogger(__name__)

_MAX_RETRY_DELAY = 5.0
_REQUEST_TIMEOUT = (10.0, 60.0)


def load_api_client(pool_size: int) -> client.ApiClient:
    """A client for the cluster we run in, or else for the kubeconfig named by KUBECONFIG (or ~/.kube/config)."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def _retryable(exc: BaseException) -> bool:
    """What a busy or restarting API server answers: worth another try."""
    if isinstance(exc, ApiException):
        return exc.status == 429 or (exc.status or 0) >= 500
    return isinstance(exc, urllib3.exceptions.HTTPError | OSError)


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        return float(headers.get("Retry-After", ""))
    except ValueError:
        return None


class RateLimiter:
    """A token bucket: `burst` requests at once, then `qps` per second. Waiters are served in order."""

    def __init__(self, qps: float, burst: int) -> None:
        self._qps = qps
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._qps)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._qps)


class KubernetesApi:
    """The handful of calls the backend makes, each rate-limited, retried and run off the event loop."""

    def __init__(self, settings: Settings, api_client: client.ApiClient) -> None:
        self.namespace = settings.k8s_namespace
        self.api_client = api_client
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._limiter = RateLimiter(settings.k8s_qps, settings.k8s_burst)
        self._retry_seconds = settings.k8s_api_retry_seconds
        self._executor = ThreadPoolExecutor(settings.k8s_api_workers, thread_name_prefix="bifrost-k8s-api")

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.api_client.close()  # type: ignore[no-untyped-call]

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`method(*args, **kwargs)` in a worker thread; the JSON it answers, decoded."""
        kwargs.update(_preload_content=False, _request_timeout=_REQUEST_TIMEOUT)
        loop = asyncio.get_running_loop()
        give_up_at = time.monotonic() + self._retry_seconds
        attempt = 0
        while True:
            await self._limiter.acquire()
            try:
                response = await loop.run_in_executor(self._executor, lambda: method(*args, **kwargs))
                return json.loads(response.data or b"null")
            except Exception as exc:
                delay = min(_retry_after(exc) or 0.1 * 2**attempt, _MAX_RETRY_DELAY)
                if not _retryable(exc) or time.monotonic() + delay > give_up_at:
                    raise
                attempt += 1
                logger.warning("Kubernetes API call %s failed (%s); retrying in %.1fs", method.__name__, exc, delay)
                await asyncio.sleep(delay)

    async def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(self.batch.create_namespaced_job, self.namespace, body)
        return result

    async def read_job(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(self.batch.read_namespaced_job, name, self.namespace)
        return result

    async def patch_job(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(self.batch.patch_namespaced_job, name, self.namespace, patch)
        return result

    async def delete_job(self, name: str, propagation: str) -> None:
        """Delete a Job and what it owns; a Job that is already gone is fine."""
        try:
            await self._call(self.batch.delete_namespaced_job, name, self.namespace, propagation_policy=propagation)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def list_workflow_runs(self, namespace: str, **kwargs: Any) -> Any:
        """List (or watch) WorkflowRuns as the shared watch lists Jobs and pods."""
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kwargs)

    async def workflow_runs_served(self) -> bool:
        """Whether the API server serves WorkflowRuns (their CRD is installed)."""
        try:
            await self._call(self.list_workflow_runs, self.namespace, label_selector=MANAGED_SELECTOR, limit=1)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def create_workflow_run(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            self.custom.create_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    async def read_workflow_run(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    async def patch_workflow_run(self, name: str, patch: dict[str, Any]) -> None:
        await self._call(
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            patch,
            _content_type="application/merge-patch+json",
        )

    async def delete_workflow_run(self, name: str) -> None:
        """Delete the WorkflowRun; its Job goes with it (the garbage collector deletes what it owns)."""
        try:
            await self._call(
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
                propagation_policy="Background",
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def create_secret(self, body: dict[str, Any]) -> None:
        await self._call(self.core.create_namespaced_secret, self.namespace, body)

    async def list_jobs(self) -> list[dict[str, Any]]:
        result = await self._call(self.batch.list_namespaced_job, self.namespace, label_selector=MANAGED_SELECTOR)
        return list(result.get("items") or [])

    async def list_pods(self, selector: str = MANAGED_SELECTOR) -> list[dict[str, Any]]:
        result = await self._call(self.core.list_namespaced_pod, self.namespace, label_selector=selector)
        return list(result.get("items") or [])

    async def pod_log_tail(self, pod: str, container: str, lines: int) -> str:
        """The last `lines` lines the container printed."""
        loop = asyncio.get_running_loop()
        await self._limiter.acquire()
        response = await loop.run_in_executor(
            self._executor,
            lambda: self.core.read_namespaced_pod_log(
                pod,
                self.namespace,
                container=container,
                tail_lines=lines,
                _preload_content=False,
                _request_timeout=_REQUEST_TIMEOUT,
            ),
        )
        return bytes(cast(urllib3.BaseHTTPResponse, response).data).decode(errors="replace")
