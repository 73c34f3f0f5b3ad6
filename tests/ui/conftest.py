"""The web UI in a real browser: the system's Chromium, driven by Playwright, against a real `bifrost serve` on a
free loopback port with a workspace of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from bifrost_devtools.services import free_port, wait_for_port
from control_plane.security.bootstrap import ADMIN_EMAIL

REPO = Path(__file__).resolve().parents[2]
UI_DIR = REPO / "ui" / "dist"
UI_BUILT = UI_DIR / "index.html"
NOT_BUILT = f"the web UI is not built (no {UI_BUILT}): run `make ui`"
AXE_SCRIPT = REPO / "ui" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "docs" / "images"
CHROMIUM = Path("/usr/bin/chromium")
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
VIEWER_EMAIL = "viewer@example.test"
# A loaded machine may take a while to start a runner or to render; these are waits, not speed limits.
expect.set_options(timeout=30_000)

WORKFLOWS = '''
import asyncio
import logging
from typing import Annotated, Literal

from pydantic import Field

from bifrost import config, workflow

logger = logging.getLogger(__name__)


@workflow(category="Inventory", tags=["report"])
async def count_devices(
    site: Annotated[str, Field(description="The site whose devices are counted.")],
    batches: Annotated[int, Field(ge=1, le=10, description="How many batches to count.")] = 3,
) -> list[dict[str, object]]:
    """Count the devices of a site, batch by batch.

    It waits for the config entry `release` to name the site before it counts.
    """
    logger.info("counting the devices of %s in %d batches", site, batches)
    while await config.get("release") != site:
        await asyncio.sleep(0.1)
    for batch in range(1, batches + 1):
        logger.info("batch %d counted", batch)
    return [{"batch": batch, "site": site, "devices": batch * 10} for batch in range(1, batches + 1)]


@workflow(category="Inventory")
async def label_devices(
    labels: dict[str, str], access: list[Literal["read", "write"]] = ["read"]
) -> dict[str, object]:
    """Put labels on devices."""
    return {"labels": labels, "access": access}


@workflow(category="Maintenance")
async def hold(seconds: float = 600) -> None:
    """Wait, doing nothing, for a while."""
    logger.info("holding for %s seconds", seconds)
    await asyncio.sleep(seconds)


@workflow(category="Maintenance")
def chatter(lines: int = 100) -> dict[str, int]:
    """Log many lines."""
    for number in range(1, lines + 1):
        logger.info("line %d of %d", number, lines)
    return {"lines": lines}


@workflow
async def fail_loudly(reason: str = "the disk is full") -> None:
    """Raise an error."""
    raise RuntimeError(reason)
'''


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
def serving(tmp: Path) -> Iterator[Bifrost]:
    """`bifrost serve` as a user starts it, on a free loopback port, with the workflows above, the admin's
    password set and a viewer (a member of the default organization)."""
    if not UI_BUILT.is_file():
        raise RuntimeError(NOT_BUILT)
    (tmp / "workspace").mkdir()
    (tmp / "workspace" / "ui_flows.py").write_text(WORKFLOWS)
    port = free_port()
    with (tmp / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [BIFROST, "serve", "--port", str(port)], env=_serve_environment(tmp, port), stdout=log, stderr=log
        )
    try:
        wait_for_port(port, timeout=60)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60) as admin:
            admin_id = admin.get("/api/users/me").json()["id"]
            assert admin.patch(f"/api/users/{admin_id}", json={"password": PASSWORD}).is_success
            viewer = admin.post("/api/users", json={"email": VIEWER_EMAIL, "password": PASSWORD, "role": "member"})
            assert viewer.status_code == 201, viewer.text
            yield Bifrost(url=url, admin=admin, admin_id=admin_id)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Package-scoped, not session-scoped: Playwright's sync API keeps an event loop running in the main thread until it
# stops, and later tests that start one of their own (asyncio.run) must not find it.
@pytest.fixture(scope="package")
def bifrost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bifrost]:
    if not UI_BUILT.is_file():
        pytest.fail(NOT_BUILT)
    with serving(tmp_path_factory.mktemp("ui")) as running:
        yield running


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install the Debian package `chromium` (make test does)")
    with sync_playwright() as running:
        yield running


@dataclass
class Browser:
    """A fresh browser profile, and every error its pages logged (a CSP violation among them)."""

    context: BrowserContext
    errors: list[str]

    def page(self) -> Page:
        page = self.context.new_page()
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return page


def open_browser(playwright: Playwright, bifrost: Bifrost, profile: Path, **options: Any) -> BrowserContext:
    """The system's Chromium with a fresh profile in `profile`, its pages' relative URLs on `bifrost`."""
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_FLAGS,
        base_url=bifrost.url,
        viewport=options.pop("viewport", {"width": 1280, "height": 860}),
        **options,
    )


@pytest.fixture
def browser(playwright: Playwright, bifrost: Bifrost, tmp_path: Path) -> Iterator[Browser]:
    context = open_browser(playwright, bifrost, tmp_path / "profile")
    errors: list[str] = []
    try:
        yield Browser(context, errors)
    finally:
        context.close()
    # A refused request (401 for the signed-out check, 422 for bad input) is an answer, not a page error.
    unexpected = [error for error in errors if "Failed to load resource" not in error]
    assert unexpected == [], f"the pages logged errors: {unexpected}"


def sign_in(page: Page, email: str = ADMIN_EMAIL, password: str = PASSWORD) -> None:
    page.goto("/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Workflows", level=1)).to_be_visible()


def screenshot(page: Page, name: str) -> None:
    """A picture of the page, taken on every run; with BIFROST_UPDATE_SCREENSHOTS=1 it replaces the README's
    picture in docs/images (otherwise a test run would leave the pictures, which differ by a few pixels from run
    to run, changed in the working tree)."""
    page.evaluate("window.scrollTo(0, 0)")
    picture = page.screenshot(full_page=False)
    assert picture.startswith(b"\x89PNG"), f"no picture of {name}"
    if os.environ.get("BIFROST_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f"{name}.png").write_bytes(picture)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """The serious and critical accessibility violations axe-core finds on the page as it is."""
    if not page.evaluate("() => 'axe' in window"):
        page.evaluate(AXE_SCRIPT.read_text())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
            .filter((v) => v.impact === 'serious' || v.impact === 'critical')
            .map((v) => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' '))}))"""
    )
    return found


def assert_accessible(page: Page) -> None:
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, indent=2)
