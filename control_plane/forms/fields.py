"""A form's fields against the workspace as it is now: each field with what it takes from its parameter (label,
help, widget, whether it is required, its choices), and every problem that keeps the form from working (a
parameter that does not exist, a widget that does not fit its type, a data provider that is gone, ...).

The same check refuses a form being saved (422 per field) and marks a saved form `needs_attention` when the
workflow or a data provider changed under it."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import SchemaError, SchemaValidator
from pydantic_core import ValidationError as CoreValidationError

from bifrost.metadata import DataProviderInfo, WorkflowInfo
from control_plane.data_providers.options import Option
from control_plane.forms import json_logic
from control_plane.forms.definition import FieldInput, FieldSpec, FixedInput, Validation, Widget
from control_plane.forms.parameters import Parameter, parameters_of
from control_plane.registry import RegistrySnapshot

CHOICE_WIDGETS = frozenset({Widget.SELECT, Widget.RADIO, Widget.MULTISELECT})
TEXT_WIDGETS = frozenset({Widget.TEXT, Widget.TEXTAREA, Widget.EMAIL, Widget.PASSWORD})
_PLACEHOLDER_WIDGETS = TEXT_WIDGETS | {Widget.NUMBER, Widget.SELECT, Widget.JSON}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_NOT_FOR_MARKDOWN = ("help_text", "placeholder", "default", "required", "validation", "options", "data_provider")


@dataclass(frozen=True)
class FormProblem:
    """What keeps a form from working, and where: `("fields", "email", "widget")`, `("workflow",)`."""

    loc: tuple[str, ...]
    message: str

    @property
    def field(self) -> str | None:
        return self.loc[1] if len(self.loc) > 1 and self.loc[0] == "fields" else None


@dataclass(frozen=True)
class ResolvedField:
    spec: FieldSpec
    parameter: Parameter | None
    """None for a markdown text."""
    widget: Widget
    label: str
    help_text: str | None
    required: bool
    choices: list[Option] | None
    """The fixed choices: the field's options, or the values the parameter lists; None when a data provider
    gives them, or for a field without choices."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_markdown(self) -> bool:
        return self.widget is Widget.MARKDOWN

    def default(self) -> tuple[bool, Any]:
        """Whether the field shows a value first, and which: its own default, else the parameter's."""
        if self.spec.has_default:
            return True, self.spec.default
        if self.parameter is not None and self.parameter.schema.get("default") is not None:
            return True, self.parameter.schema["default"]
        return False, None

    def value_problems(self, value: Any) -> list[str]:
        """What the field's own rules refuse in a given value (the parameter's type is the workflow's to check)."""
        problems = []
        if self.widget is Widget.EMAIL and isinstance(value, str) and not _EMAIL.fullmatch(value):
            problems.append("not an email address")
        rules = self.spec.validation
        if rules is not None:
            problems.extend(_rule_problems(rules, value))
        if self.choices is not None:
            problems.extend(_choice_problems(self.choices, value, many=self.widget is Widget.MULTISELECT))
        return problems


@dataclass
class ResolvedForm:
    workflow: WorkflowInfo | None
    fields: list[ResolvedField] = field(default_factory=list)
    problems: list[FormProblem] = field(default_factory=list)

    def get(self, name: str) -> ResolvedField | None:
        return next((resolved for resolved in self.fields if resolved.name == name), None)


def default_fields(workflow: WorkflowInfo) -> list[FieldSpec]:
    """One field per parameter of the workflow, every attribute taken from the parameter."""
    return [FieldSpec(name=name) for name in workflow.parameters_schema.get("properties", {})]


def resolve(workflow_name: str, specs: Sequence[FieldSpec], snapshot: RegistrySnapshot) -> ResolvedForm:
    """The form's fields as the workspace of `snapshot` makes them, and what is wrong with them."""
    workflow = snapshot.workflows.get(workflow_name)
    form = ResolvedForm(workflow)
    if workflow is None:
        form.problems.append(FormProblem(("workflow",), f"workflow {workflow_name!r} is not in the workspace"))
        return form
    parameters = parameters_of(workflow.parameters_schema)
    seen: dict[str, ResolvedField | None] = {}
    for spec in specs:
        if spec.name in seen:
            form.problems.append(FormProblem(("fields", spec.name), f"the form has two fields named {spec.name!r}"))
            continue
        checker = _FieldCheck(spec, workflow, parameters, snapshot.data_providers, seen)
        resolved = checker.resolve()
        form.problems.extend(checker.problems)
        seen[spec.name] = resolved
        if resolved is not None:
            form.fields.append(resolved)
    filled = {spec.name for spec in specs if spec.widget is not Widget.MARKDOWN}
    for parameter in parameters.values():
        if parameter.required and parameter.name not in filled:
            form.problems.append(
                FormProblem(
                    ("fields",),
                    f"parameter {parameter.name!r} is required by workflow {workflow.name!r} and has no field",
                )
            )
    return form


def fitting_widgets(parameter: Parameter) -> list[Widget]:
    """The widgets that can give a value of the parameter's type."""
    if parameter.enum is not None:
        return [Widget.SELECT, Widget.RADIO]
    json_type = parameter.json_type
    if json_type == "string":
        if parameter.format == "date":
            return [Widget.DATE, Widget.TEXT, Widget.SELECT, Widget.RADIO]
        if parameter.format == "date-time":
            return [Widget.DATETIME, Widget.TEXT, Widget.SELECT, Widget.RADIO]
        if parameter.format is not None:
            return [Widget.TEXT, Widget.SELECT, Widget.RADIO]
        return [*TEXT_WIDGETS, Widget.SELECT, Widget.RADIO, Widget.DATE, Widget.DATETIME]
    if json_type in ("integer", "number"):
        return [Widget.NUMBER, Widget.SELECT, Widget.RADIO]
    if json_type == "boolean":
        return [Widget.CHECKBOX, Widget.SELECT, Widget.RADIO]
    if json_type == "array":
        return [Widget.MULTISELECT, Widget.JSON] if parameter.item_type else [Widget.JSON]
    if json_type == "object":
        return [Widget.JSON]
    return [widget for widget in Widget if widget is not Widget.MARKDOWN]


def _inferred_widget(parameter: Parameter, spec: FieldSpec) -> Widget:
    given_choices = spec.options is not None or spec.data_provider is not None
    if parameter.json_type == "array":
        return Widget.MULTISELECT if parameter.item_type and (parameter.item_enum or given_choices) else Widget.JSON
    if parameter.enum is not None or given_choices:
        return Widget.SELECT
    return {"boolean": Widget.CHECKBOX, "integer": Widget.NUMBER, "number": Widget.NUMBER}.get(
        parameter.json_type or "", _string_widget(parameter)
    )


def _string_widget(parameter: Parameter) -> Widget:
    if parameter.json_type != "string":
        return Widget.JSON
    return {"date": Widget.DATE, "date-time": Widget.DATETIME}.get(parameter.format or "", Widget.TEXT)


class _FieldCheck:
    """The checks of one field; `problems` holds what they found."""

    def __init__(
        self,
        spec: FieldSpec,
        workflow: WorkflowInfo,
        parameters: dict[str, Parameter],
        providers: dict[str, DataProviderInfo],
        above: dict[str, ResolvedField | None],
    ) -> None:
        self.spec = spec
        self.workflow = workflow
        self.parameters = parameters
        self.providers = providers
        self.above = above
        self.problems: list[FormProblem] = []

    def problem(self, attribute: str | None, message: str) -> None:
        loc = ("fields", self.spec.name) if attribute is None else ("fields", self.spec.name, attribute)
        self.problems.append(FormProblem(loc, message))

    def resolve(self) -> ResolvedField | None:
        spec = self.spec
        self._check_condition()
        if spec.widget is Widget.MARKDOWN:
            return self._markdown()
        parameter = self.parameters.get(spec.name)
        if parameter is None:
            known = ", ".join(self.parameters) or "none"
            self.problem(
                "name",
                f"workflow {self.workflow.name!r} has no parameter {spec.name!r} (its parameters: {known}); "
                "only a markdown field has a name of its own",
            )
            return None
        if spec.content is not None:
            self.problem("content", "only a markdown field has content")
        widget = spec.widget or _inferred_widget(parameter, spec)
        fitting = fitting_widgets(parameter)
        if widget not in fitting:
            self.problem(
                "widget",
                f"widget {widget.value!r} does not fit parameter {spec.name!r}, which takes "
                f"{_described(parameter, parameter.json_type or '')} (fitting widgets: "
                f"{', '.join(w.value for w in fitting)})",
            )
            return None
        choices = self._choices(parameter, widget)
        self._check_provider(widget)
        self._check_validation(widget)
        if spec.placeholder is not None and widget not in _PLACEHOLDER_WIDGETS:
            self.problem("placeholder", f"a {widget.value} field shows no placeholder")
        required = parameter.required if spec.required is None else spec.required
        resolved = ResolvedField(
            spec=spec,
            parameter=parameter,
            widget=widget,
            label=spec.label or parameter.title,
            help_text=spec.help_text or parameter.description,
            required=required,
            choices=choices,
        )
        self._check_default(resolved)
        if parameter.required and not spec.has_default:
            if not required:
                self.problem(
                    "required",
                    f"workflow {self.workflow.name!r} requires {spec.name!r}: make the field required or give it "
                    "a default",
                )
            elif spec.visible_if is not None:
                self.problem(
                    "visible_if",
                    f"workflow {self.workflow.name!r} requires {spec.name!r}, so the field cannot be hidden "
                    "unless it has a default",
                )
        return resolved

    def _markdown(self) -> ResolvedField | None:
        spec = self.spec
        if spec.name in self.parameters:
            self.problem(
                "name", f"{spec.name!r} is a parameter of workflow {self.workflow.name!r}; a markdown field fills none"
            )
        if spec.content is None:
            self.problem("content", "a markdown field needs its content (Markdown text)")
        for attribute in _NOT_FOR_MARKDOWN:
            if attribute in spec.model_fields_set and getattr(spec, attribute) is not None:
                self.problem(attribute, f"a markdown field takes no {attribute}")
        return ResolvedField(
            spec=spec,
            parameter=None,
            widget=Widget.MARKDOWN,
            label=spec.label or "",
            help_text=None,
            required=False,
            choices=None,
        )

    def _check_condition(self) -> None:
        if self.spec.visible_if is None:
            return
        readable = {name: None for name, above in self.above.items() if above is not None and not above.is_markdown}
        try:
            json_logic.fields_read(self.spec.visible_if, readable)
        except json_logic.RuleError as exc:
            self.problem("visible_if", str(exc))

    def _choices(self, parameter: Parameter, widget: Widget) -> list[Option] | None:
        spec = self.spec
        if widget not in CHOICE_WIDGETS:
            for attribute in ("options", "data_provider"):
                if getattr(spec, attribute) is not None:
                    self.problem(attribute, f"a {widget.value} field has no choices: use select, radio or multiselect")
            return None
        if spec.options is not None and spec.data_provider is not None:
            self.problem("options", "give fixed options or a data_provider, not both")
            return None
        accepted = parameter.choices
        if spec.options is not None:
            self._check_options(parameter, spec.options, accepted, many=widget is Widget.MULTISELECT)
            return spec.options
        if spec.data_provider is not None:
            return None
        if accepted is None:
            self.problem(
                "options",
                f"a {widget.value} field needs its choices: fixed options or a data_provider (parameter "
                f"{spec.name!r} lists none)",
            )
            return None
        return [Option(value=value, label=str(value)) for value in accepted]

    def _check_options(
        self, parameter: Parameter, options: list[Option], accepted: list[Any] | None, *, many: bool
    ) -> None:
        values: list[Any] = []
        for option in options:
            if any(_same(option.value, value) for value in values):
                self.problem("options", f"option value {option.value!r} is listed twice")
                return
            values.append(option.value)
            if accepted is not None and not any(_same(option.value, value) for value in accepted):
                self.problem(
                    "options",
                    f"option value {option.value!r} is not one parameter {parameter.name!r} accepts "
                    f"({', '.join(map(repr, accepted))})",
                )
                return
            refused = parameter.problem_with([option.value] if many else option.value)
            if refused is not None:
                self.problem("options", f"option value {option.value!r} does not fit parameter: {refused}")
                return

    def _check_provider(self, widget: Widget) -> None:
        binding = self.spec.data_provider
        if binding is None or widget not in CHOICE_WIDGETS:
            return
        provider = self.providers.get(binding.name)
        if provider is None:
            self.problem("data_provider", f"data provider {binding.name!r} is not in the workspace")
            return
        properties = provider.parameters_schema.get("properties", {})
        for name, given in binding.inputs.items():
            if name not in properties:
                known = ", ".join(properties) or "none"
                self.problem(
                    "data_provider", f"data provider {provider.name!r} has no input {name!r} (its inputs: {known})"
                )
            elif isinstance(given, FieldInput):
                source = self.above.get(given.field)
                if source is None or source.is_markdown or given.field == self.spec.name:
                    self.problem(
                        "data_provider",
                        f"input {name!r} reads field {given.field!r}, which is not a field above this one",
                    )
            elif isinstance(given, FixedInput):
                refused = parameters_of(provider.parameters_schema)[name].problem_with(given.value)
                if refused is not None:
                    self.problem("data_provider", f"input {name!r} of {provider.name!r}: {refused}")
        for name in provider.parameters_schema.get("required", []):
            if name not in binding.inputs:
                self.problem("data_provider", f"data provider {provider.name!r} needs input {name!r}")

    def _check_validation(self, widget: Widget) -> None:
        rules = self.spec.validation
        if rules is None:
            return
        if (rules.minimum is not None or rules.maximum is not None) and widget is not Widget.NUMBER:
            self.problem("validation", f"minimum and maximum bound a number field, not a {widget.value} one")
        lengths = rules.min_length is not None or rules.max_length is not None
        if lengths and widget not in TEXT_WIDGETS | {Widget.MULTISELECT}:
            self.problem("validation", f"min_length and max_length apply to texts and multiselects, not {widget.value}")
        if rules.pattern is not None:
            if widget not in TEXT_WIDGETS:
                self.problem("validation", f"a pattern applies to a text field, not a {widget.value} one")
            else:
                try:
                    _pattern(rules.pattern)
                except SchemaError as exc:
                    reason = str(exc).splitlines()[-1].removeprefix("error: ")
                    message = f"pattern {rules.pattern!r} is not a usable regular expression: {reason}"
                    self.problem("validation", message)
        for low, high in (("minimum", "maximum"), ("min_length", "max_length")):
            low_value, high_value = getattr(rules, low), getattr(rules, high)
            if low_value is not None and high_value is not None and low_value > high_value:
                self.problem("validation", f"{low} {low_value} is above {high} {high_value}")

    def _check_default(self, resolved: ResolvedField) -> None:
        spec = self.spec
        if not spec.has_default or resolved.parameter is None:
            return
        refused = resolved.parameter.problem_with(spec.default)
        if refused is not None:
            self.problem("default", f"default {spec.default!r} does not fit parameter {spec.name!r}: {refused}")
            return
        if not any(problem.loc[-1] in ("validation", "options") for problem in self.problems):
            for problem in resolved.value_problems(spec.default):
                self.problem("default", f"default {spec.default!r}: {problem}")


def _described(parameter: Parameter, type_name: str) -> str:
    if parameter.enum is not None:
        return f"one of {', '.join(map(repr, parameter.enum))}"
    if parameter.json_type is None:
        return "values of several types"
    if parameter.json_type == "array" and parameter.item_type:
        return f"a list of {parameter.item_type} values"
    article = "an" if type_name[0] in "aeiou" else "a"
    return f"{article} {type_name} ({parameter.format})" if parameter.format else f"{article} {type_name}"


@functools.lru_cache(maxsize=512)
def _pattern(pattern: str) -> SchemaValidator:
    """A validator of texts that contain a match of `pattern`, with a regular-expression engine that takes time
    linear in the text (no look-around, no back-references): a form's pattern cannot stall the server."""
    return SchemaValidator({"type": "str", "pattern": pattern})


def _rule_problems(rules: Validation, value: Any) -> list[str]:
    problems = []
    if isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value):
        if rules.minimum is not None and value < rules.minimum:
            problems.append(f"must be at least {rules.minimum:g}")
        if rules.maximum is not None and value > rules.maximum:
            problems.append(f"must be at most {rules.maximum:g}")
    if isinstance(value, str | list):
        unit = "characters" if isinstance(value, str) else "choices"
        if rules.min_length is not None and len(value) < rules.min_length:
            problems.append(f"must have at least {rules.min_length} {unit}")
        if rules.max_length is not None and len(value) > rules.max_length:
            problems.append(f"must have at most {rules.max_length} {unit}")
    if isinstance(value, str) and rules.pattern is not None:
        try:
            _pattern(rules.pattern).validate_python(value)
        except CoreValidationError:
            problems.append(f"must match the pattern {rules.pattern!r}")
    return problems


def _choice_problems(choices: list[Option], value: Any, *, many: bool) -> list[str]:
    values = value if many and isinstance(value, list) else [value]
    if many and not isinstance(value, list):
        return ["must be a list of choices"]
    problems = []
    for item in values:
        if not any(_same(item, option.value) for option in choices):
            problems.append(f"{item!r} is not one of the choices")
    if many and len({repr(item) for item in values}) < len(values):
        problems.append("a choice is given twice")
    return problems


def is_choice(value: Any, options: list[Option]) -> bool:
    return any(_same(value, option.value) for option in options)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: `true` is not `1`, `1` is `1.0`."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)
