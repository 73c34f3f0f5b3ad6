"""What the chart runs, run for real: the bundled NATS as its init container configures it, and the `helm test`
pod's command against a `bifrost serve`."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import pytest
from nats.aio.client import RawCredentials

from bifrost._internal.protocol import events_subject, inbox_prefix, nats_credentials_file
from bifrost_devtools.services import free_port, nats_server_binary, wait_for_port
from control_plane.security.nats_identities import AccountSigner, NatsCredentials
from tests.api.conftest import eventually
from tests.k8s.test_deploy import one, render

BIN = Path(sys.executable).parent


def credentials(identity: NatsCredentials) -> RawCredentials:
    return RawCredentials(nats_credentials_file(identity.jwt, identity.seed))


@pytest.fixture
def bundled_nats(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The bundled NATS of a default install: its configuration from the chart's ConfigMap, its accounts written
    by the init container's command from the chart's generated keys. The URL and the account seed."""
    docs = render({})
    secret = {key: base64.b64decode(value).decode() for key, value in one(docs, "Secret")["data"].items()}
    nats_set = one(docs, "StatefulSet", "bifrost-nats")["spec"]["template"]["spec"]
    [init] = nats_set["initContainers"]
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "nats-keys.json").write_text(secret["nats-keys.json"])
    assert {"name": "BIFROST_DATA_DIR", "value": "/etc/bifrost-nats-keys"} in init["env"]
    config = tmp_path / "config"
    config.mkdir()
    port = free_port()
    nats_conf = one(docs, "ConfigMap", "bifrost-nats")["data"]["nats.conf"]
    (config / "nats.conf").write_text(
        nats_conf.replace("0.0.0.0:4222", f"127.0.0.1:{port}")
        .replace("http: 0.0.0.0:8222", f"http: 127.0.0.1:{free_port()}")
        .replace("/data", str(tmp_path / "data"))
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("BIFROST_")}
    accounts = subprocess.run([BIN / "bifrost", "nats-config"], env=env | {"BIFROST_DATA_DIR": str(keys)},
                              capture_output=True, text=True, check=True)
    (config / "accounts.conf").write_text(accounts.stdout)
    [container] = nats_set["containers"]
    assert container["command"] == ["nats-server", "--config", "/etc/nats/nats.conf"]
    process = subprocess.Popen([nats_server_binary(), "--config", str(config / "nats.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
        yield f"nats://127.0.0.1:{port}", secret["nats-account-seed"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


async def test_the_bundled_nats_lets_in_only_bifrost_identities_and_confines_runners(
    bundled_nats: tuple[str, str],
) -> None:
    url, account_seed = bundled_nats
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)

    signer = AccountSigner(account_seed)
    control = await nats.connect(url, user_credentials=credentials(signer.control_plane()), allow_reconnect=False)
    js = control.jetstream()
    await js.add_stream(name="CHART_CHECK", subjects=["bifrost.runs.*.events"])
    received = await control.subscribe("bifrost.runs.*.events")

    refused: list[str] = []

    async def on_error(exc: Exception) -> None:
        refused.append(str(exc))

    runner_identity = signer.runner("run-1", datetime.now(UTC) + timedelta(minutes=5))
    runner = await nats.connect(url, user_credentials=credentials(runner_identity), inbox_prefix=inbox_prefix("run-1"),
                                error_cb=on_error, allow_reconnect=False)
    try:
        ack = await runner.jetstream().publish(events_subject("run-1"), b"{}")
        assert ack.stream == "CHART_CHECK"
        await runner.publish(events_subject("run-2"), b"forged")
        await runner.flush()
        message = await received.next_msg(timeout=5)
        assert message.subject == events_subject("run-1")
        eventually(lambda: refused, what="the server refusing the forged publish")
        with pytest.raises(nats.errors.TimeoutError):
            await received.next_msg(timeout=0.5)
    finally:
        await runner.close()
        await control.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`bifrost serve` with an empty workspace, bootstrapped with a key: what the test pod's environment names."""
    key = "bfk_chart-test-admin-key-0123456789"
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("BIFROST_")}
    server_env = env | {
        "BIFROST_DATA_DIR": str(tmp_path / "data"),
        "BIFROST_WORKSPACE_URL": str(workspace),
        "BIFROST_PORT": str(port),
        "BIFROST_BOOTSTRAP_API_KEY": key,
        "BIFROST_LOCAL_POOL_SIZE": "1",
        "BIFROST_WORKSPACE_POLL_SECONDS": "0.2",
    }
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen([BIN / "bifrost", "serve"], env=server_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            eventually(lambda: _ready(url) or process.poll() is not None, within=90, what="bifrost serve")
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            yield env | {"BIFROST_URL": url, "BIFROST_API_KEY": key,
                         "BIFROST_PROFILES_FILE": str(tmp_path / "no-profiles.toml")}
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_the_helm_test_pod_runs_a_hello_workflow_end_to_end(served: dict[str, str], tmp_path: Path) -> None:
    [pod] = [doc for doc in render({}) if doc["kind"] == "Pod"]
    [container] = pod["spec"]["containers"]
    pod_env: dict[str, Any] = {var["name"]: var for var in container["env"]}
    home = tmp_path / "home"
    home.mkdir()
    env = served | {"HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    assert set(pod_env) == {"HOME", "BIFROST_URL", "BIFROST_API_KEY"}
    done = subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"Hello, Helm!"' in done.stdout

    wrong_key = subprocess.run(container["command"], env=env | {"BIFROST_API_KEY": "bfk_wrong-key-000000000000"},
                               capture_output=True, text=True, timeout=180)
    assert wrong_key.returncode != 0


