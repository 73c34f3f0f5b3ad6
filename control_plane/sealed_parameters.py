"""Secret values that travel with a run: those a parent passes to a sub-workflow in its parameters, kept
encrypted beside the parameters (which show them masked) until the run's runner receives them; and the masking
of what the control plane itself keeps of a runner's output."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, or_, select

from bifrost.redaction import Redactor
from control_plane.db.models import Execution, Secret
from control_plane.secrets_crypto import SecretCipher, SecretDecryptionError

_EXECUTIONS: Table = Execution.__table__  # type: ignore[attr-defined]
_SECRETS: Table = Secret.__table__  # type: ignore[attr-defined]


def seal(cipher: SecretCipher, parameters: dict[str, Any], secrets: Iterable[str]) -> tuple[dict[str, Any], str | None]:
    """The parameters to store, with the `secrets` that occur in them masked, and the encrypted originals (None
    when no secret occurs: the parameters are stored as they are)."""
    redactor = _redactor(secrets)
    occurring = redactor.found_in(parameters)
    if not occurring:
        return parameters, None
    sealed = cipher.encrypt(json.dumps({"parameters": parameters, "secrets": occurring}))
    return redactor.value(parameters), sealed


def unseal(cipher: SecretCipher, sealed: str) -> tuple[dict[str, Any], list[str]]:
    """The real parameters and the secret values among them; `SecretDecryptionError` when no key opens them."""
    opened = json.loads(cipher.decrypt(sealed))
    return opened["parameters"], opened["secrets"]


def readable_secrets(db: Engine, cipher: SecretCipher, execution_id: str) -> Redactor:
    """A redactor of every secret value the execution could have read: its organization's secrets, the global
    ones, and those its parent passed to it. Values no configured key decrypts are left out."""
    with db.connect() as conn:
        execution = conn.execute(
            select(_EXECUTIONS.c.org_id, _EXECUTIONS.c.sealed_parameters).where(_EXECUTIONS.c.id == execution_id)
        ).one_or_none()
        if execution is None:
            return Redactor()
        scope: ColumnElement[bool] = _SECRETS.c.org_id.is_(None)
        if execution.org_id is not None:
            scope = or_(scope, _SECRETS.c.org_id == execution.org_id)
        ciphertexts = list(conn.execute(select(_SECRETS.c.ciphertext).where(scope)).scalars())
    values: list[str] = []
    for ciphertext in ciphertexts:
        try:
            values.append(cipher.decrypt(ciphertext))
        except SecretDecryptionError:
            continue
    if execution.sealed_parameters is not None:
        with contextlib.suppress(SecretDecryptionError):
            values.extend(unseal(cipher, execution.sealed_parameters)[1])
    return _redactor(values)


def _redactor(secrets: Iterable[str]) -> Redactor:
    redactor = Redactor()
    for secret in secrets:
        redactor.add(secret)
    return redactor
