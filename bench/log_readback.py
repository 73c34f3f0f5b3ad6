"""Reading back a long log through the API of `bifrost serve`, on SQLite and on PostgreSQL (skipped when it is not
installed): 200,000 stored log lines of one finished execution, as pages of the largest page size (target under
1 s for all of them) and as the replay of the execution's server-sent event stream (target under 3 s). The
client reads every line's JSON, as a real one would. Beside each time, the CPU time the server, the client and
(on PostgreSQL) the database spent: on a shared machine the time also counts the waits for a core.

Run: `python -m bench.log_readback`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import insert, text
from sqlmodel import Session, col, select

from bench._report import measured, print_figures
from bench.executions import serving
from bifrost._internal.protocol import ExecutionStatus
from bifrost.api.executions import MAX_LOG_PAGE
from bifrost_devtools.services import free_port, postgres_bin_dir, running_postgres
from control_plane.db.models import Execution, ExecutionLog, User
from control_plane.db.session import make_engine
from control_plane.settings import Settings

KEY = "bfk_benchmark-log-readback-key-0123456789"
LINES = 200_000
PAGES_TARGET_SECONDS = 1.0
REPLAY_TARGET_SECONDS = 3.0


def store_long_log(settings: Settings) -> str:
    """A finished execution of the bootstrap admin with LINES log lines; its id."""
    db = make_engine(settings.resolved_database_url)
    with Session(db) as session:
        admin = session.exec(select(User).where(col(User.is_platform_admin))).first()
        if admin is None:
            raise RuntimeError("bifrost serve made no admin user")
        execution = Execution(user_id=admin.id, workflow_name="chatty", backend="bench", status=ExecutionStatus.SUCCESS)
        session.add(execution)
        session.commit()
        execution_id = execution.id
    now = datetime.now(UTC)
    rows = [
        {
            "execution_id": execution_id,
            "line": line,
            "ts": now,
            "level": "INFO",
            "logger": "bench.chatty",
            "message": f"processed item {line} of the nightly import, nothing unusual",
        }
        for line in range(1, LINES + 1)
    ]
    with db.begin() as conn:
        conn.execute(insert(ExecutionLog), rows)
    db.dispose()
    return execution_id


def read_pages(api: httpx.Client, execution_id: str) -> int:
    lines, after = 0, 0
    while True:
        page = api.get(f"/api/executions/{execution_id}/logs", params={"after": after, "limit": MAX_LOG_PAGE}).json()
        lines += len(page["logs"])
        after = page["next_after"]
        if not page["has_more"]:
            return lines


def replay(api: httpx.Client, execution_id: str) -> int:
    """The log lines of the stream's `logs` (a batch) and `log` (one line) events."""
    lines, event = 0, ""
    with api.stream("GET", f"/api/executions/{execution_id}/stream") as response:
        for text_line in response.iter_lines():
            if text_line.startswith("event: "):
                event = text_line.removeprefix("event: ")
            elif text_line.startswith("data: ") and event in ("log", "logs"):
                data = json.loads(text_line.removeprefix("data: "))
                lines += len(data) if event == "logs" else 1
    return lines


@dataclass(frozen=True)
class Timing:
    seconds: float
    lines: int
    server_cpu_seconds: float
    """The CPU time `bifrost serve` spent: on a busy machine the wall clock counts the waits for a core too."""
    client_cpu_seconds: float
    database_cpu_seconds: float | None
    """PostgreSQL's (all its processes'); None on SQLite, which works in the server's process."""


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """The CPU time a process has spent, user and system, with `children` also that of the children it waited for
    (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(field) for field in fields[11 : 15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def postmaster_pid(database_url: str) -> int:
    """The process id of the PostgreSQL server at `database_url`: the parent of a connection's backend."""
    db = make_engine(database_url)
    with db.connect() as conn:
        backend: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    db.dispose()
    return int(Path(f"/proc/{backend}/stat").read_text().rpartition(")")[2].split()[1])


def postgres_cpu_seconds(postmaster: int) -> float:
    """The CPU time the PostgreSQL server has spent: the postmaster's, its ended backends' and its live ones'."""
    live = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == postmaster:
                live += cpu_seconds(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile, and counted in the postmaster's children's time once it waits for it
    return cpu_seconds(postmaster, children=True) + live


def timed_best_of(
    runs: int,
    action: Callable[[httpx.Client, str], int],
    api: httpx.Client,
    execution_id: str,
    server_pid: int,
    postmaster: int | None,
) -> Timing:
    def database_cpu() -> float:
        return 0.0 if postmaster is None else postgres_cpu_seconds(postmaster)

    best: Timing | None = None
    for _ in range(runs):
        server_start, client_start, database_start = cpu_seconds(server_pid), time.process_time(), database_cpu()
        start = time.perf_counter()
        lines = action(api, execution_id)
        seconds = time.perf_counter() - start
        timing = Timing(
            seconds,
            lines,
            cpu_seconds(server_pid) - server_start,
            time.process_time() - client_start,
            None if postmaster is None else database_cpu() - database_start,
        )
        if best is None or timing.seconds < best.seconds:
            best = timing
    assert best is not None
    return best


@contextmanager
def serving_bifrost(tmp: Path, database_url: str | None) -> Iterator[tuple[httpx.Client, Settings, int]]:
    """`bifrost serve` on `database_url` (None: SQLite); a client of its API, its settings and its process id."""
    workspace = tmp / "workspace"
    workspace.mkdir()
    port = free_port()
    api_url = f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=tmp / "data", workspace_url=str(workspace), database_url=database_url)
    env = {
        "BIFROST_DATA_DIR": str(settings.data_dir),
        "BIFROST_WORKSPACE_URL": str(workspace),
        "BIFROST_PORT": str(port),
        "BIFROST_BOOTSTRAP_API_KEY": KEY,
    } | ({"BIFROST_DATABASE_URL": database_url} if database_url else {})
    with (
        serving(env, api_url, tmp / "bifrost-serve.log") as server,
        httpx.Client(base_url=api_url, headers={"X-Bifrost-Key": KEY}, timeout=120) as api,
    ):
        yield api, settings, server.pid


def figures(database: str) -> dict[str, str]:
    """The figures of one database, each beside its target, by label."""
    if database == "PostgreSQL" and postgres_bin_dir() is None:
        return {f"log read-back, {database}": "skipped: PostgreSQL is not installed"}
    with (
        running_postgres() if database == "PostgreSQL" else nullcontext(None) as database_url,
        tempfile.TemporaryDirectory(prefix="bifrost-bench-logs-") as tmp,
        serving_bifrost(Path(tmp), database_url) as (api, settings, server_pid),
    ):
        execution_id = store_long_log(settings)
        postmaster = None if database_url is None else postmaster_pid(database_url)
        pages = timed_best_of(3, read_pages, api, execution_id, server_pid, postmaster)
        replayed = timed_best_of(3, replay, api, execution_id, server_pid, postmaster)
    if pages.lines != LINES or replayed.lines != LINES:
        raise RuntimeError(f"read back {pages.lines} lines in pages and {replayed.lines} in the replay, not {LINES}")
    lines = {}
    for label, timing, target in (
        (f"pages of {MAX_LOG_PAGE:,} lines", pages, PAGES_TARGET_SECONDS),
        ("SSE replay", replayed, REPLAY_TARGET_SECONDS),
    ):
        cpu = f"CPU {timing.server_cpu_seconds:.2f} s server, {timing.client_cpu_seconds:.2f} s client"
        if timing.database_cpu_seconds is not None:
            cpu += f", {timing.database_cpu_seconds:.2f} s PostgreSQL"
        lines[f"log read-back, {database}, {LINES:,} lines, {label}"] = measured(
            f"{timing.seconds:.2f} s, {LINES / timing.seconds:,.0f} lines/s (best of 3); {cpu}",
            f"< {target:.0f} s",
            timing.seconds < target,
        )
    return lines


def main() -> None:
    print_figures(figures("SQLite") | figures("PostgreSQL"))


if __name__ == "__main__":
    main()
