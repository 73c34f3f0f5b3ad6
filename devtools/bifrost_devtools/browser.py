"""The web UI in a real browser, for the browser tests and the benchmarks alike: a real `bifrost serve` on a free
loopback port with a workspace of its own and the built UI (`make ui`), and the system's Chromium driven by
Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Page, Playwright

from bifrost_devtools.services import free_port, wait_for_port
from control_plane.security.bootstrap import ADMIN_EMAIL

REPO = Path(__file__).resolve().parents[2]
UI_DIR = REPO / "ui" / "dist"
UI_BUILT = UI_DIR / "index.html"
NOT_BUILT = f"the web UI is not built (no {UI_BUILT}): run `make ui`"
CHROMIUM = Path("/usr/bin/chromium")
NO_CHROMIUM = f"no Chromium at {CHROMIUM}: install the Debian package `chromium` (make test does)"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BIFROST = str(Path(sys.executable).parent / "bifrost")
ADMIN_KEY = "bfk_ui-tests-admin-key-0123456789abcdef"
PASSWORD = "correct horse battery staple"


@dataclass
class Bifrost:
    url: str
    admin: httpx.Client
    """The platform admin, by API key."""
    admin_id: str

    def finished(self, execution_id: str) -> dict[str, Any]:
        """The execution once it has finished: its event stream ends then, or earlier for a reader that fell
        behind, who opens it again."""
        while True:
            with self.admin.stream("GET", f"/api/executions/{execution_id}/stream") as stream:
                for _ in stream.iter_bytes():
                    pass
            execution: dict[str, Any] = self.admin.get(f"/api/executions/{execution_id}").json()
            if execution["status"] not in ("Pending", "Running"):
                return execution


def _serve_environment(tmp: Path, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BIFROST_")}
    settings = {
        "DATA_DIR": str(tmp / "data"),
        "WORKSPACE_URL": str(tmp / "workspace"),
        "UI_DIR": str(UI_DIR),
        "BOOTSTRAP_API_KEY": ADMIN_KEY,
        "PORT": str(port),
        "LOCAL_POOL_SIZE": "1",
        "WORKSPACE_POLL_SECONDS": "0.2",
        "RUNNER_REPORT_SECONDS": "30",
    }
    return env | {f"BIFROST_{name}": value for name, value in settings.items()}


@contextmanager
def serving(tmp: Path, workspace: Mapping[str, str]) -> Iterator[Bifrost]:
    """`bifrost serve` as a user starts it, on a free loopback port, with `workspace` (file name: source) as its
    workspace and the admin's password set to `PASSWORD`; its log goes to `tmp/serve.log`."""
    if not UI_BUILT.is_file():
        raise RuntimeError(NOT_BUILT)
    (tmp / "workspace").mkdir()
    for name, source in workspace.items():
        (tmp / "workspace" / name).write_text(source)
    port = free_port()
    with (tmp / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [BIFROST, "serve", "--port", str(port)], env=_serve_environment(tmp, port), stdout=log, stderr=log
        )
    try:
        wait_for_port(port, timeout=60, process=process)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60) as admin:
            admin_id = admin.get("/api/users/me").json()["id"]
            set_password = admin.patch(f"/api/users/{admin_id}", json={"password": PASSWORD})
            if not set_password.is_success:
                raise RuntimeError(f"the admin's password was not set: {set_password.text}")
            yield Bifrost(url=url, admin=admin, admin_id=admin_id)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def open_browser(playwright: Playwright, bifrost: Bifrost, profile: Path, **options: Any) -> BrowserContext:
    """The system's Chromium with a fresh profile in `profile`, its pages' relative URLs on `bifrost`."""
    if not CHROMIUM.exists():
        raise RuntimeError(NO_CHROMIUM)
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_FLAGS,
        base_url=bifrost.url,
        viewport=options.pop("viewport", {"width": 1280, "height": 860}),
        **options,
    )


def sign_in(page: Page, email: str = ADMIN_EMAIL, password: str = PASSWORD) -> None:
    """Sign in from the sign-in page, and wait for the first page after it."""
    page.goto("/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Workflows", level=1).wait_for(timeout=60_000)
