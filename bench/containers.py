"""A run from launch to finished on the podman backend (a fresh container per execution, from the runner image
built as the tests build it) next to the local backend (a process forked from a warm template): `bifrost serve` in
its own process with its embedded NATS, the sync round trip of a trivial workflow (request to result), p50 / p95
over the same number of runs after a warm-up."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench._report import measured, print_figures
from bench.executions import KEY, percentile, run_sync, serving
from bifrost_devtools import images
from bifrost_devtools.services import free_port
from control_plane.settings import Settings

RUNS = 30
WARM_UP = 3

WORKFLOWS = """
from bifrost import workflow


@workflow(execution_mode="sync")
def trivial(n: int = 0):
    return {"n": n}
"""


def round_trips(tmp: Path, backend: dict[str, str]) -> str:
    workspace = tmp / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "flows.py").write_text(WORKFLOWS)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    env = images.podman_environment() | {
        "BIFROST_DATA_DIR": str(tmp / "data"),
        "BIFROST_WORKSPACE_URL": str(workspace),
        "BIFROST_PORT": str(port),
        "BIFROST_BOOTSTRAP_API_KEY": KEY,
        **backend,
    }
    settings = Settings(data_dir=tmp / "data", workspace_url=str(workspace))
    with (
        images.removing_containers(settings),
        serving(env, api_url, tmp / "bifrost-serve.log"),
        httpx.Client(base_url=api_url, headers={"X-Bifrost-Key": KEY}, timeout=120) as api,
    ):
        for n in range(WARM_UP):
            run_sync(api, "trivial", {"n": n})
        durations = []
        for n in range(RUNS):
            start = time.perf_counter()
            run_sync(api, "trivial", {"n": n})
            durations.append((time.perf_counter() - start) * 1000)
    return measured(f"{statistics.median(durations):.0f} / {percentile(durations, 95):.0f} ms ({RUNS} sync runs)")


def main() -> None:
    started = time.monotonic()
    runner_image = images.build(images.RUNNER_DOCKERFILE, "bifrost-runner", images.base_image())
    print(f"runner image {runner_image} ready in {time.monotonic() - started:.1f} s", flush=True)
    figures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bifrost-bench-local-") as tmp:
        figures["launch to finished p50 / p95, local backend"] = round_trips(Path(tmp), {"BIFROST_BACKEND": "local"})
    with tempfile.TemporaryDirectory(prefix="bifrost-bench-podman-") as tmp:
        podman = {"BIFROST_BACKEND": "podman", "BIFROST_RUNNER_IMAGE": runner_image}
        figures["launch to finished p50 / p95, podman backend"] = round_trips(Path(tmp), podman)
    print_figures(figures)


if __name__ == "__main__":
    main()
