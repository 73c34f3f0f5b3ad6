"""Which callers may start which workflow: a workflow may be restricted to organization roles."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Engine
from sqlmodel import Session

from control_plane.db.models import WorkflowAccess, utcnow
from control_plane.db.session import session_scope
from control_plane.errors import ForbiddenError
from control_plane.security.audit import record
from control_plane.security.authentication import ORG_HEADER, Credentials, authenticate_in, running_user
from control_plane.security.principals import Principal, principal_of
from control_plane.security.tokens import ExecutionClaims


def may_start(session: Session, principal: Principal, workflow_name: str) -> bool:
    """Platform admins start anything; others need one of the workflow's roles in the org they act for."""
    if principal.is_platform_admin:
        return True
    rule = session.get(WorkflowAccess, workflow_name)
    if rule is None:
        return True
    role = principal.role_in(principal.org_id) if principal.org_id else None
    return role is not None and role.value in rule.roles


def authorize_start(db: Engine, caller: Principal | Credentials, workflow_name: str, *, ip: str) -> Principal:
    """The caller (authenticated here when given as credentials) starting `workflow_name`, for the organization
    they act for (only platform admins start global runs). `ForbiddenError` when the workflow is restricted to
    roles the caller lacks there; a platform admin starting a run for an organization they do not belong to is
    audited."""
    with session_scope(db) as session:
        user = caller if isinstance(caller, Principal) else authenticate_in(session, caller)
        if user.org_id is None and not user.is_platform_admin:
            raise ForbiddenError(
                f"you belong to no organization to run workflows for (or send the {ORG_HEADER} header)"
            )
        if not may_start(session, user, workflow_name):
            raise ForbiddenError(f"workflow {workflow_name!r} is restricted to other roles")
        if user.is_platform_admin and user.org_id is not None and user.org_id not in user.roles:
            record(session, "execution.started_for_org", actor=user, org_id=user.org_id, target=workflow_name, ip=ip)
            session.commit()
    return user


def may_start_from_run(db: Engine, claims: ExecutionClaims, workflow_name: str) -> bool:
    """Whether a running execution's user, in the execution's organization, may start workflow `workflow_name`
    (a sub-workflow); `NotAuthenticatedError` when the user is gone."""
    with session_scope(db) as session:
        user = running_user(session, claims)
        principal = replace(principal_of(session, user), org_id=claims.org_id)
        return may_start(session, principal, workflow_name)


def access_rule(db: Engine, workflow_name: str) -> WorkflowAccess | None:
    """The roles that may start the workflow; None: every signed-in user may."""
    with session_scope(db) as session:
        return session.get(WorkflowAccess, workflow_name)


def restrict(db: Engine, actor: Principal, workflow_name: str, roles: list[str], *, ip: str) -> WorkflowAccess:
    """Let only `roles` start the workflow."""
    with session_scope(db) as session:
        rule = session.get(WorkflowAccess, workflow_name) or WorkflowAccess(workflow_name=workflow_name, roles=roles)
        rule.roles = roles
        rule.updated_by = actor.user_id
        rule.updated_at = utcnow()
        session.add(rule)
        record(
            session, "workflow_access.changed", actor=actor, org_id=None, target=workflow_name, ip=ip, roles=roles
        )
        session.commit()
        return rule


def lift_restriction(db: Engine, actor: Principal, workflow_name: str, *, ip: str) -> None:
    """Let every signed-in user start the workflow again."""
    with session_scope(db) as session:
        rule = session.get(WorkflowAccess, workflow_name)
        if rule is not None:
            session.delete(rule)
            record(session, "workflow_access.cleared", actor=actor, org_id=None, target=workflow_name, ip=ip)
            session.commit()
