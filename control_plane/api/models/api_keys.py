"""Request and response bodies of API keys (defined in `bifrost.api`); here, how each is made."""

from __future__ import annotations

from bifrost.api import api_keys as api
from bifrost.api.api_keys import ApiKeyIn, ServiceKeyIn
from control_plane.db.models import ApiKey

__all__ = ["ApiKeyCreated", "ApiKeyIn", "ApiKeyOut", "ServiceKeyIn"]


class ApiKeyOut(api.ApiKeyOut):
    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls.model_validate(key, from_attributes=True)


class ApiKeyCreated(api.ApiKeyCreated):
    @classmethod
    def of_new(cls, key: str, stored: ApiKey) -> ApiKeyCreated:
        return cls(**ApiKeyOut.of(stored).model_dump(), key=key)
