"""Options data providers returned, kept in the database for reuse: every replica reuses what any of them got."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from control_plane.data_providers.options import Option
from control_plane.db.models import utcnow
from control_plane.db.tables import DATA_PROVIDER_RESULTS as _RESULTS


def result_key(org_id: str | None, provider: str, inputs: dict[str, Any], workspace_revision: str | None) -> str:
    """What the options of a call are reused by: its organization, provider, inputs and workspace revision."""
    identity = json.dumps([org_id, provider, inputs, workspace_revision], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(identity.encode()).hexdigest()


@dataclass(frozen=True)
class KeptCall:
    """The call whose options are kept."""

    org_id: str | None
    provider: str
    workspace_revision: str | None
    execution_id: str


@dataclass(frozen=True)
class KeptOptions:
    options: list[Option]
    execution_id: str


class ProviderResults:
    def __init__(self, db: Engine) -> None:
        self._db = db

    def get(self, key: str) -> KeptOptions | None:
        """The options kept under `key`, while they have not expired."""
        query = select(_RESULTS.c.options, _RESULTS.c.execution_id).where(
            _RESULTS.c.key == key, _RESULTS.c.expires_at > utcnow()
        )
        with self._db.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        return KeptOptions([Option.model_validate(option) for option in row.options], row.execution_id)

    def keep(self, key: str, call: KeptCall, options: list[Option], ttl_seconds: int) -> None:
        """Keep `options` under `key` for `ttl_seconds`, in place of what was kept there; expired results of
        every call go at the same time."""
        now = utcnow()
        row = {
            "key": key,
            "org_id": call.org_id,
            "provider": call.provider,
            "workspace_revision": call.workspace_revision,
            "execution_id": call.execution_id,
            "options": [option.model_dump(mode="json", exclude_none=True) for option in options],
            "expires_at": now + timedelta(seconds=ttl_seconds),
        }
        try:
            with self._db.begin() as conn:
                conn.execute(delete(_RESULTS).where((_RESULTS.c.key == key) | (_RESULTS.c.expires_at <= now)))
                conn.execute(_RESULTS.insert(), row)
        except IntegrityError:
            pass  # another replica kept the same call's options at the same moment: either will do
