"""Local backend latency: from `launch` to the run's `finished` event, for trivial runs (target: p50 under 25 ms
on 2 cores), sequential ~10 ms runs, and 1,000 runs queued behind a concurrency limit of 20, with the CPU time each
of those cost the processes taking part: this one (the backend, the runners' stand-in API), the NATS server, and
the runner template with every runner it forked."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
from nats.aio.msg import Msg

from bench._report import measured
from bifrost import UserInfo
from bifrost._internal.protocol import EVENTS_SUBJECT_WILDCARD, RunPayload, parse_event
from bifrost_devtools.runner_api import RunnerApi, ServedRunnerApi
from bifrost_devtools.services import NatsServer, running_nats
from bifrost_runner.connection import ensure_streams
from control_plane.backends.base import LaunchSpec, RunnerExit
from control_plane.backends.local import LocalBackend
from control_plane.security.nats_identities import AccountSigner
from control_plane.settings import Settings

TARGET_P50_MS = 25.0
WORKFLOWS = """
    import time
    from bifrost import workflow

    @workflow
    def trivial():
        return {"ok": True}

    @workflow
    def ten_ms():
        time.sleep(0.01)
        return {"ok": True}
"""


class Bench:
    def __init__(
        self, api: RunnerApi, api_url: str, nats: NatsServer, workspace: Path, backend: LocalBackend
    ) -> None:
        self.api = api
        self.api_url = api_url
        self.nats_url = nats.url
        self.signer = AccountSigner(nats.account_seed)
        self.workspace = workspace
        self.backend = backend
        self.finished: dict[str, asyncio.Future[float]] = {}
        self.counter = 0

    async def on_event(self, msg: Msg) -> None:
        event = parse_event(msg.data)
        waiter = self.finished.get(event.execution_id)
        if event.type == "finished" and waiter and not waiter.done():
            waiter.set_result(time.perf_counter())

    async def run(self, function_name: str) -> float:
        """Milliseconds from launch to the finished event."""
        self.counter += 1
        execution_id = f"bench-{self.counter}"
        payload = RunPayload(
            execution_id=execution_id, workflow_name=function_name, file="flows.py", function_name=function_name,
            parameters={}, user=UserInfo(id="bench"), organization=None, timeout_seconds=60,
        )
        token = self.api.register(payload)
        finished = self.finished[execution_id] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        await self.backend.launch(
            LaunchSpec(
                execution_id=execution_id, workflow_name=function_name, org_id=None, token=token,
                timeout_seconds=60, api_url=self.api_url, nats_url=self.nats_url, workspace_dir=str(self.workspace),
                payload=payload,
                nats_credentials=self.signer.runner(execution_id, datetime.now(UTC) + timedelta(minutes=5)),
            )
        )
        done: float = await asyncio.wait_for(finished, 60)
        del self.finished[execution_id]
        return (done - started) * 1000


def _cpu_seconds(pid: int) -> float:
    """CPU time of process `pid` and of its children that ended (theirs include their own ended children's)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    utime, stime, cutime, cstime = (int(field) for field in stat[stat.rindex(")") + 2 :].split()[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_seconds(nats_server: NatsServer, backend: LocalBackend) -> float:
    """CPU time of the processes a local run goes through: this one, the NATS server, the template and its
    runners (those reaped: the few still ending are left out)."""
    assert nats_server.process is not None and backend.template_pid is not None
    return time.process_time() + _cpu_seconds(nats_server.process.pid) + _cpu_seconds(backend.template_pid)


def _summary(label: str, latencies: list[float], target_p50_ms: float | None = None) -> str:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    p50 = statistics.median(ordered)
    figure = f"n={len(ordered)} p50={p50:.1f} ms p95={p95:.1f} ms max={ordered[-1]:.1f} ms"
    if target_p50_ms is None:
        return f"{label}: {measured(figure)}"
    return f"{label}: {measured(figure, f'p50 < {target_p50_ms:.0f} ms', p50 < target_p50_ms)}"


async def _measure(tmp: Path, nats_server: NatsServer, served: ServedRunnerApi) -> None:
    workspace = tmp / "workspace"
    workspace.mkdir()
    (workspace / "flows.py").write_text(textwrap.dedent(WORKFLOWS))
    nc = await nats.connect(nats_server.url, user_credentials=nats_server.admin_credentials())
    await ensure_streams(nc.jetstream())

    async def on_exit(_: RunnerExit) -> None:
        return None

    backend = LocalBackend(Settings(data_dir=tmp / "data", workspace_url=str(workspace), local_pool_size=2))
    await backend.start(on_exit)
    bench = Bench(served.api, served.url, nats_server, workspace, backend)
    await nc.subscribe(EVENTS_SUBJECT_WILDCARD, cb=bench.on_event)
    try:
        for _ in range(5):
            await bench.run("trivial")
        cpu_before = _tree_cpu_seconds(nats_server, backend)
        trivial = [await bench.run("trivial") for _ in range(40)]
        cpu = (_tree_cpu_seconds(nats_server, backend) - cpu_before) / len(trivial) * 1000
        print(_summary("trivial run, sequential", trivial, TARGET_P50_MS), flush=True)
        print(f"trivial run, sequential: {measured(f'{cpu:.1f} ms CPU per run')}", flush=True)
        ten = [await bench.run("ten_ms") for _ in range(40)]
        print(_summary("~10 ms run, sequential", ten), flush=True)

        limit = asyncio.Semaphore(20)

        async def queued() -> float:
            async with limit:
                return await bench.run("trivial")

        started, cpu_before = time.perf_counter(), _tree_cpu_seconds(nats_server, backend)
        many = await asyncio.gather(*(queued() for _ in range(1000)))
        elapsed = time.perf_counter() - started
        cpu = (_tree_cpu_seconds(nats_server, backend) - cpu_before) / len(many) * 1000
        print(_summary("1,000 queued trivial runs, 20 at once", many), flush=True)
        figure = f"{1000 / elapsed:.0f} runs/s, {cpu:.1f} ms CPU per run"
        print(f"1,000 queued trivial runs: {measured(figure)}", flush=True)
    finally:
        await backend.stop()
        await nc.close()


def main() -> None:
    served = ServedRunnerApi(RunnerApi())
    served.start()
    try:
        with tempfile.TemporaryDirectory() as folder, running_nats(Path(folder), identities=True) as server:
            asyncio.run(_measure(Path(folder), server, served))
    finally:
        served.stop()


if __name__ == "__main__":
    main()
