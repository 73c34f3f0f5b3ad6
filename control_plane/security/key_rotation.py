"""Re-encrypting what is kept encrypted at rest with the newest key, so that older keys may be removed."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import select

from control_plane.db.models import Secret
from control_plane.db.session import session_scope
from control_plane.errors import ConflictError
from control_plane.executions.repository import reseal_parameters
from control_plane.security.audit import record
from control_plane.security.encryption import SecretCipher, SecretDecryptionError
from control_plane.security.principals import Principal


def rotate_encryption_keys(db: Engine, cipher: SecretCipher, actor: Principal, *, ip: str) -> int:
    """Re-encrypt every secret with the newest key, and the secret values passed to the sub-workflows that have yet
    to run, in one transaction; how many secrets were re-encrypted. `ConflictError`, and nothing changed, when a
    value no configured key decrypts is found."""
    with session_scope(db) as session:
        secrets = session.exec(select(Secret)).all()
        try:
            for secret in secrets:
                secret.ciphertext = cipher.rotate(secret.ciphertext)
                session.add(secret)
            reseal_parameters(session.connection(), cipher.rotate)
        except SecretDecryptionError as exc:
            raise ConflictError(str(exc)) from exc
        record(session, "secret.keys_rotated", actor=actor, org_id=None, ip=ip, count=len(secrets))
        session.commit()
    return len(secrets)
