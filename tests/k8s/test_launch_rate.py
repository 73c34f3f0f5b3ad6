"""A thousand executions queued at once are all launched, none twice, through the client-side rate limit
(`make bench` prints the rate)."""

from __future__ import annotations

import asyncio

from bifrost_devtools.k8s_apiserver import JOBS, SECRETS, ApiServer
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.backends.kubernetes_api import RateLimiter
from control_plane.backends.kubernetes_spec import job_name
from control_plane.settings import Settings
from tests.k8s.conftest import Exits, launch_spec

N = 1000


async def test_a_thousand_launches_at_once_create_each_job_once(
    settings: Settings, apiserver: ApiServer, exits: Exits
) -> None:
    apiserver.direct = True
    backend = KubernetesBackend(settings.model_copy(update={"k8s_qps": 2000.0, "k8s_burst": 50}))
    await backend.start(exits)
    specs = [launch_spec() for _ in range(N)]
    try:
        # Every execution is delivered twice, as a redelivered queue message would be.
        await asyncio.gather(*(backend.launch(spec) for spec in specs + specs))
    finally:
        await backend.stop()

    jobs = {job["metadata"]["name"]: job for job in apiserver.live(JOBS)}
    assert set(jobs) == {job_name(spec.execution_id) for spec in specs}
    assert not any(job["spec"]["suspend"] for job in jobs.values())
    assert len(apiserver.live(SECRETS)) == N
    assert apiserver.creates[JOBS] == N


async def test_the_rate_limiter_lets_a_burst_through_then_queues_the_rest_in_order() -> None:
    limiter = RateLimiter(qps=1000.0, burst=5)
    order: list[int] = []

    async def acquire(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    await asyncio.gather(*(acquire(i) for i in range(20)))
    assert order == list(range(20))
