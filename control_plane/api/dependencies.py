"""What routes receive: the running services, and who is calling. Every route but the public probes and the
login page depends on one of `UserDep` (any signed-in user), `OrgAdminDep`, `PlatformAdminDep`, `StarterDep`
(users, by API key or browser session) or `RunnerDep` (a running workflow, by its execution token)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Query, Request, status
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from control_plane.api.errors import status_of_refusal
from control_plane.data_providers.service import DataProviderService
from control_plane.engine import ExecutionEngine
from control_plane.errors import NotAuthenticatedError, RefusedError
from control_plane.executions.service import ExecutionService, Starter
from control_plane.forms.service import FormService
from control_plane.registry import Registry
from control_plane.schedules.service import ScheduleService
from control_plane.security.authentication import CSRF_HEADER, ORG_HEADER, Credentials, authenticate
from control_plane.security.encryption import SecretCipher
from control_plane.security.principals import Principal
from control_plane.security.scoped_values import NAME_PATTERN
from control_plane.security.tokens import ExecutionClaims, InvalidExecutionTokenError, TokenIssuer
from control_plane.security.workflow_access import authorize_start
from control_plane.settings import Settings

SESSION_COOKIE = "bifrost_session"
AUTHENTICATED_SCOPE_KEY = "bifrost.principal"
"""Where the request guard leaves the principal, or the execution token's claims, it checked before the body
was read."""
STARTER_SCOPE_KEY = "bifrost.starter"
"""Where the request guard leaves the starter of a route that starts a workflow, checked with its principal."""
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Services:
    """Everything the app starts once and every request shares."""

    settings: Settings
    db_engine: Engine
    registry: Registry
    engine: ExecutionEngine
    executions: ExecutionService
    data_providers: DataProviderService
    forms: FormService
    schedules: ScheduleService
    tokens: TokenIssuer
    cipher: SecretCipher


async def get_services(request: Request) -> Services:
    """Async, as every dependency that does no blocking work: FastAPI runs a plain `def` one in a worker thread."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="An API key, or (runner routes only) an execution token.")
_key_header = APIKeyHeader(name="X-Bifrost-Key", auto_error=False, description="An API key.")
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description=f"A browser session from `/login`; writes need `{CSRF_HEADER}`."
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=message)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def get_credentials(
    request: Request,
    bearer: BearerDep,
    header_key: Annotated[str | None, Depends(_key_header)],
    session_token: Annotated[str | None, Depends(_session_cookie)],
    org: Annotated[
        str | None,
        Header(
            alias=ORG_HEADER,
            description="Act for this organization: one you belong to (platform admins: any). "
            "Default: the key's organization, else your home organization.",
        ),
    ] = None,
) -> Credentials:
    return Credentials(
        api_key=header_key or (bearer.credentials if bearer else None),
        session_token=session_token,
        org=org,
        csrf_token=request.headers.get(CSRF_HEADER),
        writes=request.method not in _SAFE_METHODS,
    )


CredentialsDep = Annotated[Credentials, Depends(get_credentials)]


async def bearer_of(request: Request) -> HTTPAuthorizationCredentials | None:
    """What `BearerDep` gives, for callers outside FastAPI's dependencies."""
    return await _bearer(request)


async def credentials_of(request: Request) -> Credentials:
    """What `CredentialsDep` gives, for callers outside FastAPI's dependencies."""
    bearer, key, session_token = await _bearer(request), await _key_header(request), await _session_cookie(request)
    return await get_credentials(request, bearer, key, session_token, request.headers.get(ORG_HEADER))


@contextmanager
def _refusals_answered() -> Iterator[None]:
    """A service's refusal as the HTTP error that answers it: what the request guard, which runs the
    dependencies that authenticate before any route, can answer."""
    try:
        yield
    except NotAuthenticatedError as exc:
        raise _unauthorized(str(exc)) from exc
    except RefusedError as exc:
        raise HTTPException(status_of_refusal(exc), detail=str(exc)) from exc


def _known_principal(request: Request) -> Principal | None:
    known = request.scope.get(AUTHENTICATED_SCOPE_KEY)
    return known if isinstance(known, Principal) else None


def require_user(request: Request, services: ServicesDep, credentials: CredentialsDep) -> Principal:
    """The signed-in user, acting for the requested (or their default) organization. 401 without valid
    credentials, 403 for a browser write without its CSRF token or an organization the user may not act for."""
    known = _known_principal(request)
    if known is not None:
        return known
    with _refusals_answered():
        return authenticate(services.db_engine, credentials)


UserDep = Annotated[Principal, Depends(require_user)]


async def require_platform_admin(user: UserDep) -> Principal:
    """A platform admin; 403 for anyone else."""
    if not user.is_platform_admin:
        raise forbidden("only platform admins may do this")
    return user


PlatformAdminDep = Annotated[Principal, Depends(require_platform_admin)]


async def require_org_admin(user: UserDep) -> Principal:
    """An admin of the organization the caller acts for (platform admins count); 403 for anyone else."""
    if user.org_id is None and not user.is_platform_admin:
        raise forbidden(f"no organization selected: send the {ORG_HEADER} header")
    if not user.may_administer_org(user.org_id):
        raise forbidden("only admins of this organization may do this")
    return user


OrgAdminDep = Annotated[Principal, Depends(require_org_admin)]


def require_execution_token(request: Request, services: ServicesDep, bearer: BearerDep) -> ExecutionClaims:
    """The claims of the execution token a runner sent, while its execution has not ended; 401 for anything
    else, API keys included. A token outlives its execution until it expires: the execution's status, one
    primary-key read, decides whether it still acts."""
    known = request.scope.get(AUTHENTICATED_SCOPE_KEY)
    if isinstance(known, ExecutionClaims):
        return known
    if bearer is None:
        raise _unauthorized("missing execution token: send `Authorization: Bearer <token>`")
    try:
        claims = services.tokens.verify(bearer.credentials)
    except InvalidExecutionTokenError as exc:
        raise _unauthorized(str(exc)) from exc
    execution_status = services.executions.status(claims.execution_id)
    if execution_status is None:
        raise _unauthorized(f"execution token of execution {claims.execution_id}, which no longer exists")
    if execution_status.is_terminal:
        raise _unauthorized(
            f"execution token of execution {claims.execution_id}, which already finished "
            f"({execution_status.value}): a finished execution's token is no longer valid"
        )
    return claims


RunnerDep = Annotated[ExecutionClaims, Depends(require_execution_token)]


EntryNameParam = Annotated[str, Path(pattern=NAME_PATTERN, description="Letters, digits, `_`, `.`, `-`.")]

GlobalScopeQuery = Annotated[
    bool, Query(alias="global", description="The global entry every organization falls back to (platform admins).")
]


def write_scope(user: Principal, global_scope: bool) -> str | None:
    """The organization an org admin's write goes to; None (global) only for platform admins."""
    if not global_scope:
        return user.org_id
    if not user.is_platform_admin:
        raise forbidden("only platform admins may change global entries")
    return None


async def require_starter(request: Request, services: ServicesDep, credentials: CredentialsDep) -> Starter:
    """The caller starting the workflow named in the path, for the organization they act for (only platform
    admins start global runs). 403 when the workflow is restricted to roles the caller lacks there; a platform
    admin starting a run for an organization they do not belong to is audited. Checked here unless the request
    guard already did."""
    known = request.scope.get(STARTER_SCOPE_KEY)
    if isinstance(known, Starter):
        return known
    return await run_in_threadpool(authorized_starter, request, services, credentials)


def authorized_starter(request: Request, services: Services, credentials: Credentials) -> Starter:
    """What `require_starter` gives, in one blocking call that authenticates the caller unless the request guard
    already did."""
    workflow_name = request.path_params.get("name", "")
    with _refusals_answered():
        user = authorize_start(
            services.db_engine, _known_principal(request) or credentials, workflow_name, ip=client_address(request)
        )
    return Starter(user_id=user.user_id, org_id=user.org_id)


StarterDep = Annotated[Starter, Depends(require_starter)]
