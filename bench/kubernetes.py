"""The kubernetes backend at scale, against the emulated API server of the tests (in a process of its own).

Prints the Job launch throughput of 1,000 executions queued at once through the client-side rate limit, and
the control plane's memory while it watches those 1,000 live Jobs.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import kmock

from bifrost_devtools.k8s_apiserver import JOBS, ApiServer
from bifrost_devtools.services import free_port, wait_for_port
from control_plane.backends.base import LaunchSpec, RunnerExit
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.settings import Settings

EXECUTIONS = 1_000
QPS = 200.0
BURST = 100
NAMESPACE = "bench"


def _serve_apiserver(port: int) -> None:
    async def serve() -> None:
        async with ApiServer(direct=True) as server, kmock.Server(server, port=port):
            server["get /bench/creates"] << (lambda: {"jobs": server.creates[JOBS]})
            await asyncio.Event().wait()

    asyncio.run(serve())


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _spec() -> LaunchSpec:
    return LaunchSpec(
        execution_id=str(uuid.uuid4()),
        workflow_name="export_devices",
        org_id="org-1",
        token=uuid.uuid4().hex,
        timeout_seconds=1800,
        api_url="http://bifrost:8000",
        nats_url="nats://nats:4222",
        workspace_dir="/workspace",
    )


async def _run(url: str) -> None:
    async def ignore(_: RunnerExit) -> None:
        return None

    settings = Settings(k8s_namespace=NAMESPACE, k8s_qps=QPS, k8s_burst=BURST)
    backend = KubernetesBackend(settings)
    await backend.start(ignore)
    specs = [_spec() for _ in range(EXECUTIONS)]
    rss_before = _rss_mb()
    started = time.perf_counter()
    await asyncio.gather(*(backend.launch(spec) for spec in specs + specs))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(2.0)  # the shared watch delivers the 1,000 Jobs
    rss_after = _rss_mb()
    await backend.stop()
    async with httpx.AsyncClient() as client:
        creates = (await client.get(f"{url}/bench/creates")).json()["jobs"]
    print(f"launched {EXECUTIONS} executions (each delivered twice) in {elapsed:.1f}s: "
          f"{EXECUTIONS / elapsed:.1f} Jobs/s, {3 * EXECUTIONS / elapsed:.0f} API requests/s "
          f"at k8s_qps={QPS:g} k8s_burst={BURST} (3 requests per launch); Job creates: {creates}")
    print(f"control plane memory: {rss_before:.0f} MB before, {rss_after:.0f} MB with {EXECUTIONS} live Jobs "
          f"watched ({(rss_after - rss_before) * 1024 / EXECUTIONS:.1f} KB per execution)")


def main() -> None:
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve_apiserver, args=(port,), daemon=True)
    server.start()
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = Path(tmp) / "kubeconfig"
            kubeconfig.write_text(json.dumps({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "bench", "cluster": {"server": url}}],
                "users": [{"name": "bench", "user": {"token": "bench"}}],
                "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
                "current-context": "bench",
            }))
            saved = {name: os.environ.pop(name, None) for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
            os.environ["KUBECONFIG"] = str(kubeconfig)
            try:
                asyncio.run(_run(url))
            finally:
                for name, value in saved.items():
                    os.environ.pop(name, None)
                    if value is not None:
                        os.environ[name] = value
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
