"""Request and response bodies of browser sessions (the answer is defined in `bifrost.api`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from bifrost.api.sessions import SessionOut

__all__ = ["SessionOut", "SignInIn"]


class SignInIn(BaseModel):
    email: str = Field(max_length=1024)
    password: str = Field(max_length=1024)
