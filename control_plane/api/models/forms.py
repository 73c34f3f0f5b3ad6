"""Request and response bodies of forms (their definition is `control_plane.forms.definition`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from control_plane.db.models import FormAccess, OrgRole, as_utc
from control_plane.forms.definition import FieldSpec, FormSpec
from control_plane.forms.service import FormView, RenderedForm


class FormCreate(FormSpec):
    is_global: bool = Field(False, description="A global form, for every organization (platform admins only).")


class ProblemOut(BaseModel):
    field: str | None = Field(description="The field it is about; null: the form as a whole.")
    message: str


class FormOut(BaseModel):
    """A form; its `fields` show what was set on each, the rest comes from the workflow's parameters."""

    id: str
    name: str
    description: str | None
    workflow: str
    org_id: str | None = Field(description="Null: a global form.")
    access: FormAccess
    roles: list[OrgRole]
    fields: list[FieldSpec]
    needs_attention: bool = Field(description="The workflow or a data provider changed so that it no longer fits.")
    problems: list[ProblemOut] = Field(description="Why it needs attention.")
    created_by: str | None
    updated_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: FormView) -> FormOut:
        form = view.form
        return cls(
            id=form.id,
            name=form.name,
            description=form.description,
            workflow=form.workflow_name,
            org_id=form.org_id,
            access=FormAccess(form.access),
            roles=[OrgRole(role) for role in form.roles],
            fields=view.fields,
            needs_attention=view.needs_attention,
            problems=[ProblemOut(field=problem.field, message=problem.message) for problem in view.problems],
            created_by=form.created_by,
            updated_by=form.updated_by,
            created_at=as_utc(form.created_at),
            updated_at=as_utc(form.updated_at),
        )


class RenderedOut(BaseModel):
    """What @rjsf/core renders: `<Form schema={schema} uiSchema={uiSchema} />`."""

    json_schema: dict[str, Any] = Field(serialization_alias="schema", description="The values, as JSON Schema.")
    ui_schema: dict[str, Any] = Field(serialization_alias="uiSchema", description="How each field is shown.")

    @classmethod
    def of(cls, rendered: RenderedForm) -> RenderedOut:
        return cls(json_schema=rendered.schema, ui_schema=rendered.ui_schema)


class FormValues(BaseModel):
    values: dict[str, Any] = Field(default_factory=dict, description="The fields' values by name.")
