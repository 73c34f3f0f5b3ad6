"""The whole product path over HTTP: API key check, validation, one insert, launch, run, ingest, answer.

Starts Bifrost as `bifrost serve` does (SQLite, embedded NATS, local backend) and times a trivial sync workflow
from request to answer (target: p50 under 25 ms on 2 cores), an async start (202), and reads of the API.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr

from control_plane.app import create_app
from control_plane.settings import Settings
from tests.services import free_port

TARGET_SYNC_P50_MS = 25.0
KEY = "bfk_benchmark-admin-key-0123456789"
WORKFLOWS = """
from bifrost import workflow

@workflow(execution_mode="sync")
def trivial(n: int = 0):
    return {"n": n}

@workflow
def background(n: int = 0):
    return {"n": n}
"""


@contextmanager
def serving(settings: Settings) -> Iterator[None]:
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host=settings.host, port=settings.port, log_level="warning", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("Bifrost failed to start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def timed(samples: int, call: Callable[[int], None]) -> list[float]:
    durations = []
    for i in range(samples):
        start = time.perf_counter()
        call(i)
        durations.append((time.perf_counter() - start) * 1000)
    return durations


def report(label: str, durations: list[float]) -> float:
    cuts = statistics.quantiles(durations, n=100)
    p50 = statistics.median(durations)
    print(f"{label:<34} p50 {p50:7.2f} ms   p90 {cuts[89]:7.2f} ms   p99 {cuts[98]:7.2f} ms   (n={len(durations)})")
    return p50


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bifrost-bench-api-") as tmp:
        workspace = Path(tmp) / "workspace"
        workspace.mkdir()
        (workspace / "flows.py").write_text(WORKFLOWS)
        settings = Settings(
            data_dir=Path(tmp) / "data",
            workspace_url=str(workspace),
            host="127.0.0.1",
            port=free_port(),
            bootstrap_api_key=SecretStr(KEY),
        )
        with serving(settings), httpx.Client(base_url=settings.api_url, headers={"X-Bifrost-Key": KEY}) as api:

            def sync_run(i: int) -> None:
                response = api.post("/api/workflows/trivial/execute", json={"parameters": {"n": i}})
                if response.status_code != 200 or response.json()["result"] != {"n": i}:
                    raise RuntimeError(f"sync run {i} answered {response.status_code}: {response.text[:200]}")

            def async_start(i: int) -> None:
                response = api.post("/api/workflows/background/execute", json={"parameters": {"n": i}})
                if response.status_code != 202:
                    raise RuntimeError(f"async start {i} answered {response.status_code}: {response.text[:200]}")

            timed(20, sync_run)  # warm-up: runner pool filled, code paths imported
            sync_p50 = report("sync run, request to result", timed(200, sync_run))
            report("async start, request to 202", timed(200, async_start))
            report("GET /api/workflows", timed(200, lambda _: api.get("/api/workflows").raise_for_status()))
            report(
                "GET /api/executions (50 newest)",
                timed(200, lambda _: api.get("/api/executions", params={"limit": 50}).raise_for_status()),
            )
        verdict = "meets" if sync_p50 < TARGET_SYNC_P50_MS else "MISSES"
        print(f"sync run p50 {sync_p50:.2f} ms {verdict} the {TARGET_SYNC_P50_MS:.0f} ms target")


if __name__ == "__main__":
    main()
