"""The kubernetes backend, against the emulated API server of the tests (in a process of its own).

Prints the Job launch throughput of 1,000 executions queued at once through the client-side rate limit, the
control plane's memory while it watches those 1,000 live Jobs, and the sync round trip (request to result) of a
trivial workflow on warm runners: `bifrost serve` with a pool of 2, its pods run as local processes by the
emulator's test kubelet (so a pod's start costs a process start, not a container's).

Targets: control plane RSS with 1,000 live Jobs under 250 MB; sync run on warm runners p50 under 50 ms. (A new
runner pod's workspace sync is measured by `bench.workspace_sync`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import kmock

from bench._report import measured
from bench.executions import KEY, percentile, serving
from bifrost_devtools.k8s_apiserver import JOBS, ApiServer
from bifrost_devtools.k8s_kubelet import TestKubelet
from bifrost_devtools.services import free_port, wait_for_port
from control_plane.backends.base import LaunchSpec, RunnerExit
from control_plane.backends.kubernetes import KubernetesBackend
from control_plane.backends.kubernetes_pool import POOL_JOB_PREFIX
from control_plane.settings import Settings

EXECUTIONS = 1_000
QPS = 200.0
BURST = 100
NAMESPACE = "bench"
WARM_CALLS = 30
POOL_SIZE = 2
REFILL_PAUSE_SECONDS = 1.5
"""Between two warm calls: the pool has a waiting pod again (a pod's start is a Python start here)."""
WARM_TARGET_MS = 50
RSS_TARGET_MB = 250
TRIVIAL = """
from bifrost import workflow


@workflow(execution_mode="sync")
def trivial(n: int = 0):
    return {"n": n}
"""


def _serve_apiserver(port: int, with_kubelet: bool = False) -> None:
    async def serve() -> None:
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
        async with ApiServer(direct=True) as server, kmock.Server(server, port=port):
            server["get /bench/creates"] << (lambda: {"jobs": server.creates[JOBS]})
            kubelet = TestKubelet(server)
            if with_kubelet:
                await kubelet.start()
            try:
                await stopping.wait()
            finally:
                await kubelet.stop()  # its pods are processes of this one
                server.end_watches()  # else the server's shutdown waits for each open watch's timeout

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
    launched = measured(
        f"{EXECUTIONS / elapsed:.1f} Jobs/s, {3 * EXECUTIONS / elapsed:.0f} API requests/s ({elapsed:.1f} s) "
        f"at k8s_qps={QPS:g} k8s_burst={BURST} (3 requests per launch); Job creates: {creates}"
    )
    print(f"launch of {EXECUTIONS:,} executions, each delivered twice: {launched}", flush=True)
    memory = measured(
        f"{rss_after:.0f} MB RSS ({rss_before:.0f} MB before; {(rss_after - rss_before) * 1024 / EXECUTIONS:.1f} KB "
        "per execution)",
        f"< {RSS_TARGET_MB} MB",
        rss_after < RSS_TARGET_MB,
    )
    print(f"control plane with {EXECUTIONS:,} live Kubernetes runs watched: {memory}", flush=True)


def _kubeconfig(folder: Path, url: str) -> Path:
    path = folder / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "bench", "cluster": {"server": url}}],
                "users": [{"name": "bench", "user": {"token": "bench"}}],
                "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
                "current-context": "bench",
            }
        )
    )
    return path


@contextlib.contextmanager
def _apiserver(with_kubelet: bool) -> Iterator[str]:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_apiserver, args=(port, with_kubelet), daemon=True
    )
    process.start()
    try:
        wait_for_port(port, timeout=60)  # a spawned interpreter importing kmock, on a busy machine
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.join()


def launch_figures() -> None:
    with _apiserver(with_kubelet=False) as url, tempfile.TemporaryDirectory() as tmp:
        saved = {name: os.environ.pop(name, None) for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
        os.environ["KUBECONFIG"] = str(_kubeconfig(Path(tmp), url))
        try:
            asyncio.run(_run(url))
        finally:
            for name, value in saved.items():
                os.environ.pop(name, None)
                if value is not None:
                    os.environ[name] = value


def warm_sync_figure() -> None:
    """p50 / p95 of sync runs of a trivial workflow that each took a waiting pool pod."""
    with _apiserver(with_kubelet=True) as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        workspace = folder / "workspace"
        workspace.mkdir()
        (workspace / "flows.py").write_text(TRIVIAL)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        env = {
            "KUBECONFIG": str(_kubeconfig(folder, url)),
            "BIFROST_BACKEND": "kubernetes",
            "BIFROST_K8S_NAMESPACE": NAMESPACE,
            "BIFROST_K8S_POOL_SIZE": str(POOL_SIZE),
            # The test kubelet runs pods on this machine: they see the folder workspace as it is.
            "BIFROST_K8S_WORKSPACE_VOLUME_CLAIM": "bench-workspace",
            "BIFROST_DATA_DIR": str(folder / "data"),
            "BIFROST_WORKSPACE_URL": str(workspace),
            "BIFROST_PORT": str(port),
            "BIFROST_API_URL": api_url,
            "BIFROST_BOOTSTRAP_API_KEY": KEY,
        }
        warm: list[float] = []
        with (
            serving(env, api_url, folder / "bifrost-serve.log"),
            httpx.Client(base_url=api_url, headers={"X-Bifrost-Key": KEY}, timeout=60) as api,
        ):
            for n in range(WARM_CALLS):
                time.sleep(REFILL_PAUSE_SECONDS)
                start = time.perf_counter()
                response = api.post("/api/workflows/trivial/execute", json={"parameters": {"n": n}})
                elapsed = (time.perf_counter() - start) * 1000
                if response.status_code != 200 or response.json()["status"] != "Success":
                    raise RuntimeError(f"sync run answered {response.status_code}: {response.text[:300]}")
                execution = api.get(f"/api/executions/{response.json()['execution_id']}").json()
                if str(execution["runner"]["runner_ref"]).startswith(POOL_JOB_PREFIX):
                    warm.append(elapsed)
    if len(warm) < 2:
        raise RuntimeError(f"only {len(warm)} of {WARM_CALLS} sync runs took a warm pool pod")
    p50 = statistics.median(warm)
    figure = measured(
        f"p50 {p50:.1f} ms, p95 {percentile(warm, 95) if len(warm) > 2 else max(warm):.1f} ms "
        f"({len(warm)} of {WARM_CALLS} calls took a pool pod)",
        f"p50 < {WARM_TARGET_MS} ms",
        p50 < WARM_TARGET_MS,
    )
    print(f"Kubernetes sync run on warm runners (pool of {POOL_SIZE}), trivial workflow: {figure}", flush=True)


def main() -> None:
    launch_figures()
    warm_sync_figure()


if __name__ == "__main__":
    main()
