"""Schedules and retries in the web UI, in a real browser against a real `bifrost serve`: an admin makes a
schedule (its refusals shown under their fields), sees when it fires and disables it; the execution detail of a
retried run shows every attempt."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from bifrost_devtools.browser import Bifrost, sign_in
from tests.ui.conftest import VIEWER_EMAIL, Browser, assert_accessible, screenshot

SCHEDULE_URL = re.compile(r"/schedules/[0-9a-f-]{36}$")
RETRIED = '''
from bifrost import workflow


@workflow(retries={"count": 1, "backoff_seconds": 3600})
def flaky_sync() -> None:
    """Fails; tried once more an hour later."""
    raise RuntimeError("the directory is busy")
'''


def eventually(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout} s for {what}")


def test_an_admin_makes_a_schedule_sees_when_it_fires_and_disables_it(bifrost: Bifrost, browser: Browser) -> None:
    page = browser.page()
    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Schedules").click()
    expect(page.get_by_role("heading", name="Schedules", level=1)).to_be_visible()
    page.get_by_role("link", name="New schedule").click()
    expect(page.get_by_role("heading", name="New schedule", level=1)).to_be_visible()

    form = page.get_by_role("form", name="Schedule")
    form.get_by_label("Workflow").select_option("count_devices")
    form.get_by_label("Cron expression").fill("0 25 * * *")
    form.get_by_label("Time zone").fill("Europe/Berlin")
    form.get_by_role("button", name="Save schedule").click()
    # A cron expression that is not one is refused under its field, and nothing is stored.
    expect(page.locator("#schedule-cron-error")).to_be_visible()
    expect(form.get_by_label("Cron expression")).to_have_attribute("aria-invalid", "true")
    assert bifrost.admin.get("/api/schedules").json() == []

    # Parameters that do not fit the workflow: each problem names its parameter, under the parameters.
    form.get_by_label("Cron expression").fill("0 6 * * *")
    form.get_by_role("button", name="Save schedule").click()
    expect(page.locator("#schedule-parameters-error")).to_contain_text("site")
    expect(page.locator("#schedule-cron-error")).to_have_count(0)
    assert bifrost.admin.get("/api/schedules").json() == []
    assert_accessible(page)

    form.get_by_label("Parameters (JSON)").fill('{"site": "north"}')
    form.get_by_label("Description").fill("Morning count")
    form.get_by_role("button", name="Save schedule").click()
    expect(page).to_have_url(SCHEDULE_URL)
    schedule_id = page.url.rsplit("/", 1)[1]
    try:
        saved = bifrost.admin.get(f"/api/schedules/{schedule_id}").json()
        assert (saved["cron"], saved["timezone"], saved["parameters"]) == (
            "0 6 * * *",
            "Europe/Berlin",
            {"site": "north"},
        )
        next_fires = page.get_by_role("region", name="Next fire times").locator("time")
        expect(next_fires).to_have_count(5)
        assert [next_fires.nth(i).get_attribute("datetime") for i in range(5)] == saved["next_fire_times"]
        assert_accessible(page)

        page.get_by_role("link", name="All schedules").click()
        row = page.locator(f'tr[data-schedule="{schedule_id}"]')
        expect(row).to_contain_text("0 6 * * *")
        expect(row).to_contain_text("Europe/Berlin")
        expect(row).to_contain_text("Morning count")
        expect(row.locator("time")).to_have_count(3)
        expect(row).to_contain_text("Fires")
        assert_accessible(page)
        screenshot(page, "schedules")

        row.get_by_label("Enabled: count_devices").uncheck()
        expect(row).to_contain_text("Disabled")
        expect(row.get_by_label("Enabled: count_devices")).not_to_be_checked()
        disabled = bifrost.admin.get(f"/api/schedules/{schedule_id}").json()
        assert (disabled["enabled"], disabled["next_fire_at"]) == (False, None)
    finally:
        assert bifrost.admin.delete(f"/api/schedules/{schedule_id}").status_code == 204


def test_a_member_sees_no_schedules(bifrost: Bifrost, browser: Browser) -> None:
    page = browser.page()
    sign_in(page, VIEWER_EMAIL)
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflows")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Schedules")).to_have_count(0)
    page.goto("/schedules")
    expect(page.get_by_role("alert")).to_have_text("Only admins of Default may see this page.")


def test_a_retried_run_shows_every_attempt_and_when_the_next_starts(bifrost: Bifrost, browser: Browser) -> None:
    files = "/api/workspace/files/ui_retries.py"
    assert bifrost.admin.put(files, content=RETRIED.encode()).is_success
    retry_id = None
    try:
        eventually(lambda: bifrost.admin.get("/api/workflows/flaky_sync").status_code == 200, "the workflow")
        started = bifrost.admin.post(
            "/api/workflows/flaky_sync/execute", json={"parameters": {}}, params={"sync": False}
        )
        assert started.status_code == 202, started.text
        first_id = started.json()["execution_id"]
        assert bifrost.finished(first_id)["status"] == "Failed"
        attempts = bifrost.admin.get(f"/api/executions/{first_id}").json()["attempts"]
        assert [(attempt["attempt"], attempt["status"]) for attempt in attempts] == [(1, "Failed"), (2, "Pending")]
        retry_id = attempts[1]["execution_id"]

        page = browser.page()
        sign_in(page)
        page.goto(f"/executions/{first_id}")
        chain = page.get_by_role("list", name="Attempts")
        expect(chain.get_by_role("listitem")).to_have_count(2)
        expect(chain.get_by_role("listitem").nth(0)).to_contain_text("Attempt 1 (this one)")
        expect(chain.get_by_role("listitem").nth(0)).to_contain_text("Failed")
        expect(chain.get_by_role("listitem").nth(1)).to_contain_text("Pending")
        expect(chain.get_by_role("listitem").nth(1)).to_contain_text("starts after its backoff")
        assert_accessible(page)

        chain.get_by_role("link", name="Attempt 2").click()
        expect(page).to_have_url(re.compile(f"/executions/{retry_id}$"))
        expect(page.get_by_text("Waiting for its backoff")).to_be_visible()
        expect(page.get_by_role("list", name="Attempts")).to_contain_text("Attempt 2 (this one)")
        page.get_by_role("link", name="the first attempt").click()
        expect(page).to_have_url(re.compile(f"/executions/{first_id}$"))
    finally:
        if retry_id is not None:
            assert bifrost.admin.post(f"/api/executions/{retry_id}/cancel").is_success
        assert bifrost.admin.delete(files).status_code == 204
