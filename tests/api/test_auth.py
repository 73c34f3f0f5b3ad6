from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select

from control_plane.db.migrate import upgrade_database
from control_plane.db.models import ApiKey, User
from control_plane.db.session import make_engine
from control_plane.security.api_keys import authenticate_api_key, issue_api_key
from control_plane.security.bootstrap import bootstrap
from control_plane.security.tokens import InvalidExecutionTokenError, TokenIssuer, load_secret_key
from control_plane.settings import Settings


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'auth.db'}")
    upgrade_database(engine)
    return engine


def in_one_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def test_token_round_trip_carries_the_claims() -> None:
    issuer = TokenIssuer(b"k" * 32)
    expires = in_one_hour().replace(microsecond=0)
    token = issuer.issue(execution_id="e1", org_id="o1", user_id="u1", expires_at=expires)
    claims = issuer.verify(token)
    assert (claims.execution_id, claims.org_id, claims.user_id, claims.expires_at) == ("e1", "o1", "u1", expires)


def test_token_signed_with_another_key_is_refused() -> None:
    token = TokenIssuer(b"a" * 32).issue(execution_id="e", org_id=None, user_id="u", expires_at=in_one_hour())
    with pytest.raises(InvalidExecutionTokenError, match=r"(?i)signature"):
        TokenIssuer(b"b" * 32).verify(token)


def test_tampered_token_is_refused() -> None:
    issuer = TokenIssuer(b"k" * 32)
    header, _payload, signature = issuer.issue(
        execution_id="e", org_id=None, user_id="u", expires_at=in_one_hour()
    ).split(".")
    forged = issuer.issue(execution_id="other", org_id=None, user_id="u", expires_at=in_one_hour()).split(".")[1]
    with pytest.raises(InvalidExecutionTokenError):
        issuer.verify(f"{header}.{forged}.{signature}")
    with pytest.raises(InvalidExecutionTokenError):
        issuer.verify("not-a-token")


def test_expired_token_is_refused_with_a_clear_message() -> None:
    issuer = TokenIssuer(b"k" * 32)
    token = issuer.issue(
        execution_id="e", org_id=None, user_id="u", expires_at=datetime.now(UTC) - timedelta(seconds=5)
    )
    with pytest.raises(InvalidExecutionTokenError, match="expired"):
        issuer.verify(token)


def test_secret_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key=None)
    first = load_secret_key(settings)
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_secret_key(settings) == first


def test_configured_secret_key_wins(tmp_path: Path) -> None:
    configured = "a-configured-key-that-is-long-enough"
    assert load_secret_key(Settings(data_dir=tmp_path, secret_key=SecretStr(configured))) == configured.encode()
    assert not (tmp_path / "secret.key").exists()


def test_short_configured_secret_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BIFROST_SECRET_KEY is too short"):
        load_secret_key(Settings(data_dir=tmp_path, secret_key=SecretStr("short")))


def test_bootstrap_generates_an_admin_key_once_and_stores_only_its_hash(db: Engine, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, bootstrap_api_key=None)
    key = bootstrap(db, settings)
    assert key is not None
    assert bootstrap(db, settings) is None
    with Session(db) as session:
        stored = session.exec(select(ApiKey)).one()
        assert key not in (stored.key_hash, stored.prefix)
        principal = authenticate_api_key(session, key)
    assert principal is not None
    assert principal.is_platform_admin
    assert principal.org_id is not None


def test_bootstrap_uses_the_configured_key_without_showing_it(db: Engine, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, bootstrap_api_key=SecretStr("bfk_chosen-by-the-operator"))
    assert bootstrap(db, settings) is None
    with Session(db) as session:
        principal = authenticate_api_key(session, "bfk_chosen-by-the-operator")
    assert principal is not None and principal.is_platform_admin


def test_unknown_revoked_and_expired_keys_are_refused(db: Engine, tmp_path: Path) -> None:
    bootstrap(db, Settings(data_dir=tmp_path, bootstrap_api_key=None))
    with Session(db) as session:
        admin = session.exec(select(User)).one()
        revoked, _ = issue_api_key(session, user=admin, name="revoked")
        expired, _ = issue_api_key(session, user=admin, name="expired")
        valid, _ = issue_api_key(session, user=admin, name="valid")
        session.commit()
        for row in session.exec(select(ApiKey)).all():
            if row.name == "revoked":
                row.revoked_at = datetime.now(UTC)
            if row.name == "expired":
                row.expires_at = datetime.now(UTC) - timedelta(minutes=1)
            session.add(row)
        session.commit()
        assert authenticate_api_key(session, revoked) is None
        assert authenticate_api_key(session, expired) is None
        assert authenticate_api_key(session, valid[:-1] + ("A" if valid[-1] != "A" else "B")) is None
        assert authenticate_api_key(session, "") is None
        assert authenticate_api_key(session, valid) is not None
