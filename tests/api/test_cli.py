"""`bifrost serve` as a user starts it: the embedded defaults, no external service."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.s3 import ADMIN_KEY, ADMIN_SECRET, SeaweedS3
from tests.services import free_port, wait_for_port

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
        wait_for_port(port, timeout=60)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)


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
    assert f"Workspace: {tmp_path / 'workspace'}" in " ".join(first_output.split())
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
    output = " ".join(finished.stdout.split())
    assert "Invalid configuration:" in output
    assert f"BIFROST_BACKEND=kubernetes cannot use the folder workspace {tmp_path / 'workspace'}" in output
    assert "Use an S3 workspace" in output
