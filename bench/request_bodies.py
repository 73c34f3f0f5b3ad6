"""Memory of a real `bifrost serve` while it is sent 200 MB request bodies, anonymous and signed in, chunked and
with Content-Length: bodies past the limit are refused unread, so its RSS should not move."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench._report import measured
from bifrost_devtools.services import free_port

BODY_MB = 200
KEY = "bfk_bench-request-bodies-0123456789"


def _rss_mb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


def _body() -> Iterator[bytes]:
    chunk = b" " * (1024 * 1024)
    for _ in range(BODY_MB):
        yield chunk


def main() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "workspace").mkdir()
        env = {
            **os.environ,
            "BIFROST_DATA_DIR": str(Path(tmp) / "data"),
            "BIFROST_WORKSPACE_URL": str(Path(tmp) / "workspace"),
            "BIFROST_BOOTSTRAP_API_KEY": KEY,
            "BIFROST_LOCAL_POOL_SIZE": "0",
        }
        bifrost = str(Path(sys.executable).parent / "bifrost")
        server = subprocess.Popen(
            [bifrost, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 120
            while not _ready(url):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("bifrost serve did not become ready")
                time.sleep(0.2)
            print(f"RSS of bifrost serve at start: {measured(f'{_rss_mb(server.pid)} MB')}")
            for caller, headers in (("anonymous", {}), ("signed in", {"Authorization": f"Bearer {KEY}"})):
                for framing in ("chunked", "Content-Length"):
                    length = {"Content-Length": str(BODY_MB * 1024 * 1024)} if framing == "Content-Length" else {}
                    outcome = _post(url, {"Content-Type": "application/json", **headers, **length})
                    figure = measured(f"{outcome}; RSS {_rss_mb(server.pid)} MB")
                    print(f"{caller}, {BODY_MB} MB {framing}: {figure}")
        finally:
            server.terminate()
            server.wait(60)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _post(url: str, headers: dict[str, str]) -> str:
    try:
        return str(httpx.post(f"{url}/api/orgs", content=_body(), headers=headers, timeout=300).status_code)
    except httpx.HTTPError as exc:
        # The server answered early and closed the connection while the client was still sending.
        return f"connection closed by the server ({type(exc).__name__})"


if __name__ == "__main__":
    main()
