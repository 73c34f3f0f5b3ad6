"""Executions end to end, against `bifrost serve` in its own process as users run it (SQLite, embedded NATS,
local backend), from an HTTP client in this one:

1. sync round trip, request to result: p50/p95/p99 over 200 calls; and the same with runners neither
   sandboxed nor given NATS identities, for what the isolation costs;
2. 40 sequential sync runs of a ~10 ms workflow: total time;
3. 1,000 async executions, with the concurrency limits raised above what two cores can run at once: started over
   the API, throughput until the last one finished, and the CPU each cost;
4. ingest: 100,000 log lines published as a runner does, lines per second until all are in the database;
5. peak memory of the control plane (the server process's high-water mark) and of a runner (reported by the
   workflow itself).

Targets: sync round trip p50 <= 10 ms and p99 <= 25 ms; async throughput >= 150 executions/s (on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
from cryptography.fernet import Fernet
from nats.aio.client import RawCredentials
from sqlalchemy import Engine, func, select
from sqlmodel import Session, SQLModel

from bench._report import measured, print_figures
from bifrost._internal.protocol import (
    Event,
    ExecutionStatus,
    FinishedEvent,
    LogEvent,
    LogRecord,
    StartedEvent,
    events_subject,
    inbox_prefix,
    message_id,
    nats_credentials_file,
)
from bifrost_devtools.services import free_port, postgres_bin_dir, running_nats, running_postgres
from control_plane.backends.local import LocalBackend
from control_plane.db.models import Execution, Organization, User
from control_plane.db.session import make_engine
from control_plane.engine import ExecutionEngine
from control_plane.security.encryption import SecretCipher
from control_plane.security.nats_identities import KEYS_FILE, AccountSigner, NatsKeys
from control_plane.security.tokens import TokenIssuer
from control_plane.settings import Settings

KEY = "bfk_benchmark-engine-key-0123456789"
SYNC_CALLS = 200
SYNC_WARM_UP = 20
SEQUENTIAL_RUNS = 40
ASYNC_EXECUTIONS = 1_000
LOG_LINES = 100_000
LINES_PER_EVENT = 100
RAISED_CONCURRENCY = 200
"""The global and per-workflow concurrency limits of the server measured: no limit, only the machine, holds the
async executions back."""
SYNC_P50_TARGET_MS = 10.0
SYNC_P99_TARGET_MS = 25.0
ASYNC_TARGET_PER_SECOND = 150.0

WORKFLOWS = """
import asyncio
import resource

from bifrost import workflow


@workflow(execution_mode="sync")
def trivial(n: int = 0):
    return {"n": n}


@workflow(execution_mode="sync")
async def ten_ms():
    await asyncio.sleep(0.01)
    return {"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


@workflow
def background(n: int = 0):
    return {"n": n}
"""


@contextmanager
def serving(env: dict[str, str], api_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`bifrost serve` with `env`, its output in `log`, once it answers ready; stopped (SIGTERM) afterwards."""
    command = [str(Path(sys.executable).with_name("bifrost")), "serve"]
    with log.open("wb") as output:
        server = subprocess.Popen(command, env=os.environ | env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _ready(api_url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bifrost serve did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=60)


def _ready(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy since boot, all cores together (/proc/stat)."""
    # user nice system idle iowait irq softirq steal (guest time is already counted in user and nice)
    ticks = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """CPU time one process has used (its own, not its children's)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of process `pid` and every process under it, live or ended: each live process's own, and for the
    ended ones, what the live process that reaped them holds of theirs (each ended process counts once there)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            children = [
                int(child)
                for task in Path(f"/proc/{current}/task").iterdir()
                for child in (task / "children").read_text().split()
            ]
        except FileNotFoundError:  # ended meanwhile: counted where it was reaped
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        pending += children
    return total


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def percentile(durations: list[float], pct: int) -> float:
    return statistics.quantiles(durations, n=100)[pct - 1]


def run_sync(api: httpx.Client, workflow: str, parameters: dict[str, int]) -> dict[str, int]:
    response = api.post(f"/api/workflows/{workflow}/execute", json={"parameters": parameters})
    if response.status_code != 200 or response.json()["status"] != ExecutionStatus.SUCCESS.value:
        raise RuntimeError(f"sync run of {workflow} answered {response.status_code}: {response.text[:300]}")
    result: dict[str, int] = response.json()["result"]
    return result


def timed(count: int, call: Callable[[int], object]) -> list[float]:
    durations = []
    for index in range(count):
        start = time.perf_counter()
        call(index)
        durations.append((time.perf_counter() - start) * 1000)
    return durations


def count_unfinished(db: Engine, ids: list[str]) -> int:
    active = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)
    with Session(db) as session:
        query = select(func.count()).where(Execution.id.in_(ids), Execution.status.in_(active))  # type: ignore[attr-defined]
        return int(session.execute(query).scalar_one())


def api_figures(tmp: Path, sync_only: bool = False) -> dict[str, str]:
    workspace = tmp / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "flows.py").write_text(WORKFLOWS)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    env = {
        "BIFROST_DATA_DIR": str(tmp / "data"),
        "BIFROST_WORKSPACE_URL": str(workspace),
        "BIFROST_PORT": str(port),
        "BIFROST_BOOTSTRAP_API_KEY": KEY,
        "BIFROST_MAX_CONCURRENCY": str(RAISED_CONCURRENCY),
        "BIFROST_MAX_CONCURRENCY_PER_WORKFLOW": str(RAISED_CONCURRENCY),
    }
    figures: dict[str, str] = {}
    with (
        serving(env, api_url, tmp / "bifrost-serve.log") as server,
        httpx.Client(base_url=api_url, headers={"X-Bifrost-Key": KEY}, timeout=60) as api,
    ):
        machine_before, server_before = busy_cpu_seconds(), process_cpu_seconds(server.pid)
        tree_before = tree_cpu_seconds(server.pid)
        figures["1. sync round trip p50 / p95 / p99"] = sync_round_trips(api)
        figures["1. sync round trip, CPU per call"] = cpu_per_call(
            machine_before, server.pid, server_before, tree_before, SYNC_CALLS + SYNC_WARM_UP
        )
        if sync_only:
            return figures

        peak_runner_kb = 0
        start = time.perf_counter()
        for _ in range(SEQUENTIAL_RUNS):
            peak_runner_kb = max(peak_runner_kb, run_sync(api, "ten_ms", {})["peak_rss_kb"])
        total = time.perf_counter() - start
        figures[f"2. {SEQUENTIAL_RUNS} sequential ~10 ms runs"] = measured(
            f"{total:.2f} s total, {total / SEQUENTIAL_RUNS * 1000:.1f} ms each"
        )

        machine_before, server_before = busy_cpu_seconds(), process_cpu_seconds(server.pid)
        tree_before = tree_cpu_seconds(server.pid)
        start = time.perf_counter()
        ids = []
        for n in range(ASYNC_EXECUTIONS):
            response = api.post("/api/workflows/background/execute", json={"parameters": {"n": n}})
            if response.status_code != 202:
                raise RuntimeError(f"async start answered {response.status_code}: {response.text[:300]}")
            ids.append(response.json()["execution_id"])
        started = time.perf_counter() - start
        db = make_engine(Settings(data_dir=tmp / "data", workspace_url=str(workspace)).resolved_database_url)
        while count_unfinished(db, ids):
            time.sleep(0.05)
        total = time.perf_counter() - start
        figures[f"3. {ASYNC_EXECUTIONS:,} async executions, CPU per execution"] = cpu_per_call(
            machine_before, server.pid, server_before, tree_before, ASYNC_EXECUTIONS
        )
        db.dispose()
        rate = ASYNC_EXECUTIONS / total
        figures[f"3. {ASYNC_EXECUTIONS:,} async executions"] = measured(
            f"{rate:.0f} executions/s ({total:.1f} s; all started in {started:.1f} s; limits {RAISED_CONCURRENCY})",
            f">= {ASYNC_TARGET_PER_SECOND:.0f}/s",
            rate >= ASYNC_TARGET_PER_SECOND,
        )
        figures["5. peak memory: runner"] = measured(f"{peak_runner_kb / 1024:.0f} MB RSS (ten_ms, self-reported)")
        figures["5. peak memory: control plane"] = measured(
            f"{peak_rss_kb(server.pid) / 1024:.0f} MB RSS (bifrost serve)"
        )
    return figures


def cpu_per_call(
    machine_before: float, server_pid: int, server_before: float, tree_before: float, calls: int
) -> str:
    """The CPU time the machine, the server's process tree (the server, its NATS server, its runner template and
    runners) and the server alone spent since `..._before`, per call. The machine's includes whatever else it ran
    meanwhile: read it with the load average."""
    machine = (busy_cpu_seconds() - machine_before) / calls * 1000
    tree = (tree_cpu_seconds(server_pid) - tree_before) / calls * 1000
    control_plane = (process_cpu_seconds(server_pid) - server_before) / calls * 1000
    return measured(
        f"{machine:.1f} ms on all {os.cpu_count()} cores, {tree:.1f} ms of it in bifrost serve with its NATS server "
        f"and runners, {control_plane:.1f} ms in bifrost serve itself"
    )


def sync_round_trips(api: httpx.Client) -> str:
    """p50 / p95 / p99 of `SYNC_CALLS` sync runs of a trivial workflow, after a warm-up."""
    timed(SYNC_WARM_UP, lambda n: run_sync(api, "trivial", {"n": n}))  # runner template up, code paths loaded
    sync = timed(SYNC_CALLS, lambda n: run_sync(api, "trivial", {"n": n}))
    p50, p99 = statistics.median(sync), percentile(sync, 99)
    return measured(
        f"{p50:.1f} / {percentile(sync, 95):.1f} / {p99:.1f} ms",
        f"p50 <= {SYNC_P50_TARGET_MS:.0f} ms, p99 <= {SYNC_P99_TARGET_MS:.0f} ms",
        p50 <= SYNC_P50_TARGET_MS and p99 <= SYNC_P99_TARGET_MS,
    )


def unisolated_sync_figure(tmp: Path) -> str:
    """The sync round trip as it was before runners were isolated: local runners unsandboxed
    (`BIFROST_LOCAL_SANDBOX=none`), on a NATS that checks no identities. Only for comparison: never run so."""
    workspace = tmp / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "flows.py").write_text(WORKFLOWS)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    with running_nats(tmp) as nats_server:
        env = {
            "BIFROST_DATA_DIR": str(tmp / "data"),
            "BIFROST_WORKSPACE_URL": str(workspace),
            "BIFROST_PORT": str(port),
            "BIFROST_BOOTSTRAP_API_KEY": KEY,
            "BIFROST_NATS_URL": nats_server.url,
            "BIFROST_LOCAL_SANDBOX": "none",
        }
        with (
            serving(env, api_url, tmp / "bifrost-serve.log"),
            httpx.Client(base_url=api_url, headers={"X-Bifrost-Key": KEY}, timeout=60) as api,
        ):
            return sync_round_trips(api)


async def ingest_lines_per_second(tmp: Path, database_url: str | None = None) -> float:
    """Publish LOG_LINES log lines for one execution, then time until the engine has committed them all."""
    settings = Settings(data_dir=tmp / "data", workspace_url=str(tmp), database_url=database_url)
    settings.data_dir.mkdir()
    db = make_engine(settings.resolved_database_url)
    SQLModel.metadata.create_all(db)
    with Session(db, expire_on_commit=False) as session:
        org = Organization(name="bench")
        session.add(org)
        session.flush()
        user = User(email="bench@bifrost.local", org_id=org.id)
        session.add(user)
        session.flush()
        # Marked as launched, so the engine does not try to start a runner for it: the bench plays the runner.
        execution = Execution(org_id=org.id, user_id=user.id, workflow_name="chatty", backend="bench")
        session.add(execution)
        session.commit()
    cipher = SecretCipher([Fernet.generate_key()])
    engine = ExecutionEngine(settings, db, LocalBackend(settings), TokenIssuer(b"bench-signing-key"), cipher)
    await engine.start()
    try:
        execution_id = execution.id
        # Under the identity the engine gives the execution's runner.
        keys = NatsKeys.load_or_create(settings.data_dir / KEYS_FILE)
        identity = AccountSigner(keys.account).runner(execution_id, datetime.now(UTC) + timedelta(hours=1))
        runner = await nats.connect(
            engine.nats_url,
            user_credentials=RawCredentials(nats_credentials_file(identity.jwt, identity.seed)),
            inbox_prefix=inbox_prefix(execution_id),
        )
        js = runner.jetstream()
        events: list[Event] = [StartedEvent(execution_id=execution_id, seq=1)]
        now = datetime.now(UTC)
        for index in range(LOG_LINES // LINES_PER_EVENT):
            records = [
                LogRecord(ts=now, level="INFO", logger="bench", message=f"line {index * LINES_PER_EVENT + n}")
                for n in range(LINES_PER_EVENT)
            ]
            events.append(LogEvent(execution_id=execution_id, seq=index + 2, records=records))
        events.append(FinishedEvent(execution_id=execution_id, seq=len(events) + 1, status=ExecutionStatus.SUCCESS))
        payloads = [event.model_dump_json().encode() for event in events]
        start = time.perf_counter()
        acks = [
            await js.publish_async(
                events_subject(execution_id), payload, headers={"Nats-Msg-Id": message_id(execution_id, seq + 1)}
            )
            for seq, payload in enumerate(payloads)
        ]
        await asyncio.gather(*acks)
        if not await engine.wait_terminal(execution_id, timeout=600):
            raise RuntimeError("the bench execution never finished")
        elapsed = time.perf_counter() - start
        await runner.close()
    finally:
        await engine.stop()
        db.dispose()
    return LOG_LINES / elapsed


def postgres_ingest_figure() -> str:
    if postgres_bin_dir() is None:
        return "skipped: PostgreSQL is not installed"
    with running_postgres() as url, tempfile.TemporaryDirectory(prefix="bifrost-bench-ingest-pg-") as tmp:
        rate = asyncio.run(ingest_lines_per_second(Path(tmp), database_url=url))
    return measured(f"{rate:,.0f} lines/s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.executions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sync", action="store_true", help="measure only the sync round trip (section 1)")
    sync_only = parser.parse_args().sync
    figures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bifrost-bench-executions-") as tmp:
        figures |= api_figures(Path(tmp), sync_only)
    with tempfile.TemporaryDirectory(prefix="bifrost-bench-unisolated-") as tmp:
        figures["1. sync round trip p50 / p95 / p99, no sandbox, no NATS identities"] = unisolated_sync_figure(
            Path(tmp)
        )
    if sync_only:
        print_figures(figures)
        return
    with tempfile.TemporaryDirectory(prefix="bifrost-bench-ingest-") as tmp:
        rate = asyncio.run(ingest_lines_per_second(Path(tmp)))
    figures[f"4. ingest of {LOG_LINES:,} log lines, SQLite"] = measured(f"{rate:,.0f} lines/s")
    figures[f"4. ingest of {LOG_LINES:,} log lines, PostgreSQL"] = postgres_ingest_figure()
    print_figures(figures)


if __name__ == "__main__":
    main()
