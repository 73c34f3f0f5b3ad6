"""`bifrost serve` as a user starts it: the embedded defaults, no external service."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.services import free_port, wait_for_port

KEY_PATTERN = re.compile(r"bfk_[A-Za-z0-9_-]{20,}")


@contextmanager
def bifrost_serve(tmp_path: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BIFROST_")}
    env |= {"BIFROST_DATA_DIR": str(tmp_path / "data"), "BIFROST_WORKSPACE_URL": str(tmp_path / "workspace")}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "bifrost"), "serve", "--port", str(port)],
        env=env,
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
    [key] = KEY_PATTERN.findall(first_output)

    with bifrost_serve(tmp_path, port) as second:
        workflows = httpx.get(f"{url}/api/workflows", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert workflows.status_code == 200
        assert [w["name"] for w in workflows.json()] == ["hello"]
        second.send_signal(signal.SIGINT)
        second_output, _ = second.communicate(timeout=60)
    assert url in second_output
    assert KEY_PATTERN.findall(second_output) == []
