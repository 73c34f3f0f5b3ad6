"""Request and response bodies of users (defined in `bifrost.api`); here, how each is made."""

from __future__ import annotations

from bifrost.api import users as api
from bifrost.api.users import UserIn, UserPatch
from control_plane.security.users import UserWithRoles

__all__ = ["UserIn", "UserOut", "UserPatch"]


class UserOut(api.UserOut):
    @classmethod
    def of(cls, found: UserWithRoles) -> UserOut:
        user = found.user
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            org_id=user.org_id,
            roles=found.roles,
            is_platform_admin=user.is_platform_admin,
            is_active=user.is_active,
            is_service_account=user.is_service_account,
            has_password=user.password_hash is not None,
            created_at=user.created_at,
        )
