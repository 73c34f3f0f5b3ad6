"""Data provider calls, against `bifrost serve` in its own process as users run it (SQLite, embedded NATS, local
backend), from an HTTP client in this one: the options call's round trip, p50 / p95 of 100 calls,

1. uncached: every call runs the provider in a fresh runner (`cache_ttl_seconds=0`);
2. cached: the options of an earlier call with the same inputs are reused (no runner).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import httpx

from bench._report import measured
from bench.executions import KEY, percentile, serving, timed
from bifrost_devtools.services import free_port

CALLS = 100

PROVIDERS = """
from bifrost import context, data_provider


@data_provider(cache_ttl_seconds=0)
async def fresh_teams(prefix: str = ""):
    return [{"value": f"{prefix}{n}", "label": f"Team {n}"} for n in range(20)]


@data_provider(cache_ttl_seconds=3600)
async def kept_teams(prefix: str = ""):
    return [{"value": f"{prefix}{n}", "label": f"Team {n}"} for n in range(20)]
"""


def call_options(api: httpx.Client, provider: str, *, cached: bool) -> None:
    response = api.post(f"/api/data-providers/{provider}/options", json={"inputs": {"prefix": "t-"}})
    if response.status_code != 200 or response.json()["cached"] is not cached:
        raise RuntimeError(f"options of {provider} answered {response.status_code}: {response.text[:300]}")


def figure(durations: list[float]) -> str:
    return measured(f"{statistics.median(durations):.1f} / {percentile(durations, 95):.1f} ms")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bifrost-bench-providers-") as tmp:
        workspace = Path(tmp, "workspace")
        workspace.mkdir()
        (workspace / "providers.py").write_text(PROVIDERS)
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        env = {
            "BIFROST_DATA_DIR": str(Path(tmp, "data")),
            "BIFROST_WORKSPACE_URL": str(workspace),
            "BIFROST_PORT": str(port),
            "BIFROST_BOOTSTRAP_API_KEY": KEY,
        }
        with (
            serving(env, api_url, Path(tmp, "bifrost-serve.log")),
            httpx.Client(base_url=api_url, headers={"X-Bifrost-Key": KEY}, timeout=60) as api,
        ):
            timed(10, lambda _: call_options(api, "fresh_teams", cached=False))  # warm-up: runner template up
            call_options(api, "kept_teams", cached=False)
            # Cached first: while uncached calls go on, the local backend starts spare runners in the background.
            cached = timed(CALLS, lambda _: call_options(api, "kept_teams", cached=True))
            uncached = timed(CALLS, lambda _: call_options(api, "fresh_teams", cached=False))
    print(f"1. options call, uncached (a runner per call), p50 / p95  {figure(uncached)}")
    print(f"2. options call, cached, p50 / p95                         {figure(cached)}")


if __name__ == "__main__":
    main()
