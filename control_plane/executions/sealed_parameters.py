"""Secret values that travel with a run: those a parent passes to a sub-workflow in its parameters, kept
encrypted beside the parameters (which show them masked) until the run's runner receives them; and the masking
of what the control plane itself keeps of a runner's output."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine

from bifrost._internal.redaction import Redactor
from control_plane.db.models import Secret
from control_plane.db.session import session_scope
from control_plane.security.encryption import SecretCipher, SecretDecryptionError
from control_plane.security.scoped_values import entries_visible_to_org


def seal(cipher: SecretCipher, parameters: dict[str, Any], secrets: Sequence[str]) -> tuple[dict[str, Any], str | None]:
    """The parameters to store, with the `secrets` that occur in them masked, and the encrypted originals (None
    when no secret occurs: the parameters are stored as they are)."""
    if not secrets:
        return parameters, None
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


def readable_secrets(db: Engine, cipher: SecretCipher, org_id: str | None, sealed: str | None) -> Redactor:
    """A redactor of every secret value an execution of `org_id` could have read: its organization's secrets,
    the global ones, and those its parent passed to it, `sealed` with its parameters. Values no configured key
    decrypts are left out."""
    with session_scope(db) as session:
        ciphertexts = [entry.ciphertext for entry in entries_visible_to_org(session, Secret, org_id)]
    values: list[str] = []
    for ciphertext in ciphertexts:
        try:
            values.append(cipher.decrypt(ciphertext))
        except SecretDecryptionError:
            continue
    if sealed is not None:
        with contextlib.suppress(SecretDecryptionError):
            values.extend(unseal(cipher, sealed)[1])
    return _redactor(values)


def _redactor(secrets: Iterable[str]) -> Redactor:
    redactor = Redactor()
    for secret in secrets:
        redactor.add(secret)
    return redactor
