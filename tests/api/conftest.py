from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import create_engine, make_url, text

from bifrost_devtools.services import free_port, running_nats
from control_plane.app import create_app
from control_plane.db.models import utcnow
from control_plane.settings import Settings

ADMIN_KEY = "bfk_test-admin-key-0123456789abcdef"
SECRET_KEY = "test-signing-key-for-execution-tokens"

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], *, within: float = 20.0, what: str = "the condition") -> T:
    """Poll `probe` until it returns something other than None (or False)."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within}s")
        time.sleep(0.05)


class MovableClock:
    """The real time, which the test may move forward: the time a schedule fires comes without waiting for it."""

    def __init__(self) -> None:
        self._ahead = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self._ahead

    def move_to(self, moment: datetime) -> None:
        """From now on, the clock reads `moment` and goes on from there (never back)."""
        self._ahead = max(self._ahead, moment - utcnow())


def start(api: httpx.Client, name: str, **parameters: Any) -> str:
    """Start a workflow in the background (whatever its execution mode); its execution id."""
    response = api.post(f"/api/workflows/{name}/execute", json={"parameters": parameters}, params={"sync": False})
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def finished(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        execution: dict[str, Any] = api.get(f"/api/executions/{execution_id}").json()
        return execution if execution["status"] not in ("Pending", "Running") else None

    return eventually(probe, within=60, what=f"execution {execution_id} to finish")


def fresh_database(kind: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of `kind`: a SQLite file, or a new database in the session's PostgreSQL."""
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bifrost.db'}"
    server_url = make_url(request.getfixturevalue("postgres_url"))
    name = f"bifrost_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return fresh_database(request.param, tmp_path_factory.mktemp("db"), request)


@contextmanager
def serving(settings: Settings, clock: Callable[[], datetime] = utcnow) -> Iterator[str]:
    """The real app behind a real uvicorn on a free port, in a background thread; yields its URL."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, clock=clock), host=settings.host, port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="bifrost-test-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the Bifrost app failed to start (see the log above)")
        time.sleep(0.02)
    try:
        yield settings.api_url
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@dataclass
class Bifrost:
    url: str
    settings: Settings
    workspace: Path

    def client(self, key: str | None = ADMIN_KEY, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def write_workflow(self, relative: str, source: str) -> None:
        path = self.workspace / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def make_settings(tmp: Path, database_url: str, nats_url: str, **overrides: Any) -> Settings:
    workspace = tmp / "workspace"
    workspace.mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "data_dir": tmp / "data",
        "database_url": database_url,
        "workspace_url": str(workspace),
        "nats_url": nats_url,
        "host": "127.0.0.1",
        "port": free_port(),
        "bootstrap_api_key": SecretStr(ADMIN_KEY),
        "secret_key": SecretStr(SECRET_KEY),
        "local_pool_size": 1,
        "workspace_poll_seconds": 0.2,
        # Runners outlive the test's NATS; this bounds how long one still running then waits to report.
        "runner_report_seconds": 30,
        **overrides,
    }
    return Settings(**values)


@contextmanager
def running_bifrost(
    tmp: Path,
    database_url: str,
    workflows: dict[str, str],
    *,
    clock: Callable[[], datetime] = utcnow,
    **overrides: Any,
) -> Iterator[Bifrost]:
    with running_nats(tmp, identities=True) as nats:
        settings = make_settings(
            tmp, database_url, nats.url, nats_account_seed=SecretStr(nats.account_seed), **overrides
        )
        for relative, source in workflows.items():
            (settings.workspace_dir / relative).write_text(source)
        with serving(settings, clock) as url:
            yield Bifrost(url=url, settings=settings, workspace=settings.workspace_dir)
