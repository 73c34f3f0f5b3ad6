"""Forms over HTTP: saving them (org admins, platform admins for global ones), reading and rendering them,
the choices of their fields, and submitting them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from control_plane.api.dependencies import ServicesDep, UserDep, client_address
from control_plane.api.models.data_providers import OptionsOut
from control_plane.api.models.executions import ExecutionAccepted, ExecutionOut
from control_plane.api.models.forms import FormCreate, FormOut, FormValues, RenderedOut
from control_plane.api.starting import started_answer
from control_plane.forms.definition import FormSpec

router = APIRouter(prefix="/api/forms", tags=["forms"])

_INVALID_FORM: dict[int | str, dict[str, Any]] = {
    422: {"description": "A field that does not fit the workflow or the data providers, one error per field."}
}


@router.get("", response_model_exclude_unset=True)
def list_forms(services: ServicesDep, user: UserDep) -> list[FormOut]:
    """The forms the caller may use or change: their organization's and the global ones."""
    return [FormOut.of(view) for view in services.forms.visible_forms(user)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model_exclude_unset=True, responses=_INVALID_FORM)
def create_form(body: FormCreate, request: Request, services: ServicesDep, user: UserDep) -> FormOut:
    """Save a form of the organization acted for (its admins), or a global one (platform admins). Left out,
    `fields` become one field per parameter of the workflow."""
    spec = FormSpec.model_validate(body.model_dump(exclude={"is_global"}, exclude_unset=True))
    return FormOut.of(services.forms.create(user, spec, is_global=body.is_global, ip=client_address(request)))


@router.post("/preview", responses=_INVALID_FORM)
def preview_form(body: FormCreate, services: ServicesDep, user: UserDep) -> RenderedOut:
    """A form as `GET /api/forms/{id}/schema` would render it once saved, checked as saving it is; nothing is
    stored. Its data-provider fields name no `optionsPath`: the page calls the providers with the inputs."""
    spec = FormSpec.model_validate(body.model_dump(exclude={"is_global"}, exclude_unset=True))
    return RenderedOut.of(services.forms.preview(user, spec, is_global=body.is_global))


@router.get("/{form_id}", response_model_exclude_unset=True)
def get_form(form_id: str, services: ServicesDep, user: UserDep) -> FormOut:
    return FormOut.of(services.forms.get(user, form_id))


@router.put("/{form_id}", response_model_exclude_unset=True, responses=_INVALID_FORM)
def update_form(form_id: str, body: FormSpec, request: Request, services: ServicesDep, user: UserDep) -> FormOut:
    """Replace the form's definition; its scope (organization or global) stays."""
    return FormOut.of(services.forms.update(user, form_id, body, ip=client_address(request)))


@router.delete("/{form_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_form(form_id: str, request: Request, services: ServicesDep, user: UserDep) -> Response:
    services.forms.delete(user, form_id, ip=client_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{form_id}/schema", responses={409: {"description": "The form needs attention."}})
def get_form_schema(form_id: str, services: ServicesDep, user: UserDep) -> RenderedOut:
    """The form as JSON Schema and an @rjsf/core uiSchema."""
    return RenderedOut.of(services.forms.rendered(user, form_id))


@router.post(
    "/{form_id}/fields/{field_name}/options",
    responses={
        409: {"description": "The form needs attention."},
        422: {"description": "A field the provider reads has a wrong value, or none yet."},
        502: {"description": "The provider failed, or returned something else than a list of options."},
        504: {"description": "The provider did not answer within its timeout."},
    },
)
async def get_field_options(
    form_id: str, field_name: str, services: ServicesDep, user: UserDep, body: FormValues | None = None
) -> OptionsOut:
    """The choices of a field whose data provider gives them, for the form's current values: the provider is
    called (or its options reused) with the field's inputs, the fixed ones and those read from other fields."""
    values = body.values if body else {}
    return OptionsOut.of(await services.forms.field_options(user, form_id, field_name, values))


@router.post(
    "/{form_id}/submit",
    responses={
        200: {"model": ExecutionOut, "description": "Ran sync and finished within the sync wait."},
        202: {"model": ExecutionAccepted, "description": "Started; follow it by its execution id."},
        409: {"description": "The form needs attention."},
        422: {"description": "Invalid values, one error per field, located as `values.<field>`."},
    },
)
async def submit_form(
    form_id: str, request: Request, services: ServicesDep, user: UserDep, body: FormValues | None = None
) -> Response:
    """Check the values and start the form's workflow as the caller, with trigger `form`; answered as the
    workflow's execute endpoint answers."""
    values = body.values if body else {}
    return started_answer(*await services.forms.submit(user, form_id, values, ip=client_address(request)))
