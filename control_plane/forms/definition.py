"""What a form is made of, as its author writes it: the workflow it starts, who may use it, and its fields, each
refining one of the workflow's parameters (or showing a text). What a field leaves unset comes from the
parameter: its title, description, default, whether it is required, and a widget that fits its type."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from control_plane.data_providers.options import Option
from control_plane.db.models import FormAccess, OrgRole

FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
MAX_FIELDS = 200


class Widget(StrEnum):
    TEXT = "text"
    TEXTAREA = "textarea"
    EMAIL = "email"
    PASSWORD = "password"
    NUMBER = "number"
    CHECKBOX = "checkbox"
    SELECT = "select"
    RADIO = "radio"
    MULTISELECT = "multiselect"
    DATE = "date"
    DATETIME = "datetime"
    JSON = "json"
    MARKDOWN = "markdown"
    """Read-only text shown in the form (its `content`, in Markdown); it fills no parameter."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Validation(_Strict):
    """Rules a value must follow, on top of the parameter's type. `minimum`/`maximum` bound a number;
    `min_length`/`max_length` count the characters of a text or the choices of a multi-select; `pattern` is a
    regular expression a text must contain a match of (as JSON Schema's `pattern`; no look-around or
    back-references)."""

    minimum: float | None = None
    maximum: float | None = None
    min_length: Annotated[int, Field(ge=0)] | None = None
    max_length: Annotated[int, Field(ge=0)] | None = None
    pattern: Annotated[StrictStr, Field(min_length=1, max_length=1000)] | None = None


class FixedInput(_Strict):
    value: Any = Field(description="This value, always.")


class FieldInput(_Strict):
    field: StrictStr = Field(description="The value of this field, which must come above the one it feeds.")


class ProviderBinding(_Strict):
    """Where a field's options come from: a data provider, called with these inputs."""

    name: StrictStr = Field(description="The data provider.")
    inputs: dict[str, FixedInput | FieldInput] = Field(
        default_factory=dict, description="The provider's parameters: a fixed value, or another field's value."
    )


class FieldSpec(_Strict):
    """One field. `name` is the workflow parameter it fills (any unused name for a markdown text); every other
    attribute left out is taken from the parameter."""

    name: Annotated[StrictStr, Field(pattern=FIELD_NAME)]
    label: Annotated[StrictStr, Field(max_length=500)] | None = None
    help_text: Annotated[StrictStr, Field(max_length=10_000)] | None = None
    placeholder: Annotated[StrictStr, Field(max_length=500)] | None = None
    widget: Widget | None = None
    default: Any = Field(None, description="Used when no value is given (and shown first); left out: none.")
    required: bool | None = None
    validation: Validation | None = None
    options: Annotated[list[Option], Field(min_length=1, max_length=1000)] | None = Field(
        None, description="The choices of a select, radio or multiselect, when no data provider gives them."
    )
    data_provider: ProviderBinding | None = None
    visible_if: Any = Field(
        None, description="A JSON Logic condition on the fields above; the field is shown (and sent) when true."
    )
    content: Annotated[StrictStr, Field(min_length=1, max_length=100_000)] | None = Field(
        None, description="The Markdown text of a markdown field."
    )

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set


class FormSpec(_Strict):
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    description: Annotated[StrictStr, Field(max_length=10_000)] | None = None
    workflow: StrictStr = Field(description="The workflow a submission starts.")
    access: FormAccess = Field(
        FormAccess.EVERYONE,
        description="everyone: every user of its organization (of any organization for a global form); roles: "
        "users with one of `roles` there; platform_admins: platform admins only.",
    )
    roles: list[OrgRole] = Field(default_factory=list, description="With `access: roles`, the roles that may.")
    fields: Annotated[list[FieldSpec], Field(max_length=MAX_FIELDS)] | None = Field(
        None, description="Left out: one field per parameter of the workflow, every attribute taken from it."
    )

    @model_validator(mode="after")
    def _roles_only_for_roles(self) -> Self:
        if self.access is FormAccess.ROLES and not self.roles:
            raise ValueError("access 'roles' needs the roles that may use the form")
        if self.access is not FormAccess.ROLES and self.roles:
            raise ValueError(f"roles are given, but access is {self.access.value!r}, which does not use them")
        return self
