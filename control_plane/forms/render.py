"""A form as a page renders it with react-jsonschema-form (@rjsf/core): a JSON Schema of its values, with the
same rules the server checks on submit, and a uiSchema saying how each field is shown.

What JSON Schema cannot say goes into each field's `ui:options`:
- `visibleIf`: the field's JSON Logic condition on the values of the fields above it;
- `dataProvider`: `{"name", "inputs", "optionsPath"}` for a field whose choices a data provider gives. The page
  posts the form's current values to `optionsPath` and puts the answer into the field's schema as `oneOf`
  (`{"const": value, "title": label}`) before rendering it.
A `json` field names `"ui:field": "json"`, a field the page registers (an editor of any JSON value); a markdown
field is a `null` property whose description is the Markdown text.
"""

from __future__ import annotations

from typing import Any

from control_plane.forms.definition import FieldInput, Widget
from control_plane.forms.fields import ResolvedField, ResolvedForm

_UI_WIDGETS = {
    Widget.TEXTAREA: "textarea",
    Widget.EMAIL: "email",
    Widget.PASSWORD: "password",
    Widget.CHECKBOX: "checkbox",
    Widget.SELECT: "select",
    Widget.RADIO: "radio",
    Widget.DATE: "date",
    Widget.DATETIME: "datetime",
}
_WIDGET_TYPES = {
    Widget.TEXT: "string",
    Widget.TEXTAREA: "string",
    Widget.EMAIL: "string",
    Widget.PASSWORD: "string",
    Widget.DATE: "string",
    Widget.DATETIME: "string",
    Widget.NUMBER: "number",
    Widget.CHECKBOX: "boolean",
}
_TYPE_KEYWORDS = ("type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const")


def options_path(form_id: str, field_name: str) -> str:
    return f"/api/forms/{form_id}/fields/{field_name}/options"


def json_schema(title: str, description: str | None, form: ResolvedForm) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "title": title}
    if description:
        schema["description"] = description
    schema["properties"] = {field.name: _property(field) for field in form.fields}
    schema["required"] = [field.name for field in form.fields if field.required]
    defs = form.workflow.parameters_schema.get("$defs") if form.workflow else None
    if defs:
        schema["$defs"] = defs
    return schema


def ui_schema(form_id: str | None, form: ResolvedForm) -> dict[str, Any]:
    """How each field is shown; `form_id` None for a form not saved yet, whose provider fields name no
    `optionsPath` (a preview calls the providers themselves with the inputs)."""
    ui: dict[str, Any] = {"ui:order": [field.name for field in form.fields]}
    for field in form.fields:
        ui[field.name] = _ui(form_id, field)
    return ui


def _property(field: ResolvedField) -> dict[str, Any]:
    if field.parameter is None:
        return {"type": "null", "title": field.label} if field.label else {"type": "null"}
    prop = {key: value for key, value in field.parameter.inner.items() if key not in ("title", "description")}
    prop.pop("default", None)
    if field.parameter.json_type is None and field.widget in _WIDGET_TYPES:
        for keyword in _TYPE_KEYWORDS:
            prop.pop(keyword, None)
        prop["type"] = _WIDGET_TYPES[field.widget]
    prop["title"] = field.label
    if field.help_text:
        prop["description"] = field.help_text
    has_default, default = field.default()
    if has_default:
        prop["default"] = default
    if field.widget is Widget.EMAIL:
        prop["format"] = "email"
    elif field.widget is Widget.DATE:
        prop["format"] = "date"
    elif field.widget is Widget.DATETIME:
        prop["format"] = "date-time"
    _add_rules(prop, field)
    _add_choices(prop, field)
    return prop


def _add_rules(prop: dict[str, Any], field: ResolvedField) -> None:
    rules = field.spec.validation
    if rules is None:
        return
    many = field.widget is Widget.MULTISELECT
    keywords = {
        "minimum": rules.minimum,
        "maximum": rules.maximum,
        "minItems" if many else "minLength": rules.min_length,
        "maxItems" if many else "maxLength": rules.max_length,
        "pattern": rules.pattern,
    }
    prop.update({keyword: value for keyword, value in keywords.items() if value is not None})


def _add_choices(prop: dict[str, Any], field: ResolvedField) -> None:
    if field.widget is Widget.MULTISELECT:
        prop["type"] = "array"
        prop["uniqueItems"] = True
        items = dict(prop.get("items", {}))
        if field.choices is not None:
            for keyword in ("enum", "const", "$ref"):
                items.pop(keyword, None)
            items["oneOf"] = _one_of(field)
        prop["items"] = items
    elif field.choices is not None:
        for keyword in ("enum", "const", "$ref"):
            prop.pop(keyword, None)
        prop["oneOf"] = _one_of(field)


def _one_of(field: ResolvedField) -> list[dict[str, Any]]:
    choices = []
    for option in field.choices or []:
        choice: dict[str, Any] = {"const": option.value, "title": option.label}
        if option.description:
            choice["description"] = option.description
        choices.append(choice)
    return choices


def _ui(form_id: str | None, field: ResolvedField) -> dict[str, Any]:
    spec = field.spec
    ui: dict[str, Any] = {}
    if field.is_markdown:
        ui["ui:description"] = spec.content
        ui["ui:enableMarkdownInDescription"] = True
    elif field.widget is Widget.JSON:
        ui["ui:field"] = "json"
    elif field.widget in _UI_WIDGETS:
        ui["ui:widget"] = _UI_WIDGETS[field.widget]
    if spec.placeholder:
        ui["ui:placeholder"] = spec.placeholder
    options: dict[str, Any] = {}
    if spec.visible_if is not None:
        options["visibleIf"] = spec.visible_if
    if spec.data_provider is not None:
        provider: dict[str, Any] = {
            "name": spec.data_provider.name,
            "inputs": {
                name: {"field": given.field} if isinstance(given, FieldInput) else {"value": given.value}
                for name, given in spec.data_provider.inputs.items()
            },
        }
        if form_id is not None:
            provider["optionsPath"] = options_path(form_id, field.name)
        options["dataProvider"] = provider
    if options:
        ui["ui:options"] = options
    return ui
