"""The web UI in a real browser: the system's Chromium, driven by Playwright, against a real `bifrost serve` on a
free loopback port with a workspace of its own (see `bifrost_devtools.browser`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from bifrost_devtools.browser import (
    CHROMIUM,
    NO_CHROMIUM,
    NOT_BUILT,
    PASSWORD,
    REPO,
    UI_BUILT,
    Bifrost,
    open_browser,
    serving,
)

AXE_SCRIPT = REPO / "ui" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "docs" / "images"
VIEWER_EMAIL = "viewer@example.test"
# A loaded machine may take a while to start a runner or to render; these are waits, not speed limits.
expect.set_options(timeout=30_000)

UI_FLOWS = '''
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
UI_FORMS = '''
import asyncio
import logging

from bifrost import config, data_provider, workflow

logger = logging.getLogger(__name__)

_MANAGERS = {
    "IT": [("ada@example.com", "Ada Lovelace"), ("linus@example.com", "Linus Torvalds")],
    "Finance": [("grace@example.com", "Grace Hopper")],
}


@data_provider(cache_ttl_seconds=0)
async def ui_departments() -> list[dict[str, str]]:
    return [{"value": name, "label": name} for name in _MANAGERS]


@data_provider(cache_ttl_seconds=0)
async def ui_managers(department: str) -> list[dict[str, str]]:
    return [{"value": email, "label": name} for email, name in _MANAGERS.get(department, [])]


@workflow(category="People", execution_mode="async")
async def move_person(email: str, department: str, manager: str, reason: str = "") -> dict[str, str]:
    """Move a person to another department and manager.

    It waits for the config entry `release` to name the person before it moves them.
    """
    logger.info("moving %s to %s under %s", email, department, manager)
    while await config.get("release") != email:
        await asyncio.sleep(0.1)
    logger.info("moved %s", email)
    return {"email": email, "department": department, "manager": manager, "reason": reason}
'''

WORKSPACE = {"ui_flows.py": UI_FLOWS, "ui_forms.py": UI_FORMS}


# Package-scoped, not session-scoped: Playwright's sync API keeps an event loop running in the main thread until it
# stops, and later tests that start one of their own (asyncio.run) must not find it.
@pytest.fixture(scope="package")
def bifrost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bifrost]:
    if not UI_BUILT.is_file():
        pytest.fail(NOT_BUILT)
    with serving(tmp_path_factory.mktemp("ui"), WORKSPACE) as running:
        viewer = running.admin.post("/api/users", json={"email": VIEWER_EMAIL, "password": PASSWORD, "role": "member"})
        assert viewer.status_code == 201, viewer.text
        yield running


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(NO_CHROMIUM)
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
