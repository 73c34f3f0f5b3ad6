"""Request and response bodies of secrets (defined in `bifrost.api`): values go in, and never come out here."""

from __future__ import annotations

from bifrost.api import secrets as api
from bifrost.api.secrets import RotationOut, SecretIn
from control_plane.db.models import Secret

__all__ = ["RotationOut", "SecretIn", "SecretOut"]


class SecretOut(api.SecretOut):
    """A secret without its value."""

    @classmethod
    def of(cls, secret: Secret) -> SecretOut:
        return cls(name=secret.name, org_id=secret.org_id, updated_at=secret.updated_at, updated_by=secret.updated_by)
