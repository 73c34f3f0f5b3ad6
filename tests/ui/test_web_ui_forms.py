"""Forms in the web UI, in a real browser against a real `bifrost serve`: an admin builds one with a live preview,
people fill it in with choices from data providers and run it, and only those it is meant for see it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from bifrost_devtools.browser import PASSWORD, Bifrost, sign_in
from tests.ui.conftest import VIEWER_EMAIL, Browser, assert_accessible, screenshot

EXECUTION_URL = re.compile(r"/executions/[0-9a-f-]{36}$")
FORM_URL = re.compile(r"/forms/[0-9a-f-]{36}$")
NOT_SHARED = "There is no such form, or it is not shared with you."


def eventually(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout} s for {what}")


def make_form(bifrost: Bifrost, **form: Any) -> str:
    made = bifrost.admin.post("/api/forms", json=form)
    assert made.status_code == 201, made.text
    form_id: str = made.json()["id"]
    return form_id


@pytest.fixture
def forms_made(bifrost: Bifrost) -> Iterator[list[str]]:
    """The forms a test makes, deleted after it, so that each test sees only its own in the list."""
    made: list[str] = []
    yield made
    for form_id in made:
        assert bifrost.admin.delete(f"/api/forms/{form_id}").status_code == 204


def field_editor(page: Page, name: str) -> Locator:
    return page.get_by_role("form", name="Form definition").get_by_role("group", name=f"Field {name}")


def test_an_admin_builds_a_form_then_it_is_filled_in_with_dependent_choices_and_run(
    bifrost: Bifrost, browser: Browser, forms_made: list[str]
) -> None:
    page = browser.page()
    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Forms").click()
    expect(page.get_by_role("heading", name="Forms", level=1)).to_be_visible()
    page.get_by_role("link", name="New form").click()
    expect(page.get_by_role("heading", name="New form", level=1)).to_be_visible()

    definition = page.get_by_role("form", name="Form definition")
    definition.get_by_label("Name", exact=True).fill("Move a person")
    definition.get_by_label("Workflow").select_option("move_person")
    preview = page.get_by_role("region", name="Preview")
    expect(preview.get_by_label("Email")).to_be_visible()

    department = field_editor(page, "department")
    department.get_by_label("Data provider").select_option("ui_departments")
    manager = field_editor(page, "manager")
    manager.get_by_label("Widget").select_option("radio")
    manager.get_by_label("Data provider").select_option("ui_managers")
    manager.get_by_label("Input department").select_option(label="The value of department")
    reason = field_editor(page, "reason")
    reason.get_by_label("Label").fill("Why")
    reason.get_by_label("Shown when (JSON Logic)").fill('{"==": [{"var": "department"}, "Finance"]}')
    reason.get_by_label("Maximum length").fill("40")
    page.get_by_role("button", name="Add a text").click()
    page.get_by_role("group", name="Text text_1").get_by_label("Text (Markdown)").fill("It takes effect **at once**.")

    # The preview follows every change: the label, the condition, the choices from the providers.
    expect(preview.get_by_label("Department")).to_contain_text("Finance")
    expect(preview.get_by_role("group", name="Manager")).to_contain_text("Choices once Department is filled in.")
    preview.get_by_label("Department").select_option("Finance")
    expect(preview.get_by_label("Why")).to_be_visible()
    expect(preview.get_by_role("radio", name="Grace Hopper")).to_be_visible()
    preview.get_by_label("Department").select_option("IT")
    expect(preview.get_by_role("radio", name="Ada Lovelace")).to_be_visible()
    expect(preview.get_by_label("Why")).to_have_count(0)
    assert_accessible(page)
    screenshot(page, "form-builder")

    # A widget that does not fit its parameter is shown at its field, and the form is not saved.
    reason.get_by_label("Widget").select_option("checkbox")
    expect(reason.locator(".field-error")).to_contain_text("widget")
    page.get_by_role("button", name="Save form").click()
    expect(reason.locator(".field-error")).to_contain_text("widget")
    assert "Move a person" not in [form["name"] for form in bifrost.admin.get("/api/forms").json()]
    reason.get_by_label("Widget").select_option("")
    page.get_by_role("button", name="Save form").click()
    expect(page).to_have_url(FORM_URL)
    form_id = page.url.rsplit("/", 1)[1]
    forms_made.append(form_id)
    expect(page.get_by_role("heading", name="Move a person", level=1)).to_be_visible()

    # Filling it in: the managers follow the department chosen, the reason shows for Finance only.
    expect(page.locator("strong", has_text="at once")).to_be_visible()
    expect(page.get_by_text("text_1")).to_have_count(0)
    expect(page.get_by_role("group", name="Manager")).to_contain_text("Choices once Department is filled in.")
    page.get_by_label("Email").fill("new@example.com")
    expect(page.get_by_label("Department")).to_contain_text("Finance")
    page.get_by_label("Department").select_option("IT")
    expect(page.get_by_role("radio", name="Ada Lovelace")).to_be_visible()
    expect(page.get_by_role("radio", name="Linus Torvalds")).to_be_visible()
    expect(page.get_by_label("Why")).to_have_count(0)
    page.get_by_role("radio", name="Ada Lovelace").check()
    page.get_by_label("Department").select_option("Finance")
    expect(page.get_by_role("radio", name="Grace Hopper")).to_be_visible()
    expect(page.get_by_role("radio", name="Ada Lovelace")).to_have_count(0)
    expect(page.get_by_role("radio", name="Grace Hopper")).not_to_be_checked()
    page.get_by_label("Why").fill("Moves to the new team")
    assert_accessible(page)
    screenshot(page, "form")

    # Nobody chosen: the form says so under the field and nothing runs.
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#root_manager__error")).to_contain_text("required")
    expect(page).to_have_url(FORM_URL)

    page.get_by_role("radio", name="Grace Hopper").check()
    page.get_by_role("button", name="Run").click()
    expect(page).to_have_url(EXECUTION_URL)
    execution_id = page.url.rsplit("/", 1)[1]
    log = page.get_by_role("region", name="Log", exact=True)
    expect(log).to_contain_text("moving new@example.com to Finance under grace@example.com")
    expect(page.locator(".status-line .badge")).to_have_text("Running")
    assert bifrost.admin.put("/api/config/release", json={"value": "new@example.com"}).is_success
    try:
        expect(page.locator(".status-line .badge")).to_have_text("Success")
        expect(log).to_contain_text("moved new@example.com")
        expect(page.locator(".result")).to_contain_text("Moves to the new team")
    finally:
        assert bifrost.admin.delete("/api/config/release").status_code == 204
    execution = bifrost.admin.get(f"/api/executions/{execution_id}").json()
    assert (execution["trigger"], execution["form_id"]) == ("form", form_id)
    assert execution["parameters"] == {
        "email": "new@example.com",
        "department": "Finance",
        "manager": "grace@example.com",
        "reason": "Moves to the new team",
    }

    # The admin opens the form again in the builder: it shows what was saved.
    page.goto(f"/forms/{form_id}")
    page.get_by_role("link", name="Edit form").click()
    expect(field_editor(page, "reason").get_by_label("Label")).to_have_value("Why")
    expect(field_editor(page, "manager").get_by_label("Input department")).to_have_value("field:department")


def test_a_form_of_another_organization_does_not_exist_for_its_users(
    bifrost: Bifrost, browser: Browser, forms_made: list[str]
) -> None:
    form_id = make_form(bifrost, name="Rate the site", workflow="count_devices")
    forms_made.append(form_id)
    org = bifrost.admin.post("/api/orgs", json={"name": "Elsewhere"})
    assert org.status_code == 201, org.text
    outsider = bifrost.admin.post(
        "/api/users",
        json={"email": "admin@elsewhere.test", "password": PASSWORD, "role": "org_admin"},
        headers={"X-Bifrost-Org": org.json()["id"]},
    )
    assert outsider.status_code == 201, outsider.text

    page = browser.page()
    sign_in(page, "admin@elsewhere.test")
    page.goto("/forms")
    expect(page.get_by_text("No forms yet.")).to_be_visible()
    page.goto(f"/forms/{form_id}")
    expect(page.get_by_role("alert")).to_have_text(NOT_SHARED)
    page.goto(f"/forms/{form_id}/edit")
    expect(page.get_by_role("alert")).to_contain_text("no form")
    assert_accessible(page)


def test_a_form_for_some_roles_is_hidden_from_the_others(
    bifrost: Bifrost, browser: Browser, forms_made: list[str]
) -> None:
    form_id = make_form(bifrost, name="Admins only", workflow="count_devices", access="roles", roles=["org_admin"])
    forms_made.append(form_id)
    everyone_id = make_form(bifrost, name="For everyone", workflow="count_devices")
    forms_made.append(everyone_id)

    page = browser.page()
    sign_in(page, VIEWER_EMAIL)
    page.goto("/forms")
    expect(page.get_by_role("link", name="For everyone", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Admins only", exact=True)).to_have_count(0)
    expect(page.get_by_role("link", name="New form")).to_have_count(0)
    page.goto(f"/forms/{form_id}")
    expect(page.get_by_role("alert")).to_contain_text("is for the roles org_admin only")
    expect(page.get_by_role("button", name="Run")).to_have_count(0)
    page.goto("/forms/new")
    expect(page.get_by_role("alert")).to_have_text("Only admins of Default may see this page.")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page)
    page.goto("/forms")
    expect(page.get_by_role("link", name="Admins only", exact=True)).to_be_visible()
    expect(page.locator(f'tr[data-form="{form_id}"]')).to_contain_text("roles: org_admin")


def test_a_form_whose_workflow_changed_is_marked_with_the_reason(
    bifrost: Bifrost, browser: Browser, forms_made: list[str]
) -> None:
    source = "from bifrost import workflow\n\n\n@workflow\ndef rate({}: int = 1) -> int:\n    return 1\n"
    files = "/api/workspace/files/ui_rating.py"
    assert bifrost.admin.put(files, content=source.format("level").encode()).is_success
    try:
        eventually(lambda: bifrost.admin.get("/api/workflows/rate").status_code == 200, "the workflow")
        fields = [{"name": "level", "widget": "number", "validation": {"maximum": 5}}]
        form_id = make_form(bifrost, name="Rating", workflow="rate", fields=fields)
        forms_made.append(form_id)
        assert bifrost.admin.put(files, content=source.format("grade").encode()).is_success
        eventually(
            lambda: bifrost.admin.get(f"/api/forms/{form_id}").json()["needs_attention"], "the form to need attention"
        )
        page = browser.page()
        sign_in(page)
        page.goto("/forms")
        row = page.locator(f'tr[data-form="{form_id}"]')
        expect(row).to_contain_text("Needs attention")
        problems = bifrost.admin.get(f"/api/forms/{form_id}").json()["problems"]
        expect(row).to_contain_text(problems[0]["message"])
        assert_accessible(page)
        row.get_by_role("link", name="Rating", exact=True).click()
        expect(page.get_by_role("alert")).to_contain_text("This form needs attention before it can be used")
        expect(page.get_by_role("button", name="Run")).to_have_count(0)
    finally:
        assert bifrost.admin.delete(files).status_code == 204
