"""Users over HTTP: the caller, the members an org admin manages, every user for platform admins."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from control_plane.api.dependencies import OrgAdminDep, ServicesDep, UserDep, client_address
from control_plane.api.models.users import UserIn, UserOut, UserPatch
from control_plane.security import users

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("/me")
def me(services: ServicesDep, user: UserDep) -> UserOut:
    return UserOut.of(users.get_self(services.db_engine, user))


@router.get("")
def list_users(services: ServicesDep, user: OrgAdminDep) -> list[UserOut]:
    """Platform admins: every user. Org admins: the members of the organization acted for."""
    return [UserOut.of(found) for found in users.list_users(services.db_engine, user)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_user(body: UserIn, request: Request, services: ServicesDep, user: OrgAdminDep) -> UserOut:
    """A new user whose home is the organization acted for, with the given role there."""
    created = users.create_user(
        services.db_engine,
        user,
        email=body.email,
        name=body.name,
        password=body.password,
        role=body.role,
        is_platform_admin=body.is_platform_admin,
        ip=client_address(request),
    )
    return UserOut.of(created)


@router.get("/{user_id}")
def get_user(user_id: str, services: ServicesDep, user: UserDep) -> UserOut:
    return UserOut.of(users.get_user(services.db_engine, user, user_id))


@router.patch("/{user_id}")
def update_user(user_id: str, body: UserPatch, request: Request, services: ServicesDep, user: UserDep) -> UserOut:
    """Users change their own name and password; platform admins change anyone, activation and admin rights."""
    updated = users.update_user(
        services.db_engine,
        user,
        user_id,
        changes=body.model_dump(exclude_unset=True, exclude={"password"}),
        password=body.password,
        ip=client_address(request),
    )
    return UserOut.of(updated)
