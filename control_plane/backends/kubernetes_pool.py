"""Warm runners for the `kubernetes` backend: a few pool pods (a Job each) waiting for one sync run apiece.

There is a pool per resource class: `default` (`k8s_pool_size` pods with the default resources, for workflows
without resources of their own) and one per `k8s_pool_classes` entry, whose pods have its resources and take the
runs of workflows that get exactly those (the same requests and limits, however written).

A pool pod runs `python -m bifrost_runner.pool`: it connects to NATS under an identity of its own (in its Job's
Secret, like an execution's token) that may only subscribe to its own claim subject, and waits there. A claim is
a NATS request carrying the execution's environment (id, token, NATS identity) and payload, so nothing of the
execution is ever in a pod or Job spec; the pod answers the first and only claim its subscription lets through,
and the control plane then labels the pod and its Job with the execution. NATS rather than the HTTP API carries
the claim because every control-plane replica reaches every pod through it, and its permissions already keep one
pod from reading another's claim. A pod that waited `k8s_pool_wait_seconds` is replaced; after a control-plane
restart the pods still waiting are deleted (their identities were minted by the process that is gone) and the
pool is made anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from bifrost._internal.protocol import PoolClaim, pool_subject
from control_plane.backends.base import ClaimChannel, LaunchSpec, RunnerResources, RunnerWorkspace
from control_plane.backends.kubernetes_api import KubernetesApi
from control_plane.backends.kubernetes_diagnosis import job_finished
from control_plane.backends.kubernetes_spec import (
    WORKSPACE_MOUNT,
    build_pool_job,
    build_pool_secret,
    execution_id_of,
    is_credential,
    pod_resources,
    pool_of,
)
from control_plane.settings import DEFAULT_POOL_CLASS, Settings

logger = logging.getLogger(__name__)

POOL_JOB_PREFIX = "bifrost-pool-"
CLAIM_TIMEOUT_SECONDS = 2.0
"""How long a claim waits for the pod's answer before the run falls back to a Job of its own."""


@dataclass(frozen=True)
class _Class:
    """One pool: its name (the pods' pool label), size and resources (None: the defaults)."""

    name: str
    size: int
    resources: RunnerResources | None


@dataclass
class _Waiting:
    name: str
    pool: str
    since: float
    pod: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        return bool((self.pod or {}).get("status", {}).get("phase") == "Running")


@dataclass
class Taken:
    """A pool pod chosen to take an execution."""

    job_name: str
    pool: str
    pod: dict[str, Any] | None
    since: float


class RunnerPool:
    def __init__(self, settings: Settings, api: KubernetesApi) -> None:
        self._settings = settings
        self._api = api
        self._claims: ClaimChannel | None = None
        classes = [_Class(DEFAULT_POOL_CLASS, settings.k8s_pool_size, None)] + [
            _Class(name, pool.size, RunnerResources.of_workflow(pool.resources))
            for name, pool in settings.k8s_pool_classes.items()
        ]
        self._classes = [pool for pool in classes if pool.size > 0]
        self._by_pod_resources: dict[tuple[float, float | None, int, int], str] = {}
        for pool in self._classes:
            same = self._by_pod_resources.setdefault(pod_resources(pool.resources, None, settings), pool.name)
            if same != pool.name:
                raise ValueError(
                    f"the runner pools {same!r} and {pool.name!r} would have pods of the same resources: give "
                    "each pool class (BIFROST_K8S_POOL_CLASSES) resources of its own"
                )
        self._waiting: dict[str, _Waiting] = {}
        self._creating = dict.fromkeys((pool.name for pool in self._classes), 0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._claims is not None

    def waiting(self) -> list[str]:
        """The Job names of the pool pods waiting for a run."""
        return list(self._waiting)

    def start(self, claims: ClaimChannel | None) -> None:
        if claims is None or not self._classes:
            return
        self._claims = claims
        self._sweeper = asyncio.create_task(self._sweep())
        self.refill()

    async def stop(self) -> None:
        """Stop refilling; the pods still waiting are left (a restart deletes them)."""
        self._claims = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    def pool_for(self, spec: LaunchSpec) -> str | None:
        """The pool whose pods may run `spec`: a sync run whose pod would get that pool's resources."""
        if not self.enabled or not spec.warm:
            return None
        return self._by_pod_resources.get(pod_resources(spec.resources, spec.memory_limit_mb, self._settings))

    def choose(self, spec: LaunchSpec) -> Taken | None:
        """The ready pool pod that is to take `spec`'s run (it leaves the pool now); None when `spec` may not be
        run by a pool pod (see `pool_for`) or none of its pool is ready."""
        pool = self.pool_for(spec)
        ready = [waiting for waiting in self._waiting.values() if waiting.ready and waiting.pool == pool]
        if pool is None or not ready:
            return None
        chosen = min(ready, key=lambda waiting: waiting.since)
        del self._waiting[chosen.name]
        return Taken(chosen.name, chosen.pool, chosen.pod, chosen.since)

    async def claim(self, taken: Taken, spec: LaunchSpec, claim_env: dict[str, str]) -> bool:
        """Hand `spec`'s execution to the pod `choose` picked; False when it did not take it (the run then gets a
        Job of its own)."""
        claims = self._claims
        if claims is None:  # stopping
            return False
        claim = PoolClaim(env=claim_env, payload=spec.payload)
        try:
            await claims.nats.request(
                pool_subject(taken.job_name), claim.model_dump_json().encode(), timeout=CLAIM_TIMEOUT_SECONDS
            )
        except NoRespondersError:
            # Running, but not listening yet: it may still take the next run.
            if time.monotonic() - taken.since < self._settings.k8s_pool_wait_seconds:
                self._waiting[taken.job_name] = _Waiting(taken.job_name, taken.pool, taken.since, taken.pod)
            return False
        except (NatsTimeoutError, TimeoutError):
            # It may or may not have taken the claim: it must not run beside the Job the run now gets.
            logger.warning("pool pod %s did not answer its claim; deleting it", taken.job_name)
            self._spawn(self._delete(taken.job_name))
            self.refill()
            return False
        self.refill()
        return True

    def job_event(self, kind: str, job: dict[str, Any]) -> None:
        """A Job of the pool that took no execution changed."""
        name = job.get("metadata", {}).get("name", "")
        if name in self._waiting and (kind == "DELETED" or job_finished(job)):
            del self._waiting[name]
            self.refill()

    def pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        """A pod of the pool that took no execution changed."""
        waiting = self._waiting.get(pod.get("metadata", {}).get("labels", {}).get("job-name", ""))
        if waiting is None:
            return
        if kind == "DELETED" or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            del self._waiting[waiting.name]
            self._spawn(self._delete(waiting.name))
            self.refill()
            return
        waiting.pod = pod

    async def reconcile(self, jobs: list[dict[str, Any]]) -> None:
        """After a restart: delete the pool's Jobs that wait for a run and are not this process's own."""
        for job in jobs:
            name = job["metadata"]["name"]
            if pool_of(job) is not None and execution_id_of(job) is None and name not in self._waiting:
                await self._delete(name)

    def refill(self) -> None:
        if self._claims is None:
            return
        for pool in self._classes:
            waiting = sum(1 for pod in self._waiting.values() if pod.pool == pool.name)
            for _ in range(pool.size - waiting - self._creating[pool.name]):
                self._creating[pool.name] += 1
                self._spawn(self._create(pool))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _create(self, pool: _Class) -> None:
        try:
            await self._create_pod_job(pool)
        except Exception:
            logger.exception("could not create a pod of the pool %s", pool.name)
        finally:
            self._creating[pool.name] -= 1

    async def _create_pod_job(self, pool: _Class) -> None:
        claims = self._claims
        if claims is None:
            return
        name = f"{POOL_JOB_PREFIX}{secrets.token_hex(6)}"
        wait_seconds = self._settings.k8s_pool_wait_seconds
        env = {
            "BIFROST_API_URL": self._settings.api_url,
            "BIFROST_NATS_URL": claims.nats_url,
            "BIFROST_POOL_SUBJECT": pool_subject(name),
            # The pod gives up a little after the control plane would have replaced it.
            "BIFROST_POOL_WAIT_SECONDS": f"{wait_seconds + 60:g}",
            **RunnerWorkspace.from_settings(self._settings).runner_env(),
            "BIFROST_WORKSPACE_CACHE_DIR": WORKSPACE_MOUNT,
        }
        if claims.signer is not None:
            # Valid for its wait; a claim gives the run an identity of its own.
            expires_at = datetime.now(UTC) + timedelta(seconds=wait_seconds + 120)
            identity = claims.signer.pool_runner(name, expires_at)
            env |= {"BIFROST_POOL_NATS_JWT": identity.jwt, "BIFROST_POOL_NATS_SEED": identity.seed}
        credentials = {key: value for key, value in env.items() if is_credential(key)}
        plain = {key: value for key, value in env.items() if key not in credentials}
        job = await self._api.create_job(
            build_pool_job(name, pool.name, pool.resources, plain, credentials, self._settings)
        )
        self._waiting[name] = _Waiting(name, pool.name, time.monotonic())
        try:
            uid = job.get("metadata", {}).get("uid", "")
            await self._api.create_secret(build_pool_secret(name, pool.name, credentials, self._settings, uid))
            await self._api.patch_job(name, {"spec": {"suspend": False}})
        except BaseException:
            self._waiting.pop(name, None)
            await self._delete(name)
            raise

    async def _sweep(self) -> None:
        """Replace the pods that waited too long."""
        limit = self._settings.k8s_pool_wait_seconds
        while True:
            await asyncio.sleep(min(5.0, limit / 4))
            for waiting in list(self._waiting.values()):
                if time.monotonic() - waiting.since >= limit:
                    del self._waiting[waiting.name]
                    logger.info("pool pod %s waited %.0f s without a run: replacing it", waiting.name, limit)
                    self._spawn(self._delete(waiting.name))
            self.refill()

    async def _delete(self, name: str) -> None:
        try:
            await self._api.delete_job(name, "Background")
        except Exception:
            logger.exception("could not delete the pool Job %s", name)
