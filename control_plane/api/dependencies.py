"""What routes receive: the running services, the calling user (API key) or the calling runner (token)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from control_plane.auth import (
    ExecutionClaims,
    InvalidExecutionTokenError,
    Principal,
    TokenIssuer,
    authenticate_api_key,
)
from control_plane.db.session import session_scope
from control_plane.engine import Engine as ExecutionEngine
from control_plane.executions import ExecutionService
from control_plane.registry import Registry
from control_plane.settings import Settings


@dataclass(frozen=True)
class Services:
    """Everything the app starts once and every request shares."""

    settings: Settings
    db_engine: Engine
    registry: Registry
    engine: ExecutionEngine
    executions: ExecutionService
    tokens: TokenIssuer


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="An API key, or (runner routes only) an execution token.")
_key_header = APIKeyHeader(name="X-Bifrost-Key", auto_error=False, description="An API key.")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"})


def require_user(
    services: ServicesDep, bearer: BearerDep, header_key: Annotated[str | None, Depends(_key_header)]
) -> Principal:
    """The user whose API key came with the request; 401 without a valid one."""
    key = header_key or (bearer.credentials if bearer else None)
    if not key:
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>` or `X-Bifrost-Key: <key>`")
    with session_scope(services.db_engine) as session:
        principal = authenticate_api_key(session, key)
    if principal is None:
        raise _unauthorized("invalid API key (unknown, revoked or expired)")
    return principal


UserDep = Annotated[Principal, Depends(require_user)]


async def require_execution_token(services: ServicesDep, bearer: BearerDep) -> ExecutionClaims:
    """The claims of the execution token a runner sent; 401 for anything else, API keys included."""
    if bearer is None:
        raise _unauthorized("missing execution token: send `Authorization: Bearer <token>`")
    try:
        return services.tokens.verify(bearer.credentials)
    except InvalidExecutionTokenError as exc:
        raise _unauthorized(str(exc)) from exc


RunnerDep = Annotated[ExecutionClaims, Depends(require_execution_token)]
