"""The tables. Every tenant-owned row carries `org_id` (NULL = global)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, ForeignKey, Index, Integer, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from bifrost._internal.protocol import ExecutionStatus
from bifrost.api.executions import ExecutionKind
from bifrost.api.orgs import OrgRole as OrgRole  # the roles a membership holds, as the API names them
from bifrost.api.schedules import CatchUpPolicy, OverlapPolicy, ScheduleSource

MAX_ROW_ID = 2**63 - 1
"""The largest id of the 64-bit id columns: bounds numbers compared with them."""
MAX_LOG_LINE = 2**31 - 1
"""The largest number of the (32-bit) execution_logs.line column."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A timestamp read back from the database, with its zone: SQLite hands timestamps back without one, and
    every timestamp Bifrost writes is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def _required_timestamp() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


def _optional_timestamp() -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True)
    created_at: datetime = _required_timestamp()


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True)
    email: str = Field(unique=True)
    name: str | None = None
    org_id: str | None = Field(default=None, foreign_key="organizations.id", index=True)
    is_platform_admin: bool = False
    created_at: datetime = _required_timestamp()
    password_hash: str | None = Field(default=None, description="argon2; NULL: no password login.")
    is_active: bool = Field(default=True, description="A deactivated user can neither log in nor use keys.")
    is_service_account: bool = Field(default=False, description="Holds an organization's service API keys.")


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(default_factory=new_id, primary_key=True)
    prefix: str = Field(index=True, description="The first characters of the key, to identify it in lists.")
    key_hash: str = Field(unique=True, description="SHA-256 of the key; the key itself is never stored.")
    name: str
    user_id: str = Field(foreign_key="users.id", index=True)
    org_id: str | None = Field(default=None, foreign_key="organizations.id", index=True)
    created_at: datetime = _required_timestamp()
    expires_at: datetime | None = _optional_timestamp()
    revoked_at: datetime | None = _optional_timestamp()
    last_used_at: datetime | None = _optional_timestamp()


class Workflow(SQLModel, table=True):
    """The registry: what discovery found in the workspace. Rewritten on every scan."""

    __tablename__ = "workflows"

    name: str = Field(primary_key=True)
    kind: str = Field(default="workflow", description="`workflow` or `data_provider`.")
    description: str | None = Field(default=None, sa_column=Column(Text))
    category: str | None = None
    file: str
    function_name: str
    execution_mode: str = "async"
    endpoint_enabled: bool = False
    schedule: str | None = None
    timeout_seconds: int = 1800
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    parameters_schema: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _required_timestamp()


class DiscoveredFile(SQLModel, table=True):
    """What discovery found in one workspace file, kept so that a restart re-parses only the files that changed."""

    __tablename__ = "discovery_cache"

    path: str = Field(primary_key=True)
    etag: str = Field(description="The content hash of the file this result was read from.")
    parser: str = Field(description="Which discovery code produced it: a result of another is parsed again.")
    result: str = Field(sa_column=Column(Text, nullable=False), description="The `FileDiscovery`, as JSON.")


class Execution(SQLModel, table=True):
    __tablename__ = "executions"
    __table_args__ = (
        Index("ix_executions_org_created", "org_id", "created_at"),
        Index("ix_executions_workflow_created", "workflow_name", "created_at"),
        UniqueConstraint("retry_of", "attempt", name="uq_executions_retry_attempt"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    org_id: str | None = Field(default=None, foreign_key="organizations.id", index=True)
    user_id: str = Field(foreign_key="users.id", index=True)
    workflow_name: str = Field(index=True)
    kind: str = Field(
        default=ExecutionKind.WORKFLOW,
        sa_column_kwargs={"server_default": ExecutionKind.WORKFLOW.value},
        description="An `ExecutionKind` value; `workflow_name` names the data provider of a `data_provider` one.",
    )
    trigger: str | None = Field(default=None, description="A `Trigger` value; NULL: started before triggers were kept.")
    form_id: str | None = Field(
        default=None, index=True, description="The form it was started from (kept when the form is deleted)."
    )
    status: ExecutionStatus = Field(default=ExecutionStatus.PENDING, index=True)
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    variables: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error_type: str | None = None
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    traceback: str | None = Field(default=None, sa_column=Column(Text))
    runner_log_tail: str | None = Field(
        default=None,
        sa_column=Column(Text),
        description="The last lines a runner printed when it ended without reporting how its workflow ended.",
    )
    sealed_parameters: str | None = Field(
        default=None,
        sa_column=Column(Text),
        description="While the execution may run: the Fernet token of its real parameters and of the secret "
        "values among them (passed on by its parent), which `parameters` shows masked.",
    )
    parent_execution_id: str | None = Field(default=None, foreign_key="executions.id", index=True)
    workspace_revision: str | None = None
    backend: str | None = None
    runner_ref: str | None = Field(default=None, description="Backend handle: pid, container or Job name.")
    last_event_seq: int = Field(default=0, description="Highest event seq ingested: makes ingest idempotent.")
    log_count: int = 0
    created_at: datetime = _required_timestamp()
    started_at: datetime | None = _optional_timestamp()
    finished_at: datetime | None = _optional_timestamp()
    duration_ms: float | None = None
    schedule_id: str | None = Field(
        default=None, index=True, description="The schedule whose fire started it (or started the first attempt)."
    )
    retry_of: str | None = Field(
        default=None, foreign_key="executions.id", index=True, description="For a retry: the first attempt."
    )
    attempt: int = Field(default=1, description="1 for a first attempt, 2 for its first retry, and so on.")
    start_after: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=True),
        description="Not launched before this moment: a retry's backoff, or the wait after a refused launch.",
    )
    serial_key: str | None = Field(
        default=None,
        description="Executions sharing it run one at a time, in the order they were created (the fires of a "
        "schedule that queues overlapping runs).",
    )
    slot_claimed_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=True),
        description="When a dispatcher took the execution to launch it (and, unless it is a sub-workflow, a slot "
        "of the concurrency limits); renewed while the launch lasts.",
    )
    slot_claimed_by: str | None = Field(default=None, description="The dispatcher (control-plane replica) that did.")
    launch_attempts: int = Field(default=0, description="Launches the backend refused so far.")


class ExecutionLog(SQLModel, table=True):
    __tablename__ = "execution_logs"
    __table_args__ = (UniqueConstraint("execution_id", "line", name="uq_execution_logs_line"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    # No index of its own: the unique constraint's index on (execution_id, line) serves every read by execution
    execution_id: str = Field(foreign_key="executions.id")
    line: int = Field(description="Position of the record within its execution, from 1.")
    ts: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    level: str
    logger: str
    message: str = Field(sa_column=Column(Text, nullable=False))


class Membership(SQLModel, table=True):
    """A user belongs to an organization with a role; a user may belong to several."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "org_id", name="uq_memberships_user_org"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    user_id: str = Field(foreign_key="users.id", index=True)
    org_id: str = Field(foreign_key="organizations.id", index=True)
    role: str = Field(description="An `OrgRole` value.")
    created_at: datetime = _required_timestamp()


def _unique_global_name(table: str) -> Index:
    """Names are unique per organization, and among the global (org_id NULL) rows, which a plain unique
    constraint misses because NULLs never compare equal."""
    where = text("org_id IS NULL")
    return Index(f"uq_{table}_global_name", "name", unique=True, sqlite_where=where, postgresql_where=where)


class Secret(SQLModel, table=True):
    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_secrets_org_name"), _unique_global_name("secrets"))

    id: str = Field(default_factory=new_id, primary_key=True)
    org_id: str | None = Field(default=None, foreign_key="organizations.id", index=True)
    name: str
    ciphertext: str = Field(sa_column=Column(Text, nullable=False), description="Fernet token of the value.")
    updated_by: str | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = _required_timestamp()
    updated_at: datetime = _required_timestamp()


class ConfigEntry(SQLModel, table=True):
    __tablename__ = "config_entries"
    __table_args__ = (
        UniqueConstraint("org_id", "name", name="uq_config_entries_org_name"),
        _unique_global_name("config_entries"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    org_id: str | None = Field(default=None, foreign_key="organizations.id", index=True)
    name: str
    value: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    updated_by: str | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = _required_timestamp()
    updated_at: datetime = _required_timestamp()


class AuditEvent(SQLModel, table=True):
    """A security-relevant action. Actor fields are copied, so the record outlives renames."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org_at", "org_id", "at"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    action: str = Field(index=True, description="E.g. `login.failed`, `api_key.created`, `secret.updated`.")
    actor_user_id: str | None = None
    actor_email: str | None = None
    org_id: str | None = Field(default=None, description="The organization acted upon; NULL: global or none.")
    target: str | None = None
    ip: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class UiSession(SQLModel, table=True):
    """A browser login. The cookie carries a random token; only its hash is stored."""

    __tablename__ = "ui_sessions"

    id: str = Field(default_factory=new_id, primary_key=True)
    token_hash: str = Field(unique=True)
    csrf_token: str = Field(description="Sent back in `X-CSRF-Token` or a form's `csrf_token` on every write.")
    user_id: str = Field(foreign_key="users.id", index=True)
    created_at: datetime = _required_timestamp()
    expires_at: datetime = _required_timestamp()
    revoked_at: datetime | None = _optional_timestamp()


class LoginFailure(SQLModel, table=True):
    """One failed password login; recent ones rate-limit further attempts per email and per client address."""

    __tablename__ = "login_failures"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    email: str = Field(index=True)
    ip: str = Field(index=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class WorkflowAccess(SQLModel, table=True):
    """The organization roles that may start a workflow. Without a row every signed-in user may; platform
    admins always may."""

    __tablename__ = "workflow_access"

    workflow_name: str = Field(primary_key=True)
    roles: list[str] = Field(sa_column=Column(JSON, nullable=False), description="`OrgRole` values.")
    updated_by: str | None = Field(default=None, foreign_key="users.id")
    updated_at: datetime = _required_timestamp()


class FormAccess(StrEnum):
    """Who may use a form, within its scope (its organization, or every organization for a global form)."""

    EVERYONE = "everyone"
    ROLES = "roles"
    PLATFORM_ADMINS = "platform_admins"


class Form(SQLModel, table=True):
    """A form that starts a workflow: its fields refine the workflow's parameters (`form_fields`)."""

    __tablename__ = "forms"
    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_forms_org_name"), _unique_global_name("forms"))

    id: str = Field(default_factory=new_id, primary_key=True)
    org_id: str | None = Field(default=None, foreign_key="organizations.id", index=True)
    name: str
    description: str | None = Field(default=None, sa_column=Column(Text))
    workflow_name: str = Field(index=True)
    access: str = Field(description="A `FormAccess` value.")
    roles: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False), description="`OrgRole` values, for `roles`."
    )
    created_by: str | None = Field(default=None, foreign_key="users.id")
    updated_by: str | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = _required_timestamp()
    updated_at: datetime = _required_timestamp()


class FormFieldRow(SQLModel, table=True):
    """One field of a form, in its place. Unset refinements (NULL) are taken from the workflow's parameter."""

    __tablename__ = "form_fields"
    __table_args__ = (
        UniqueConstraint("form_id", "position", name="uq_form_fields_position"),
        UniqueConstraint("form_id", "name", name="uq_form_fields_name"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    form_id: str = Field(sa_column=Column(ForeignKey("forms.id", ondelete="CASCADE"), nullable=False, index=True))
    position: int
    name: str = Field(description="The workflow parameter the field fills; any name for a markdown text.")
    label: str | None = None
    help_text: str | None = Field(default=None, sa_column=Column(Text))
    placeholder: str | None = None
    widget: str | None = None
    has_default: bool = False
    default: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    required: bool | None = None
    validation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    options: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    data_provider: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    visible_if: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    content: str | None = Field(default=None, sa_column=Column(Text), description="The text of a markdown field.")


class DataProviderResult(SQLModel, table=True):
    """Options a data provider returned, reused until `expires_at` for the same organization, provider, inputs and
    workspace revision (all in `key`)."""

    __tablename__ = "data_provider_results"

    key: str = Field(primary_key=True, description="SHA-256 of the organization, provider, inputs and revision.")
    org_id: str | None = None
    provider: str
    workspace_revision: str | None = None
    options: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    execution_id: str = Field(description="The call that returned them.")
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


def _unique_decorator_schedule() -> Index:
    where = text("source = 'decorator'")
    return Index(
        "uq_schedules_decorator_workflow", "workflow_name", unique=True, sqlite_where=where, postgresql_where=where
    )


class Schedule(SQLModel, table=True):
    """Starts a workflow at the times of a cron expression, in a time zone, as its owner."""

    __tablename__ = "schedules"
    __table_args__ = (_unique_decorator_schedule(),)

    id: str = Field(default_factory=new_id, primary_key=True)
    org_id: str | None = Field(default=None, foreign_key="organizations.id", index=True)
    workflow_name: str = Field(index=True)
    description: str | None = Field(default=None, sa_column=Column(Text))
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    cron: str = Field(description="Five fields: minute, hour, day of month, month, day of week.")
    timezone: str = Field(default="UTC", description="The IANA time zone the cron expression is read in.")
    enabled: bool = True
    overlap_policy: str = Field(default=OverlapPolicy.SKIP.value, description="An `OverlapPolicy` value.")
    catch_up_policy: str = Field(default=CatchUpPolicy.LATEST.value, description="A `CatchUpPolicy` value.")
    source: str = Field(default=ScheduleSource.API.value, description="A `ScheduleSource` value.")
    owner_user_id: str = Field(
        foreign_key="users.id", description="The service account of the schedule's organization its runs run as."
    )
    needs_attention: str | None = Field(
        default=None,
        sa_column=Column(Text),
        description="Why the schedule does not fire (its workflow is gone, its parameters no longer fit); NULL: "
        "it fires.",
    )
    next_fire_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=True),
        description="The next fire time the scheduler acts on (UTC).",
    )
    version: int = Field(default=1, description="Counts the changes: the scheduler fires only what it read.")
    created_by: str | None = Field(default=None, foreign_key="users.id")
    updated_by: str | None = Field(default=None, foreign_key="users.id")
    created_at: datetime = _required_timestamp()
    updated_at: datetime = _required_timestamp()


class ScheduleFire(SQLModel, table=True):
    """One fire time of a schedule, acted on once: the unique (schedule, fire time) row is what makes the
    replicas fire it exactly once."""

    __tablename__ = "schedule_fires"
    __table_args__ = (UniqueConstraint("schedule_id", "fire_time", name="uq_schedule_fires_time"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    schedule_id: str = Field(foreign_key="schedules.id")
    fire_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    fired_at: datetime = _required_timestamp()
    outcome: str = Field(description="`started`, `skipped` (the previous run still ran) or `not_started`.")
    execution_id: str | None = Field(default=None, foreign_key="executions.id")
    detail: str | None = Field(default=None, sa_column=Column(Text))
