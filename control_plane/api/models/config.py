"""Request and response bodies of config entries (defined in `bifrost.api`); here, how each is made."""

from __future__ import annotations

from bifrost.api import config as api
from bifrost.api.config import ConfigIn
from control_plane.db.models import ConfigEntry

__all__ = ["ConfigIn", "ConfigOut"]


class ConfigOut(api.ConfigOut):
    @classmethod
    def of(cls, entry: ConfigEntry) -> ConfigOut:
        return cls(name=entry.name, value=entry.value, org_id=entry.org_id, updated_at=entry.updated_at)
