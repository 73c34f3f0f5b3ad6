"""Who is calling."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SessionOut(BaseModel):
    user_id: str
    email: str
    org_id: str | None
    is_platform_admin: bool
    csrf_token: str | None = Field(None, description="Browser sessions: send it as `X-CSRF-Token` on every write.")
