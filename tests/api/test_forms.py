"""Forms over HTTP against the real app with real runners: saving them checked against the workflow and the data
providers, rendering them for @rjsf/core, dependent choices, submitting them, and forms that no longer fit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Bifrost, eventually, running_bifrost

ONBOARDING = '''
from datetime import date
from typing import Literal

from bifrost import context, data_provider, workflow


@workflow(execution_mode="sync")
async def onboard(
    email: str,
    name: str,
    department: str,
    manager: str,
    laptop: Literal["mac", "linux"] = "mac",
    start: date | None = None,
    remote: bool = False,
    office: str = "HQ",
    seats: int = 1,
):
    """Onboard a new colleague.

    Args:
        email: Their sign-in address.
        seats: Licences to reserve.
    """
    return {
        "email": email,
        "department": department,
        "manager": manager,
        "laptop": laptop,
        "office": office,
        "seats": seats,
        "by": context.user.email,
    }


@data_provider(cache_ttl_seconds=60)
async def departments():
    return [{"value": "it", "label": "IT"}, {"value": "sales", "label": "Sales"}]


@data_provider(cache_ttl_seconds=60)
async def managers(department: str):
    """The managers of one department."""
    return [{"value": m, "label": m.title()} for m in {"it": ["ada", "linus"], "sales": ["grace"]}[department]]
'''

DEPENDENT_FIELDS: list[dict[str, Any]] = [
    {"name": "intro", "widget": "markdown", "content": "**Welcome.** Fill in the newcomer's details."},
    {"name": "email", "widget": "email", "placeholder": "ada@example.com"},
    {"name": "name", "label": "Full name", "validation": {"min_length": 2, "pattern": "^[A-Z]"}},
    {"name": "department", "data_provider": {"name": "departments"}},
    {
        "name": "manager",
        "widget": "radio",
        "data_provider": {"name": "managers", "inputs": {"department": {"field": "department"}}},
    },
    {"name": "remote", "help_text": "Works from home."},
    {"name": "office", "visible_if": {"!": {"var": "remote"}}, "default": "Annex"},
    {"name": "seats", "validation": {"minimum": 1, "maximum": 5}},
]


@pytest.fixture(scope="module")
def bifrost(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bifrost]:
    with running_bifrost(tmp_path_factory.mktemp("forms"), database_url, {"onboarding.py": ONBOARDING}) as running:
        with running.client() as admin:
            eventually(lambda: admin.get("/api/workflows/onboard").status_code == 200, what="the workflow")
        yield running


@pytest.fixture
def admin(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with bifrost.client() as client:
        yield client


def create(admin: httpx.Client, **form: Any) -> dict[str, Any]:
    made = admin.post("/api/forms", json={"workflow": "onboard", **form})
    assert made.status_code == 201, made.text
    created: dict[str, Any] = made.json()
    return created


def submit(admin: httpx.Client, form_id: str, **values: Any) -> httpx.Response:
    return admin.post(f"/api/forms/{form_id}/submit", json={"values": values})


def errors_of(response: httpx.Response) -> dict[tuple[Any, ...], str]:
    """Each place of a 422 answer with its messages, joined by "; "."""
    assert response.status_code == 422, response.text
    errors: dict[tuple[Any, ...], list[str]] = {}
    for error in response.json()["detail"]:
        errors.setdefault(tuple(error["loc"]), []).append(error["msg"])
    return {where: "; ".join(messages) for where, messages in errors.items()}


@pytest.fixture(scope="module")
def dependent_form(bifrost: Bifrost) -> dict[str, Any]:
    with bifrost.client() as admin:
        return create(admin, name="Onboarding", description="New colleagues", fields=DEPENDENT_FIELDS)


def test_a_form_without_fields_takes_every_parameter(admin: httpx.Client) -> None:
    form = create(admin, name="Plain onboarding")
    assert [field["name"] for field in form["fields"]] == [
        "email", "name", "department", "manager", "laptop", "start", "remote", "office", "seats",
    ]
    assert form["fields"][0] == {"name": "email"}
    assert (form["needs_attention"], form["problems"], form["access"]) == (False, [], "everyone")
    assert admin.get(f"/api/forms/{form['id']}").json() == form
    rendered = admin.get(f"/api/forms/{form['id']}/schema").json()
    schema, ui = rendered["schema"], rendered["uiSchema"]
    assert schema["required"] == ["email", "name", "department", "manager"]
    email = {"type": "string", "title": "Email", "description": "Their sign-in address."}
    assert schema["properties"]["email"] == email
    assert schema["properties"]["laptop"]["oneOf"] == [
        {"const": "mac", "title": "mac"},
        {"const": "linux", "title": "linux"},
    ]
    assert schema["properties"]["start"] == {"type": "string", "format": "date", "title": "Start"}
    assert schema["properties"]["seats"]["default"] == 1
    assert ui["ui:order"][0] == "email" and ui["laptop"] == {"ui:widget": "select"}
    assert ui["start"] == {"ui:widget": "date"} and ui["remote"] == {"ui:widget": "checkbox"}


def test_the_rendered_form_carries_every_refinement(admin: httpx.Client, dependent_form: dict[str, Any]) -> None:
    rendered = admin.get(f"/api/forms/{dependent_form['id']}/schema").json()
    schema, ui = rendered["schema"], rendered["uiSchema"]
    assert (schema["title"], schema["description"]) == ("Onboarding", "New colleagues")
    assert schema["properties"]["intro"] == {"type": "null"}
    assert ui["intro"] == {"ui:description": DEPENDENT_FIELDS[0]["content"], "ui:enableMarkdownInDescription": True}
    assert schema["properties"]["email"]["format"] == "email"
    assert ui["email"] == {"ui:widget": "email", "ui:placeholder": "ada@example.com"}
    assert schema["properties"]["name"] == {
        "type": "string", "title": "Full name", "minLength": 2, "pattern": "^[A-Z]"
    }
    assert schema["properties"]["seats"] | {"description": ""} == {
        "type": "integer", "title": "Seats", "description": "", "default": 1, "minimum": 1, "maximum": 5,
    }
    assert schema["properties"]["office"]["default"] == "Annex"
    assert ui["office"] == {"ui:options": {"visibleIf": {"!": {"var": "remote"}}}}
    assert ui["manager"] == {
        "ui:widget": "radio",
        "ui:options": {
            "dataProvider": {
                "name": "managers",
                "inputs": {"department": {"field": "department"}},
                "optionsPath": f"/api/forms/{dependent_form['id']}/fields/manager/options",
            }
        },
    }
    assert "oneOf" not in schema["properties"]["manager"]
    assert schema["required"] == ["email", "name", "department", "manager"]


def test_a_preview_renders_a_form_not_saved_yet_and_stores_nothing(
    admin: httpx.Client, dependent_form: dict[str, Any]
) -> None:
    before = admin.get("/api/forms").json()
    definition = {"name": "Onboarding", "description": "New colleagues", "workflow": "onboard"}
    preview = admin.post("/api/forms/preview", json={**definition, "fields": DEPENDENT_FIELDS})
    assert preview.status_code == 200, preview.text
    saved = admin.get(f"/api/forms/{dependent_form['id']}/schema").json()
    assert preview.json()["schema"] == saved["schema"]
    # Not saved, the form has no options route: the page calls the provider with the inputs itself.
    assert preview.json()["uiSchema"]["manager"]["ui:options"]["dataProvider"] == {
        "name": "managers",
        "inputs": {"department": {"field": "department"}},
    }
    wrong = [*DEPENDENT_FIELDS[:5], {"name": "remote", "widget": "email"}]
    refused = admin.post("/api/forms/preview", json={**definition, "name": "Wrong", "fields": wrong})
    assert list(errors_of(refused)) == [("fields", "remote", "widget")]
    assert admin.get("/api/forms").json() == before


def test_a_dropdown_takes_its_choices_from_the_field_above(
    admin: httpx.Client, dependent_form: dict[str, Any]
) -> None:
    path = f"/api/forms/{dependent_form['id']}/fields"
    departments = admin.post(f"{path}/department/options", json={"values": {}})
    assert [option["value"] for option in departments.json()["options"]] == ["it", "sales"]
    it = admin.post(f"{path}/manager/options", json={"values": {"department": "it", "name": "x"}})
    assert it.status_code == 200, it.text
    assert [(o["value"], o["label"]) for o in it.json()["options"]] == [("ada", "Ada"), ("linus", "Linus")]
    sales = admin.post(f"{path}/manager/options", json={"values": {"department": "sales"}}).json()
    assert [option["value"] for option in sales["options"]] == ["grace"]
    call = admin.get(f"/api/executions/{sales['execution_id']}").json()
    assert (call["kind"], call["trigger"], call["form_id"]) == ("data_provider", "form", dependent_form["id"])
    assert call["parameters"] == {"department": "sales"}

    too_early = admin.post(f"{path}/manager/options", json={"values": {}})
    assert errors_of(too_early) == {("values", "department"): "needs a value before 'Manager' can offer its choices"}
    assert admin.post(f"{path}/email/options", json={"values": {}}).status_code == 404


def test_submit_checks_each_field_and_answers_per_field(admin: httpx.Client, dependent_form: dict[str, Any]) -> None:
    answer = submit(
        admin,
        dependent_form["id"],
        email="not-an-address",
        name="a",
        department="it",
        manager="grace",
        seats=9,
        laptop="mac",
    )
    assert errors_of(answer) == {
        ("values", "email"): "not an email address",
        ("values", "name"): "must have at least 2 characters; must match the pattern '^[A-Z]'",
        ("values", "manager"): "'grace' is not one of the choices",
        ("values", "seats"): "must be at most 5",
        ("values", "laptop"): "not a field of this form",
    }
    missing = submit(admin, dependent_form["id"], email="ada@example.com", department="it", seats="many")
    assert errors_of(missing) == {
        ("values", "name"): "a value is required",
        ("values", "manager"): "a value is required",
        ("values", "seats"): "Input should be a valid integer, unable to parse string as an integer",
    }


def test_submit_starts_the_workflow_as_the_user_from_the_form(
    admin: httpx.Client, dependent_form: dict[str, Any]
) -> None:
    values = {"email": "ada@example.com", "name": "Ada", "department": "it", "manager": "linus", "seats": 2}
    answer = submit(admin, dependent_form["id"], **values, remote=True, office="Sent while hidden")
    assert answer.status_code == 200, answer.text
    execution = answer.json()
    assert (execution["status"], execution["trigger"]) == ("Success", "form")
    assert execution["form_id"] == dependent_form["id"]
    assert execution["result"]["by"] == admin.get("/api/users/me").json()["email"]
    assert execution["result"]["office"] == "Annex"  # hidden: the sent value is dropped, the field's default used
    assert execution["parameters"]["office"] == "Annex"
    on_site = submit(admin, dependent_form["id"], **values, office="Lab").json()
    assert on_site["result"]["office"] == "Lab"
    started = admin.get("/api/executions", params={"form": dependent_form["id"]}).json()["executions"]
    assert {e["execution_id"] for e in started} == {execution["execution_id"], on_site["execution_id"]}


@pytest.mark.parametrize(
    ("field", "where", "message"),
    [
        ({"name": "nickname"}, ("fields", "nickname", "name"), "workflow 'onboard' has no parameter 'nickname'"),
        ({"name": "email", "widget": "checkbox"}, ("fields", "email", "widget"), "widget 'checkbox' does not fit"),
        ({"name": "seats", "widget": "email"}, ("fields", "seats", "widget"), "which takes an integer"),
        (
            {"name": "manager", "data_provider": {"name": "people"}},
            ("fields", "manager", "data_provider"),
            "data provider 'people' is not in the workspace",
        ),
        (
            {"name": "manager", "data_provider": {"name": "managers", "inputs": {"department": {"field": "office"}}}},
            ("fields", "manager", "data_provider"),
            "input 'department' reads field 'office', which is not a field above this one",
        ),
        (
            {"name": "manager", "data_provider": {"name": "managers"}},
            ("fields", "manager", "data_provider"),
            "data provider 'managers' needs input 'department'",
        ),
        (
            {"name": "name", "validation": {"pattern": "(?=x)"}},
            ("fields", "name", "validation"),
            "is not a usable regular expression",
        ),
        (
            {"name": "office", "visible_if": {"==": [{"var": "seats"}, 1]}},
            ("fields", "office", "visible_if"),
            "reads field 'seats', which is not a field above this one",
        ),
        ({"name": "laptop", "options": [{"value": "amiga", "label": "Amiga"}]}, ("fields", "laptop", "options"), ""),
        ({"name": "seats", "default": 0, "validation": {"minimum": 1}}, ("fields", "seats", "default"), "at least 1"),
        ({"name": "email", "required": False}, ("fields", "email", "required"), "requires 'email'"),
    ],
)
def test_a_form_that_does_not_fit_is_refused_naming_the_field(
    admin: httpx.Client, field: dict[str, Any], where: tuple[str, ...], message: str
) -> None:
    others = [{"name": name} for name in ("email", "name", "department", "manager") if name != field["name"]]
    before = admin.get("/api/forms").json()
    answer = admin.post("/api/forms", json={"name": "Refused", "workflow": "onboard", "fields": [field, *others]})
    errors = errors_of(answer)
    assert where in errors, errors
    assert message in errors[where]
    assert admin.get("/api/forms").json() == before


def test_a_form_must_cover_the_workflows_required_parameters(admin: httpx.Client) -> None:
    answer = admin.post("/api/forms", json={"name": "Short", "workflow": "onboard", "fields": [{"name": "email"}]})
    assert set(errors_of(answer)) == {("fields",)}
    assert "parameter 'name' is required by workflow 'onboard' and has no field" in errors_of(answer)[("fields",)]
    unknown = admin.post("/api/forms", json={"name": "Nowhere", "workflow": "nope"})
    assert errors_of(unknown) == {("workflow",): "workflow 'nope' is not in the workspace"}


def test_names_are_unique_and_forms_can_be_replaced_and_deleted(admin: httpx.Client) -> None:
    form = create(admin, name="Replaceable")
    assert admin.post("/api/forms", json={"name": "Replaceable", "workflow": "onboard"}).status_code == 409
    fields = [{"name": name} for name in ("email", "name", "department", "manager")]
    fields[2] |= {"widget": "select", "options": [{"value": "it", "label": "IT"}]}
    replaced = admin.put(
        f"/api/forms/{form['id']}",
        json={"name": "Replaced", "workflow": "onboard", "fields": fields, "access": "roles", "roles": ["org_admin"]},
    )
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["name"], replaced.json()["roles"]) == ("Replaced", ["org_admin"])
    assert replaced.json()["fields"][2] == fields[2]
    bad_roles = admin.put(f"/api/forms/{form['id']}", json={"name": "X", "workflow": "onboard", "roles": ["member"]})
    assert bad_roles.status_code == 422
    assert admin.get(f"/api/forms/{form['id']}").json()["name"] == "Replaced"
    assert admin.delete(f"/api/forms/{form['id']}").status_code == 204
    assert admin.get(f"/api/forms/{form['id']}").status_code == 404


def test_a_form_whose_workflow_changed_needs_attention(bifrost: Bifrost, admin: httpx.Client) -> None:
    fields = [
        {"name": name} for name in ("email", "name", "department", "manager")
    ] + [{"name": "remote", "widget": "checkbox"}, {"name": "seats"}]
    form = create(admin, name="Fragile", fields=fields)
    assert form["needs_attention"] is False
    changed = ONBOARDING.replace("remote: bool = False", "remote: str = 'no'").replace("    seats: int = 1,\n", "")
    changed = changed.replace('"seats": seats,', "")
    bifrost.write_workflow("onboarding.py", changed)
    try:

        def flagged() -> dict[str, Any] | None:
            seen: dict[str, Any] = admin.get(f"/api/forms/{form['id']}").json()
            return seen if seen["needs_attention"] else None

        seen = eventually(flagged, what="the form to need attention")
        problems = {problem["field"]: problem["message"] for problem in seen["problems"]}
        assert set(problems) == {"remote", "seats"}
        assert "widget 'checkbox' does not fit parameter 'remote'" in problems["remote"]
        assert "has no parameter 'seats'" in problems["seats"]
        listed = {f["id"]: f for f in admin.get("/api/forms").json()}
        assert listed[form["id"]]["needs_attention"] is True
        refused = submit(admin, form["id"], email="a@b.co", name="Ada", department="it", manager="ada")
        assert refused.status_code == 409
        assert "needs attention" in refused.json()["detail"] and "'seats'" in refused.json()["detail"]
        assert admin.get(f"/api/forms/{form['id']}/schema").status_code == 409
    finally:
        bifrost.write_workflow("onboarding.py", ONBOARDING)
    eventually(lambda: not admin.get(f"/api/forms/{form['id']}").json()["needs_attention"], what="the form to fit")
