"""Secrets and config entries: named values of one organization, or global ones every organization falls back to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, or_
from sqlmodel import Session, col, select

from control_plane.db.models import ConfigEntry, Secret, utcnow
from control_plane.db.session import session_scope
from control_plane.errors import ConflictError
from control_plane.security.audit import record
from control_plane.security.authentication import running_user
from control_plane.security.encryption import SecretCipher, SecretDecryptionError
from control_plane.security.principals import Principal
from control_plane.security.tokens import ExecutionClaims

Entry = TypeVar("Entry", Secret, ConfigEntry)

NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"


def find_entry(session: Session, model: type[Entry], org_id: str | None, name: str) -> Entry | None:
    """The entry of exactly this scope (`org_id` None: the global one)."""
    scope = col(model.org_id).is_(None) if org_id is None else col(model.org_id) == org_id
    return session.exec(select(model).where(scope, model.name == name)).first()


def resolve_entry(session: Session, model: type[Entry], org_id: str | None, name: str) -> Entry | None:
    """What an execution of `org_id` reads: the org's own entry, else the global one."""
    own = find_entry(session, model, org_id, name) if org_id is not None else None
    return own or find_entry(session, model, None, name)


def entries_visible_to_org(session: Session, model: type[Entry], org_id: str | None) -> list[Entry]:
    """The org's entries and the global ones, by name."""
    scope = (
        col(model.org_id).is_(None) if org_id is None else or_(col(model.org_id).is_(None), col(model.org_id) == org_id)
    )
    return list(session.exec(select(model).where(scope).order_by(col(model.name), col(model.org_id))).all())


@dataclass(frozen=True)
class EntryWrite:
    """Who changes an entry of which scope (`org_id` None: the global ones), and from where: what the audit log
    records of the change."""

    org_id: str | None
    actor: Principal
    ip: str


def upsert_entry(
    db_engine: Engine,
    model: type[Entry],
    name: str,
    value_columns: dict[str, Any],
    *,
    write: EntryWrite,
    audit_prefix: str,
) -> Entry:
    """Create or replace the entry `name` of the written scope, audited as `<audit_prefix>.created` or
    `<audit_prefix>.updated`. `value_columns` set the model's columns that hold the value (a secret's ciphertext,
    a config entry's plain value)."""
    with session_scope(db_engine) as session:
        entry = find_entry(session, model, write.org_id, name)
        action = f"{audit_prefix}.updated" if entry else f"{audit_prefix}.created"
        entry = entry or model(org_id=write.org_id, name=name, **value_columns)
        entry.sqlmodel_update(value_columns, update={"updated_by": write.actor.user_id, "updated_at": utcnow()})
        session.add(entry)
        record(session, action, actor=write.actor, org_id=write.org_id, target=name, ip=write.ip)
        session.commit()
        return entry


def store_secret(db_engine: Engine, cipher: SecretCipher, name: str, value: str, *, write: EntryWrite) -> Secret:
    """Create or replace the secret `name` of the written scope, its value encrypted; audited as
    `secret.created` or `secret.updated`."""
    ciphertext = cipher.encrypt(value)
    return upsert_entry(db_engine, Secret, name, {"ciphertext": ciphertext}, write=write, audit_prefix="secret")


def delete_entry(db_engine: Engine, model: type[Entry], name: str, *, write: EntryWrite, audit_prefix: str) -> bool:
    """Delete the entry `name` of the written scope, audited as `<audit_prefix>.deleted`; False, and nothing
    written, when there is no such entry."""
    with session_scope(db_engine) as session:
        entry = find_entry(session, model, write.org_id, name)
        if entry is None:
            return False
        session.delete(entry)
        record(session, f"{audit_prefix}.deleted", actor=write.actor, org_id=write.org_id, target=name, ip=write.ip)
        session.commit()
        return True


def visible_entries(db_engine: Engine, model: type[Entry], org_id: str | None) -> list[Entry]:
    """`entries_visible_to_org` in a transaction of its own."""
    with session_scope(db_engine) as session:
        return entries_visible_to_org(session, model, org_id)


def entry_of_org(db_engine: Engine, model: type[Entry], org_id: str | None, name: str) -> Entry | None:
    """`resolve_entry` in a transaction of its own: the org's own entry, else the global one."""
    with session_scope(db_engine) as session:
        return resolve_entry(session, model, org_id, name)


def entry_for_run(db_engine: Engine, claims: ExecutionClaims, model: type[Entry], name: str) -> Entry | None:
    """What a running execution reads as `name`: its organization's entry, else the global one.
    `NotAuthenticatedError` when the execution's user is gone."""
    with session_scope(db_engine) as session:
        running_user(session, claims)
        return resolve_entry(session, model, claims.org_id, name)


def secret_value(cipher: SecretCipher, secret: Secret) -> str:
    """The secret's value; `ConflictError` when no configured key decrypts it."""
    try:
        return cipher.decrypt(secret.ciphertext)
    except SecretDecryptionError as exc:
        raise ConflictError(f"secret {secret.name!r}: {exc}") from exc
