"""`bifrost serve` as a user starts it: the embedded defaults, no external service."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bifrost._internal.protocol import MAX_EVENT_BYTES
from bifrost_devtools.s3 import ADMIN_KEY, ADMIN_SECRET, SeaweedS3
from bifrost_devtools.services import free_port, nats_server_binary, wait_for_port
from tests.api.conftest import eventually, finished, start

KEY_PATTERN = re.compile(r"bfk_[A-Za-z0-9_-]{20,}")


BIFROST = str(Path(sys.executable).parent / "bifrost")


def serve_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BIFROST_")}
    return (
        env
        | {"BIFROST_DATA_DIR": str(tmp_path / "data"), "BIFROST_WORKSPACE_URL": str(tmp_path / "workspace")}
        | {f"BIFROST_{name.upper()}": value for name, value in settings.items()}
    )


@contextmanager
def bifrost_serve(tmp_path: Path, port: int, **settings: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [BIFROST, "serve", "--port", str(port)],
        env=serve_environment(tmp_path, **settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for_port(port, timeout=60, process=process)
        eventually(lambda: _answers_ready(port), within=60, what="bifrost serve to answer ready")
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)


def _answers_ready(port: int) -> bool:
    """Whether it is this `bifrost serve` that listens: a signal sent sooner could find it still importing."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_serve_prints_the_url_and_the_admin_key_only_on_the_first_start(tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "hello.py").write_text("from bifrost import workflow\n\n@workflow\ndef hello(): ...\n")
    port = free_port()

    with bifrost_serve(tmp_path, port) as first:
        url = f"http://127.0.0.1:{port}"
        response = httpx.get(f"{url}/readyz", timeout=10)
        assert response.status_code == 200, response.text
        first.send_signal(signal.SIGINT)
        first_output, _ = first.communicate(timeout=60)
    assert url in first_output
    assert f"Workspace: {tmp_path / 'workspace'}\n" in first_output  # whole on its line, however long
    [key] = KEY_PATTERN.findall(first_output)

    with bifrost_serve(tmp_path, port) as second:
        workflows = httpx.get(f"{url}/api/workflows", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert workflows.status_code == 200
        assert [w["name"] for w in workflows.json()] == ["hello"]
        second.send_signal(signal.SIGINT)
        second_output, _ = second.communicate(timeout=60)
    assert url in second_output
    assert KEY_PATTERN.findall(second_output) == []


def test_serve_names_the_s3_workspace_it_reads(seaweedfs: SeaweedS3, tmp_path: Path) -> None:
    bucket = seaweedfs.create_bucket(f"ws-{uuid.uuid4().hex[:12]}")
    port = free_port()
    s3 = {
        "s3_endpoint_url": seaweedfs.endpoint_url,
        "s3_access_key_id": ADMIN_KEY,
        "s3_secret_access_key": ADMIN_SECRET,
    }
    with bifrost_serve(tmp_path, port, workspace_url=f"s3://{bucket}/teams/ops", **s3) as serving:
        serving.send_signal(signal.SIGINT)
        output, _ = serving.communicate(timeout=60)
    assert f"Workspace: s3://{bucket}/teams/ops" in " ".join(output.split())


def test_serve_refuses_the_kubernetes_backend_on_a_folder_workspace(tmp_path: Path) -> None:
    finished = subprocess.run(
        [BIFROST, "serve"], env=serve_environment(tmp_path, backend="kubernetes"), capture_output=True, text=True
    )
    assert finished.returncode == 2
    output = " ".join(finished.stderr.split())
    assert "Invalid configuration:" in output
    assert f"BIFROST_BACKEND=kubernetes cannot use the folder workspace {tmp_path / 'workspace'}" in output
    assert "Use an S3 workspace" in output


def nats_config(tmp_path: Path, *options: str) -> str:
    return subprocess.run(
        [BIFROST, "nats-config", *options], env=serve_environment(tmp_path), capture_output=True, text=True, check=True
    ).stdout


def test_an_external_nats_set_up_with_nats_config_gives_runners_their_own_identity(tmp_path: Path) -> None:
    """The steps of docs/security.md: the accounts go into the server's configuration, the account seed to the
    control plane; runs then work, and workflow code cannot read other executions' events."""
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace" / "flows.py").write_text(SNOOPING_FLOW)
    accounts, seed = nats_config(tmp_path), nats_config(tmp_path, "--account-seed").strip()
    assert nats_config(tmp_path, "--account-seed").strip() == seed  # kept in the data folder
    assert stat.S_IMODE((tmp_path / "data" / "nats-keys.json").stat().st_mode) == 0o600
    assert seed.startswith("SA") and seed not in accounts
    (tmp_path / "bifrost-accounts.conf").write_text(accounts)
    nats_port = free_port()
    (tmp_path / "nats.conf").write_text(
        f"listen: 127.0.0.1:{nats_port}\nmax_payload: {MAX_EVENT_BYTES}\n"
        f'jetstream {{ store_dir: "{tmp_path / "nats"}" }}\ninclude bifrost-accounts.conf\n'
    )
    nats_server = subprocess.Popen(
        [nats_server_binary(), "-c", str(tmp_path / "nats.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(nats_port, process=nats_server)
        port = free_port()
        external = {"nats_url": f"nats://127.0.0.1:{nats_port}", "nats_account_seed": seed}
        with bifrost_serve(tmp_path, port, bootstrap_api_key=BOOTSTRAP_KEY, **external), httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {BOOTSTRAP_KEY}"}, timeout=60
        ) as api:
            eventually(lambda: api.get("/api/workflows").json() != [], what="the workflow to register")
            run = finished(api, start(api, "snoop"))
    finally:
        nats_server.terminate()
        nats_server.wait(timeout=30)
    assert run["status"] == "Success", run
    assert 'permissions violation for subscription to "bifrost.runs.*.events"' in run["result"].lower()


BOOTSTRAP_KEY = "bfk_cli-test-admin-key-0123456789"

SNOOPING_FLOW = """
import asyncio
import os

import nats
from nats.aio.client import RawCredentials

from bifrost import workflow
from bifrost._internal.protocol import inbox_prefix, nats_credentials_file


@workflow
async def snoop():
    refused = asyncio.get_running_loop().create_future()

    async def on_error(exc):
        if not refused.done():
            refused.set_result(str(exc))

    credentials = nats_credentials_file(os.environ["BIFROST_NATS_JWT"], os.environ["BIFROST_NATS_SEED"])
    nc = await nats.connect(
        os.environ["BIFROST_NATS_URL"],
        user_credentials=RawCredentials(credentials),
        inbox_prefix=inbox_prefix(os.environ["BIFROST_EXECUTION_ID"]),
        error_cb=on_error,
    )
    await nc.subscribe("bifrost.runs.*.events")
    await nc.flush()
    try:
        return await asyncio.wait_for(refused, 30)
    finally:
        await nc.close()
"""
