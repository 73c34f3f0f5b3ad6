"""What a person does in the web UI, in a real browser against a real `bifrost serve`."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Locator, Page, Playwright, expect

from bifrost_devtools.browser import PASSWORD, Bifrost, open_browser, sign_in
from control_plane.security.bootstrap import ADMIN_EMAIL
from tests.ui.conftest import VIEWER_EMAIL, Browser, assert_accessible, screenshot

EXECUTION_URL = re.compile(r"/executions/[0-9a-f-]{36}$")


def start(bifrost: Bifrost, workflow: str, **parameters: object) -> str:
    started = bifrost.admin.post(
        f"/api/workflows/{workflow}/execute", json={"parameters": parameters}, params={"sync": False}
    )
    assert started.status_code == 202, started.text
    execution_id: str = started.json()["execution_id"]
    return execution_id


def status_badge(page: Page) -> Locator:
    return page.locator(".status-line .badge")


def wait_until_shown(log: Locator, text: str) -> None:
    """Wait until the log row with `text` is within the log's visible part."""
    log.page.wait_for_function(
        """([box, text]) => [...box.querySelectorAll(".log-text")].some((cell) => {
            const row = cell.getBoundingClientRect(), shown = box.getBoundingClientRect();
            return cell.textContent === text && row.top >= shown.top && row.bottom <= shown.bottom;
        })""",
        arg=[log.element_handle(), text],
    )


def test_sign_in_then_find_a_workflow_by_keyboard(bifrost: Bifrost, browser: Browser) -> None:
    page = browser.page()
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in to Bifrost")).to_be_visible()
    assert_accessible(page)
    screenshot(page, "sign-in")

    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")

    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Workflows", level=1)).to_be_visible()
    for category in ("Inventory", "Maintenance", "Uncategorized"):
        expect(page.get_by_role("heading", name=category, level=2)).to_be_visible()
    assert_accessible(page)
    screenshot(page, "workflows")

    page.keyboard.press("/")
    expect(page.get_by_label("Search workflows")).to_be_focused()
    page.keyboard.type("devices")
    expect(page.get_by_role("link", name="count_devices")).to_be_visible()
    expect(page.get_by_role("link", name="hold")).to_have_count(0)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="count_devices")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="count_devices", level=1)).to_be_focused()

    page.reload()
    expect(page.get_by_role("heading", name="count_devices", level=1)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Bifrost")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in to Bifrost")).to_be_visible()


def test_a_run_from_its_form_shows_its_log_while_it_runs_then_its_result(bifrost: Bifrost, browser: Browser) -> None:
    page = browser.page()
    sign_in(page)
    page.get_by_role("link", name="count_devices").click()
    expect(page.get_by_role("heading", name="count_devices", level=1)).to_be_visible()
    expect(page.get_by_text("ui_flows.py:")).to_be_visible()
    assert_accessible(page)
    screenshot(page, "run-form")

    page.get_by_label("Site").fill("north")
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(EXECUTION_URL)
    execution_id = page.url.rsplit("/", 1)[1]
    log = page.get_by_role("region", name="Log", exact=True)
    expect(log).to_contain_text("counting the devices of north in 3 batches")
    # The workflow waits for the release below: the line arrived while it was still running.
    expect(status_badge(page)).to_have_text("Running")
    assert bifrost.admin.get(f"/api/executions/{execution_id}").json()["status"] == "Running"

    assert bifrost.admin.put("/api/config/release", json={"value": "north"}).is_success
    expect(status_badge(page)).to_have_text("Success")
    expect(log).to_contain_text("batch 3 counted")
    table = page.get_by_role("region", name="Table result")
    expect(table.get_by_role("row")).to_have_count(4)
    expect(table.get_by_role("cell", name="30")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download result.csv").click()
    csv = Path(download.value.path()).read_text()
    assert csv.splitlines() == ["batch,site,devices", "1,north,10", "2,north,20", "3,north,30"]
    page.get_by_role("button", name="JSON", exact=True).click()
    expect(page.locator(".result .json-tree")).to_contain_text("north")
    page.get_by_role("button", name="Table", exact=True).click()
    expect(page.get_by_text("Created (Pending)")).to_be_visible()
    expect(page.get_by_text("Workspace revision")).to_be_visible()
    assert_accessible(page)
    screenshot(page, "execution")
    assert bifrost.admin.delete("/api/config/release").status_code == 204


def test_a_value_out_of_range_is_shown_under_its_field_and_nothing_runs(bifrost: Bifrost, browser: Browser) -> None:
    before = bifrost.admin.get("/api/executions", params={"workflow": "count_devices"}).json()["executions"]
    page = browser.page()
    sign_in(page)
    page.goto("/workflows/count_devices")
    page.get_by_label("Site").fill("south")
    page.get_by_label("Batches").fill("50")
    page.get_by_role("button", name="Run").click()
    batches_group = page.locator(".form-group", has=page.get_by_label("Batches"))
    expect(batches_group.locator(".error-detail")).to_contain_text("must be <= 10")
    expect(page.get_by_label("Site")).not_to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"/workflows/count_devices$"))
    assert_accessible(page)
    after = bifrost.admin.get("/api/executions", params={"workflow": "count_devices"}).json()["executions"]
    assert after == before


def test_json_and_choice_parameters_are_checked_before_they_run(bifrost: Bifrost, browser: Browser) -> None:
    page = browser.page()
    sign_in(page)
    page.goto("/workflows/label_devices")
    labels = page.get_by_label("Labels")
    labels.fill('{"rack": ')
    expect(page.get_by_text(re.compile("^Not JSON"))).to_be_visible()
    expect(labels).to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(re.compile(r"/workflows/label_devices$"))
    labels.fill('{"rack": "r1"}')
    expect(labels).not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("read", exact=True)).to_be_checked()
    page.get_by_label("write", exact=True).check()
    assert_accessible(page)
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(EXECUTION_URL)
    expect(status_badge(page)).to_have_text("Success")
    execution = bifrost.admin.get(f"/api/executions/{page.url.rsplit('/', 1)[1]}").json()
    assert execution["parameters"] == {"labels": {"rack": "r1"}, "access": ["read", "write"]}


def test_cancel_a_running_execution(bifrost: Bifrost, browser: Browser) -> None:
    page = browser.page()
    sign_in(page)
    page.goto("/workflows/hold")
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(EXECUTION_URL)
    expect(page.get_by_role("region", name="Log", exact=True)).to_contain_text("holding for 600.0 seconds")
    expect(status_badge(page)).to_have_text("Running")
    page.get_by_role("button", name="Cancel").click()
    expect(status_badge(page)).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    execution_id = page.url.rsplit("/", 1)[1]
    assert bifrost.admin.get(f"/api/executions/{execution_id}").json()["status"] == "Cancelled"


def test_a_viewer_sees_no_admin_page(bifrost: Bifrost, browser: Browser) -> None:
    assert bifrost.admin.put("/api/secrets/ui-hidden-secret", json={"value": "s3cr3t-value"}).is_success
    page = browser.page()
    sign_in(page, VIEWER_EMAIL)
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Workflows")).to_be_visible()
    for admin_page in ("Secrets", "Config", "Members", "Audit log"):
        expect(navigation.get_by_role("link", name=admin_page)).to_have_count(0)
    for path in ("/admin/secrets", "/admin/config", "/admin/members", "/admin/audit"):
        page.goto(path)
        expect(page.get_by_role("alert")).to_have_text("Only admins of Default may see this page.")
        expect(page.get_by_text("ui-hidden-secret")).to_have_count(0)


def test_the_executions_list_filters_and_follows_statuses_live(bifrost: Bifrost, browser: Browser) -> None:
    execution_id = start(bifrost, "hold", seconds=600)
    page = browser.page()
    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Executions").click()
    page.get_by_label("Workflow").select_option("hold")
    expect(page).to_have_url(re.compile(r"/executions\?workflow=hold$"))
    row = page.locator(f'tr[data-execution="{execution_id}"]')
    expect(row.locator(".badge")).to_have_text(re.compile("Pending|Running"))
    assert_accessible(page)
    screenshot(page, "executions")

    assert bifrost.admin.post(f"/api/executions/{execution_id}/cancel").status_code == 202
    expect(row.locator(".badge")).to_have_text("Cancelled")
    page.get_by_label("Status").select_option("Success")
    expect(row).to_have_count(0)
    page.get_by_label("Status").select_option("Cancelled")
    expect(row).to_be_visible()
    page.get_by_label("Started by").select_option(label="Me")
    expect(row).to_be_visible()
    page.get_by_role("button", name="Clear filters").click()
    expect(page).to_have_url(re.compile(r"/executions$"))


def test_a_failed_execution_shows_its_error_and_traceback(bifrost: Bifrost, browser: Browser) -> None:
    execution_id = start(bifrost, "fail_loudly", reason="the disk is full")
    bifrost.finished(execution_id)
    page = browser.page()
    sign_in(page)
    page.goto(f"/executions/{execution_id}")
    expect(status_badge(page)).to_have_text("Failed")
    error = page.get_by_role("region", name="Error")
    expect(error).to_contain_text("RuntimeError: the disk is full")
    expect(page.get_by_label("Traceback")).to_contain_text("raise RuntimeError(reason)")
    expect(page.get_by_role("region", name="Runner")).to_contain_text("local")
    assert_accessible(page)

    page.get_by_role("link", name="Edit and run").click()
    expect(page.get_by_role("heading", name="fail_loudly", level=1)).to_be_visible()
    expect(page.get_by_label("Reason")).to_have_value("the disk is full")
    page.go_back()
    page.get_by_role("button", name="Run again").click()
    expect(page).not_to_have_url(re.compile(execution_id))
    expect(page).to_have_url(EXECUTION_URL)
    expect(status_badge(page)).to_have_text("Failed")
    again = bifrost.admin.get(f"/api/executions/{page.url.rsplit('/', 1)[1]}").json()
    assert again["parameters"] == {"reason": "the disk is full"}


def test_a_log_of_100000_lines_follows_its_end_with_few_rows_in_the_page(bifrost: Bifrost, browser: Browser) -> None:
    execution_id = start(bifrost, "chatter", lines=100_000)
    page = browser.page()
    sign_in(page)
    page.goto(f"/executions/{execution_id}")
    log = page.get_by_role("region", name="Log", exact=True)
    expect(log).to_have_attribute("data-lines", "100000", timeout=240_000)
    expect(status_badge(page)).to_have_text("Success")
    wait_until_shown(log, "line 100000 of 100000")
    assert log.locator(".log-row").count() < 200
    follow = page.get_by_role("button", name="Follow the end")
    log.focus()
    page.keyboard.press("Home")
    expect(follow).to_have_attribute("aria-pressed", "false")
    wait_until_shown(log, "line 1 of 100000")
    page.keyboard.press("End")
    expect(follow).to_have_attribute("aria-pressed", "true")
    wait_until_shown(log, "line 100000 of 100000")
    # Opened again once finished, the page reads the whole stored log back (in batches of lines).
    page.reload()
    expect(log).to_have_attribute("data-lines", "100000", timeout=60_000)
    wait_until_shown(log, "line 100000 of 100000")


def test_admin_pages_keep_secret_values_hidden(bifrost: Bifrost, browser: Browser) -> None:
    page = browser.page()
    sign_in(page)
    navigation = page.get_by_role("navigation", name="Main")
    navigation.get_by_role("link", name="Secrets").click()
    form = page.get_by_role("form", name="Set a secret")
    form.get_by_label("Name").fill("ticketing_token")
    form.get_by_label("Value").fill("tk-very-secret-value")
    form.get_by_role("button", name="Save secret").click()
    expect(page.get_by_role("status")).to_have_text("Secret ticketing_token saved.")
    expect(page.get_by_role("cell", name="ticketing_token", exact=True)).to_be_visible()
    expect(form.get_by_label("Value")).to_have_value("")
    assert "tk-very-secret-value" not in page.content()
    assert_accessible(page)
    screenshot(page, "secrets")

    navigation.get_by_role("link", name="Config").click()
    form = page.get_by_role("form", name="Set a config entry")
    form.get_by_label("Name").fill("region")
    form.get_by_label("Kind").select_option("json")
    form.get_by_label("Value").fill("{not json")
    form.get_by_role("button", name="Save entry").click()
    expect(page.get_by_role("alert")).to_contain_text("Not JSON")
    form.get_by_label("Value").fill('{"name": "eu-west"}')
    form.get_by_role("button", name="Save entry").click()
    expect(page.get_by_role("cell", name="region", exact=True)).to_be_visible()
    assert_accessible(page)

    navigation.get_by_role("link", name="Members").click()
    expect(page.get_by_role("cell", name=VIEWER_EMAIL, exact=True)).to_be_visible()
    page.get_by_label(f"Role of {VIEWER_EMAIL}").select_option("org_admin")
    expect(page.get_by_label(f"Role of {VIEWER_EMAIL}")).to_have_value("org_admin")
    page.get_by_label(f"Role of {VIEWER_EMAIL}").select_option("member")
    assert_accessible(page)

    navigation.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="secret.created").first).to_be_visible()
    assert_accessible(page)
    screenshot(page, "audit")

    navigation.get_by_role("link", name="API keys").click()
    form = page.get_by_role("form", name="Make a key")
    form.get_by_label("Name").fill("ci")
    form.get_by_role("button", name="Make key").click()
    expect(page.get_by_text("Copy it now: it is not shown again.")).to_be_visible()
    key = page.locator(".key-value code").inner_text()
    assert key.startswith("bfk_")
    assert_accessible(page)

    navigation.get_by_role("link", name="Workspace errors").click()
    expect(page.get_by_text("Every workspace file registered cleanly.")).to_be_visible()
    assert_accessible(page)


def test_workspace_errors_name_file_and_line(bifrost: Bifrost, browser: Browser) -> None:
    broken = bifrost.admin.put("/api/workspace/files/broken.py", content=b"from bifrost import workflow\n\ndef (:\n")
    assert broken.is_success, broken.text
    try:
        page = browser.page()
        sign_in(page)
        expect(page.get_by_role("link", name=re.compile("Workspace errors"))).to_contain_text("1")
        page.get_by_role("link", name=re.compile("Workspace errors")).click()
        expect(page.get_by_text("broken.py:3")).to_be_visible()
        assert_accessible(page)
    finally:
        assert bifrost.admin.delete("/api/workspace/files/broken.py").status_code == 204


def test_phone_layout_in_dark_mode(bifrost: Bifrost, playwright: Playwright, tmp_path: Path) -> None:
    context = open_browser(
        playwright,
        bifrost,
        tmp_path / "phone",
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        sign_in(page)
        navigation = page.get_by_role("navigation", name="Main")
        expect(navigation).to_be_hidden()
        assert_accessible(page)
        screenshot(page, "workflows-phone-dark")
        page.get_by_role("button", name="Menu").click()
        expect(navigation).to_be_visible()
        navigation.get_by_role("link", name="Executions").click()
        expect(page.get_by_role("heading", name="Executions", level=1)).to_be_visible()
        expect(navigation).to_be_hidden()
        assert_accessible(page)
        page.goto("/workflows/count_devices")
        assert_accessible(page)
        page.get_by_role("button", name="Menu").click()
        page.get_by_role("button", name="Theme: system").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "light")
        assert_accessible(page)
        page.get_by_role("button", name="Theme: light").click()
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        page.reload()
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    finally:
        context.close()
