"""Forms: who may see, use and change them, saving them checked against the workspace, rendering them, and
submitting them, which starts their workflow as the submitting user.

A form belongs to one organization, or is global (every organization's users may use it; only platform admins
change it). Another organization's form does not exist for a caller (404). Within its scope, `access` says who
may use it; the organization's admins (platform admins for a global form) may see and change it whatever it
says. Submitting also needs the right to start the workflow itself: a form never widens who may run it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from bifrost._internal.schema import ParameterValidationError, validate_parameters
from bifrost.api.executions import Trigger
from control_plane.data_providers.service import DataProviderService, OptionsCall, ProviderOptions
from control_plane.db.models import Execution, Form, FormAccess, FormFieldRow, utcnow
from control_plane.db.session import session_scope
from control_plane.errors import (
    ConflictError,
    FieldProblem,
    ForbiddenError,
    InvalidFieldsError,
    NotFoundError,
    UpstreamError,
)
from control_plane.executions.service import ExecutionService, Starter
from control_plane.forms import render
from control_plane.forms.definition import FieldInput, FieldSpec, FormSpec
from control_plane.forms.fields import FormProblem, ResolvedField, ResolvedForm, default_fields, is_choice, resolve
from control_plane.forms.values import provider_inputs, submission
from control_plane.registry import Registry
from control_plane.security.audit import record
from control_plane.security.authentication import ORG_HEADER
from control_plane.security.principals import Principal
from control_plane.security.workflow_access import authorize_start


@dataclass(frozen=True)
class FormView:
    """A form as a caller sees it, checked against the workspace as it is now."""

    form: Form
    fields: list[FieldSpec]
    problems: list[FormProblem]

    @property
    def needs_attention(self) -> bool:
        return bool(self.problems)


@dataclass(frozen=True)
class RenderedForm:
    schema: dict[str, Any]
    ui_schema: dict[str, Any]


class FormNeedsAttentionError(ConflictError):
    def __init__(self, view: FormView) -> None:
        reasons = "; ".join(problem.message for problem in view.problems)
        super().__init__(f"form {view.form.name!r} needs attention before it can be used: {reasons}")


class FormService:
    def __init__(
        self,
        db: Engine,
        registry: Registry,
        executions: ExecutionService,
        data_providers: DataProviderService,
        *,
        sync_wait_seconds: float,
    ) -> None:
        self._db = db
        self._registry = registry
        self._executions = executions
        self._data_providers = data_providers
        self._sync_wait_seconds = sync_wait_seconds

    # Reading.

    def visible_forms(self, principal: Principal) -> list[FormView]:
        """The forms the caller may use or change, in their organization and global ones, by name."""
        query = select(Form).order_by(col(Form.name), col(Form.org_id))
        if not principal.is_platform_admin or principal.org_id is not None:
            query = query.where(or_(col(Form.org_id).is_(None), col(Form.org_id) == principal.org_id))
        with session_scope(self._db) as session:
            forms = [form for form in session.exec(query).all() if _may_see(principal, form)]
            fields = _fields_of(session, [form.id for form in forms])
        return [self._view(form, fields.get(form.id, [])) for form in forms]

    def get(self, principal: Principal, form_id: str) -> FormView:
        """The form, for a caller who may use or change it; `NotFoundError` when they cannot see it."""
        with session_scope(self._db) as session:
            form = self._visible(session, principal, form_id)
            if not _may_see(principal, form):
                raise _not_for_caller(form)
            return self._view(form, _fields_of(session, [form.id]).get(form.id, []))

    def rendered(self, principal: Principal, form_id: str) -> RenderedForm:
        """The form as JSON Schema and uiSchema; `FormNeedsAttentionError` when it cannot be rendered as it is."""
        view = self.get(principal, form_id)
        resolved = self._usable(view)
        return RenderedForm(
            schema=render.json_schema(view.form.name, view.form.description, resolved),
            ui_schema=render.ui_schema(view.form.id, resolved),
        )

    def preview(self, principal: Principal, spec: FormSpec, *, is_global: bool) -> RenderedForm:
        """A form not saved yet as it would be rendered, for those who may save it; `InvalidFieldsError` as
        saving it would answer. Nothing is stored."""
        _scope_to_write(principal, is_global)
        fields = self._checked_fields(spec)
        resolved = resolve(spec.workflow, fields, self._registry.snapshot)
        return RenderedForm(
            schema=render.json_schema(spec.name, spec.description, resolved),
            ui_schema=render.ui_schema(None, resolved),
        )

    # Changing.

    def create(self, principal: Principal, spec: FormSpec, *, is_global: bool, ip: str) -> FormView:
        """Save a new form of the organization the caller acts for (or a global one, for platform admins);
        `InvalidFieldsError` for every field that does not fit the workspace."""
        org_id = _scope_to_write(principal, is_global)
        fields = self._checked_fields(spec)
        form = Form(
            org_id=org_id,
            name=spec.name,
            description=spec.description,
            workflow_name=spec.workflow,
            access=spec.access,
            roles=[role.value for role in spec.roles],
            created_by=principal.user_id,
            updated_by=principal.user_id,
        )
        with session_scope(self._db) as session, _unique_name(session, spec.name):
            session.add(form)
            session.flush()
            session.add_all(_rows(form.id, fields))
            record(session, "form.created", actor=principal, org_id=org_id, target=form.id, ip=ip, name=spec.name)
            session.commit()
        return self._view(form, fields)

    def update(self, principal: Principal, form_id: str, spec: FormSpec, *, ip: str) -> FormView:
        """Replace the form's definition (not its scope)."""
        fields = self._checked_fields(spec)
        with session_scope(self._db) as session, _unique_name(session, spec.name):
            form = self._changeable(session, principal, form_id)
            form.sqlmodel_update(
                {
                    "name": spec.name,
                    "description": spec.description,
                    "workflow_name": spec.workflow,
                    "access": spec.access,
                    "roles": [role.value for role in spec.roles],
                    "updated_by": principal.user_id,
                    "updated_at": utcnow(),
                }
            )
            session.add(form)
            session.execute(delete(FormFieldRow).where(col(FormFieldRow.form_id) == form.id))
            session.add_all(_rows(form.id, fields))
            record(session, "form.updated", actor=principal, org_id=form.org_id, target=form.id, ip=ip, name=spec.name)
            session.commit()
        return self._view(form, fields)

    def delete(self, principal: Principal, form_id: str, *, ip: str) -> None:
        """Delete the form; the executions started from it keep its id."""
        with session_scope(self._db) as session:
            form = self._changeable(session, principal, form_id)
            session.execute(delete(FormFieldRow).where(col(FormFieldRow.form_id) == form.id))
            session.delete(form)
            record(session, "form.deleted", actor=principal, org_id=form.org_id, target=form.id, ip=ip, name=form.name)
            session.commit()

    # Using.

    async def field_options(
        self, principal: Principal, form_id: str, field_name: str, values: dict[str, Any]
    ) -> ProviderOptions:
        """The choices of a field whose data provider gives them, for the form's current `values` (the fields it
        reads), called as the caller; input errors are placed on the fields that feed them."""
        view, resolved = await run_in_threadpool(self._for_use, principal, form_id)
        field = resolved.get(field_name)
        if field is None or field.spec.data_provider is None:
            raise NotFoundError(
                f"form {view.form.name!r} has no field {field_name!r} whose choices a data provider gives"
            )
        call = OptionsCall(_starter(principal), Trigger.FORM, view.form.id)
        return await self._options(field, values, call)

    async def submit(
        self, principal: Principal, form_id: str, values: dict[str, Any], *, ip: str
    ) -> tuple[Execution, bool]:
        """Check the values as the page does and as the workflow does, and start the workflow as the caller, with
        trigger `form`. `InvalidFieldsError` with every wrong field, located as `("values", field)`."""
        view, resolved = await run_in_threadpool(self._for_use, principal, form_id)
        assert resolved.workflow is not None  # a form without problems has its workflow
        starter = _starter(await run_in_threadpool(authorize_start, self._db, principal, resolved.workflow.name, ip=ip))
        given = submission(resolved, values)
        call = OptionsCall(starter, Trigger.FORM, view.form.id)
        wrong = {problem.loc[1] for problem in given.problems}
        for field in given.shown:
            if field.spec.data_provider is not None and field.name not in wrong and field.name in given.parameters:
                given.problems.extend(await self._offered(field, given.parameters, call))
        if given.problems:
            raise InvalidFieldsError([*given.problems, *_type_problems(resolved, given.parameters, given.problems)])
        try:
            return await self._executions.start(
                resolved.workflow.name,
                given.parameters,
                starter=starter,
                sync=None,
                wait_seconds=self._sync_wait_seconds,
                trigger=Trigger.FORM,
                form_id=view.form.id,
            )
        except ParameterValidationError as exc:
            raise InvalidFieldsError(_located(exc)) from exc

    # Helpers.

    def _view(self, form: Form, fields: list[FieldSpec]) -> FormView:
        return FormView(form, fields, resolve(form.workflow_name, fields, self._registry.snapshot).problems)

    def _usable(self, view: FormView) -> ResolvedForm:
        resolved = resolve(view.form.workflow_name, view.fields, self._registry.snapshot)
        if resolved.problems:
            raise FormNeedsAttentionError(FormView(view.form, view.fields, resolved.problems))
        return resolved

    def _for_use(self, principal: Principal, form_id: str) -> tuple[FormView, ResolvedForm]:
        with session_scope(self._db) as session:
            form = self._visible(session, principal, form_id)
            if not _may_use(principal, form):
                raise _not_for_caller(form)
            view = FormView(form, _fields_of(session, [form.id]).get(form.id, []), [])
        return view, self._usable(view)

    def _checked_fields(self, spec: FormSpec) -> list[FieldSpec]:
        snapshot = self._registry.snapshot
        workflow = snapshot.workflows.get(spec.workflow)
        fields = spec.fields if spec.fields is not None else default_fields(workflow) if workflow else []
        problems = resolve(spec.workflow, fields, snapshot).problems
        if problems:
            raise InvalidFieldsError([FieldProblem(problem.loc, problem.message, "form_field") for problem in problems])
        return fields

    @staticmethod
    def _visible(session: Session, principal: Principal, form_id: str) -> Form:
        form = session.get(Form, form_id)
        if form is None or not _in_scope(principal, form):
            raise NotFoundError(f"no form {form_id!r}")
        return form

    def _changeable(self, session: Session, principal: Principal, form_id: str) -> Form:
        form = self._visible(session, principal, form_id)
        if not _may_change(principal, form):
            if not _may_use(principal, form):
                raise _not_for_caller(form)
            who = "platform admins" if form.org_id is None else "admins of its organization"
            raise ForbiddenError(f"only {who} may change form {form.name!r}")
        return form

    async def _options(self, field: ResolvedField, values: dict[str, Any], call: OptionsCall) -> ProviderOptions:
        binding = field.spec.data_provider
        assert binding is not None
        sources = {name: given.field for name, given in binding.inputs.items() if isinstance(given, FieldInput)}

        def located(path: str) -> tuple[str | int, ...]:
            name, *rest = path.split(".")
            if name in sources:
                return ("values", sources[name], *rest)
            return ("fields", field.name, "data_provider", "inputs", name, *rest)

        inputs = provider_inputs(field, values)
        try:
            return await self._data_providers.options(binding.name, inputs, call, located=located)
        except InvalidFieldsError as exc:
            raise InvalidFieldsError([_fill_first(problem, field) for problem in exc.problems]) from exc

    async def _offered(self, field: ResolvedField, values: dict[str, Any], call: OptionsCall) -> list[FieldProblem]:
        """What is wrong with the field's value against the choices its data provider gives now."""
        try:
            offered = (await self._options(field, values, call)).options
        except (InvalidFieldsError, UpstreamError) as exc:
            return [FieldProblem(("values", field.name), f"its choices could not be loaded: {exc}", "choices")]
        value = values[field.name]
        chosen = value if isinstance(value, list) else [value]
        return [
            FieldProblem(("values", field.name), f"{item!r} is not one of the choices", "value_error")
            for item in chosen
            if not is_choice(item, offered)
        ]


def _fill_first(problem: FieldProblem, field: ResolvedField) -> FieldProblem:
    """A missing input fed by another field: that field needs a value before this one has choices."""
    if problem.type == "missing" and problem.loc[0] == "values":
        return FieldProblem(
            problem.loc, f"needs a value before {field.label!r} can offer its choices", "missing"
        )
    return problem


def _type_problems(
    resolved: ResolvedForm, parameters: dict[str, Any], known: Sequence[FieldProblem]
) -> list[FieldProblem]:
    """The workflow's own refusals of the values, for the fields the form's rules did not already refuse."""
    assert resolved.workflow is not None
    try:
        validate_parameters(resolved.workflow.parameters_schema, parameters)
    except ParameterValidationError as exc:
        wrong = {problem.loc[:2] for problem in known}
        return [problem for problem in _located(exc) if problem.loc[:2] not in wrong]
    return []


def _located(exc: ParameterValidationError) -> list[FieldProblem]:
    return [
        FieldProblem(
            ("values", *(int(part) if part.isdigit() else part for part in error.field.split(".") if part)),
            error.message,
            error.type,
        )
        for error in exc.errors
    ]


def _starter(principal: Principal) -> Starter:
    return Starter(user_id=principal.user_id, org_id=principal.org_id)


def _in_scope(principal: Principal, form: Form) -> bool:
    if principal.is_platform_admin:
        return True
    if form.org_id is None:
        return principal.org_id is not None
    return form.org_id == principal.org_id and principal.may_see_org(form.org_id)


def _may_use(principal: Principal, form: Form) -> bool:
    if not _in_scope(principal, form):
        return False
    if principal.is_platform_admin or form.access == FormAccess.EVERYONE:
        return True
    if form.access == FormAccess.ROLES and principal.org_id is not None:
        role = principal.role_in(principal.org_id)
        return role is not None and role.value in form.roles
    return False


def _may_see(principal: Principal, form: Form) -> bool:
    return _may_use(principal, form) or _may_change(principal, form)


def _may_change(principal: Principal, form: Form) -> bool:
    if principal.is_platform_admin:
        return True
    return form.org_id is not None and form.org_id == principal.org_id and principal.may_administer_org(form.org_id)


def _not_for_caller(form: Form) -> ForbiddenError:
    if form.access == FormAccess.PLATFORM_ADMINS:
        return ForbiddenError(f"form {form.name!r} is for platform admins only")
    return ForbiddenError(f"form {form.name!r} is for the roles {', '.join(form.roles)} only")


def _scope_to_write(principal: Principal, is_global: bool) -> str | None:
    if is_global:
        if not principal.is_platform_admin:
            raise ForbiddenError("only platform admins make global forms")
        return None
    if principal.org_id is None:
        raise ForbiddenError(f"no organization selected: send the {ORG_HEADER} header, or make a global form")
    if not principal.may_administer_org(principal.org_id):
        raise ForbiddenError("only admins of this organization make its forms")
    return principal.org_id


@contextmanager
def _unique_name(session: Session, name: str) -> Iterator[None]:
    """A form saved in the block whose name another form of its scope has is a `ConflictError`."""
    try:
        yield
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"a form named {name!r} already exists here") from exc


def _fields_of(session: Session, form_ids: list[str]) -> dict[str, list[FieldSpec]]:
    rows = session.exec(
        select(FormFieldRow)
        .where(col(FormFieldRow.form_id).in_(form_ids))
        .order_by(col(FormFieldRow.form_id), col(FormFieldRow.position))
    ).all()
    fields: dict[str, list[FieldSpec]] = {}
    for row in rows:
        fields.setdefault(row.form_id, []).append(_spec(row))
    return fields


_STORED = ("label", "help_text", "placeholder", "widget", "required", "validation", "options", "data_provider")


def _rows(form_id: str, fields: list[FieldSpec]) -> list[FormFieldRow]:
    return [
        FormFieldRow(
            form_id=form_id,
            position=position,
            name=spec.name,
            has_default=spec.has_default,
            default=spec.default if spec.has_default else None,
            visible_if=spec.visible_if,
            content=spec.content,
            **spec.model_dump(mode="json", include=set(_STORED), exclude_none=True),
        )
        for position, spec in enumerate(fields)
    ]


def _spec(row: FormFieldRow) -> FieldSpec:
    stored: dict[str, Any] = {"name": row.name}
    for attribute in (*_STORED, "visible_if", "content"):
        value = getattr(row, attribute)
        if value is not None:
            stored[attribute] = value
    if row.has_default:
        stored["default"] = row.default
    return FieldSpec.model_validate(stored)
