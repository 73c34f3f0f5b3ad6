"""Warm runners for the `kubernetes` backend: a few pool pods (a Job each) waiting for one sync run apiece.

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
from control_plane.backends.base import ClaimChannel, LaunchSpec, RunnerWorkspace
from control_plane.backends.kubernetes_api import KubernetesApi
from control_plane.backends.kubernetes_diagnosis import job_finished
from control_plane.backends.kubernetes_spec import (
    WORKSPACE_MOUNT,
    build_pool_job,
    build_pool_secret,
    execution_id_of,
    is_credential,
    pool_of,
)
from control_plane.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_POOL = "default"
"""The one resource class with a pool: the default resources. A workflow with its own gets a Job per run."""
POOL_JOB_PREFIX = "bifrost-pool-"
CLAIM_TIMEOUT_SECONDS = 2.0
"""How long a claim waits for the pod's answer before the run falls back to a Job of its own."""


@dataclass
class _Waiting:
    name: str
    since: float
    pod: dict[str, Any] | None = None

    @property
    def ready(self) -> bool:
        return bool((self.pod or {}).get("status", {}).get("phase") == "Running")


@dataclass
class Taken:
    """A pool pod chosen to take an execution."""

    job_name: str
    pod: dict[str, Any] | None
    since: float


class RunnerPool:
    def __init__(self, settings: Settings, api: KubernetesApi) -> None:
        self._settings = settings
        self._api = api
        self._claims: ClaimChannel | None = None
        self._waiting: dict[str, _Waiting] = {}
        self._creating = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._claims is not None

    def waiting(self) -> list[str]:
        """The Job names of the pool pods waiting for a run."""
        return list(self._waiting)

    def start(self, claims: ClaimChannel | None) -> None:
        if claims is None or self._settings.k8s_pool_size == 0:
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

    def takes(self, spec: LaunchSpec) -> bool:
        """Whether a pool pod may run `spec`: a sync run of the default resources."""
        return self.enabled and spec.warm and spec.resources is None and spec.memory_limit_mb is None

    def choose(self, spec: LaunchSpec) -> Taken | None:
        """The ready pool pod that is to take `spec`'s run (it leaves the pool now); None when `spec` may not be
        run by a pool pod (see `takes`) or none is ready."""
        ready = [waiting for waiting in self._waiting.values() if waiting.ready]
        if not self.takes(spec) or not ready:
            return None
        chosen = min(ready, key=lambda waiting: waiting.since)
        del self._waiting[chosen.name]
        return Taken(chosen.name, chosen.pod, chosen.since)

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
                self._waiting[taken.job_name] = _Waiting(taken.job_name, taken.since, taken.pod)
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
        for _ in range(self._settings.k8s_pool_size - len(self._waiting) - self._creating):
            self._creating += 1
            self._spawn(self._create())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _create(self) -> None:
        try:
            await self._create_pod_job()
        except Exception:
            logger.exception("could not create a pool pod")
        finally:
            self._creating -= 1

    async def _create_pod_job(self) -> None:
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
        job = await self._api.create_job(build_pool_job(name, DEFAULT_POOL, plain, credentials, self._settings))
        self._waiting[name] = _Waiting(name, time.monotonic())
        try:
            uid = job.get("metadata", {}).get("uid", "")
            await self._api.create_secret(build_pool_secret(name, DEFAULT_POOL, credentials, self._settings, uid))
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
