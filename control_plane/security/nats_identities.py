"""NATS identities, enforced by the NATS server (its decentralized JWT authentication).

The server trusts one operator. The operator signs two accounts: Bifrost's (with JetStream) and the system
account. The Bifrost account's key signs user JWTs: the control plane's own, allowed everything in the account,
and one per execution, minted at launch, that expires with the execution's deadline and allows only

- publishing the execution's events (`bifrost.runs.<id>.events`),
- receiving its control messages (`bifrost.runs.<id>.control`) and replies on its own inbox prefix (the
  JetStream acknowledgements of its events).

A runner therefore cannot read another execution's events, reach the JetStream API or forge another execution's
events: the server refuses with a permissions violation. Keys are ed25519 nkeys; the JWTs are NATS' own format
(header `{"typ":"JWT","alg":"ed25519-nkey"}`, base64url parts, the signature over the first two).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import nkeys
from pydantic import BaseModel, Field, ValidationError

from bifrost._internal.protocol import control_subject, events_subject, inbox_prefix, pool_subject
from control_plane.security.key_files import create_key_file

KEYS_FILE = "nats-keys.json"
"""In the data folder: the keys of the embedded nats-server, and those `bifrost nats-config` prints for another."""
ACCOUNT_NAME = "BIFROST"
SYSTEM_ACCOUNT_NAME = "SYS"

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_UNLIMITED = {"subs": -1, "data": -1, "payload": -1}
_ACCOUNT_LIMITS = {**_UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}
_JETSTREAM_LIMITS = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
_KINDS = {
    nkeys.PREFIX_BYTE_OPERATOR: "an operator",
    nkeys.PREFIX_BYTE_ACCOUNT: "an account",
    nkeys.PREFIX_BYTE_USER: "a user",
}


class NatsKeyError(ValueError):
    """A NATS key is missing or not of the kind needed; the message names which."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_seed(prefix: int) -> str:
    """A fresh nkey seed of the given kind (`nkeys.PREFIX_BYTE_OPERATOR`, `..._ACCOUNT`, `..._USER`)."""
    seed: bytes = nkeys.encode_seed(os.urandom(32), prefix)
    return seed.decode()


def _random_key(text: str) -> bytes | None:
    """The 32 bytes of a key given as standard base64 (what the Helm chart generates); None for anything else,
    an nkey seed included (its base32 text is never valid base64 of 32 bytes)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return raw if len(raw) == 32 else None


def _key_pair(seed: str, prefix: int, what: str) -> nkeys.KeyPair:
    """The key pair of `seed`: an nkey seed of the kind `prefix`, or 32 random bytes in base64 made into one."""
    raw = _random_key(seed.strip())
    if raw is not None:
        return nkeys.from_seed(bytearray(nkeys.encode_seed(raw, prefix)))
    try:
        kind, _ = nkeys.decode_seed(bytearray(seed.strip().encode()))
        if kind != prefix:
            kind_name = _KINDS.get(kind, "another kind of key")
            raise NatsKeyError(f"{what} is the nkey seed of {kind_name}, not of {_KINDS[prefix]}")
        return nkeys.from_seed(bytearray(seed.strip().encode()))
    except nkeys.NkeysError:
        raise NatsKeyError(f"{what} is neither a valid nkey seed nor 32 bytes in base64") from None


def _public_key(pair: nkeys.KeyPair) -> str:
    key: bytes = pair.public_key
    return key.decode()


def encode_jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any], expires_at: float | None) -> str:
    """A NATS JWT with `nats` as its `nats` claim, signed by `issuer`."""
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": _public_key(issuer), "name": name, "sub": subject}
    if expires_at is not None:
        claims["exp"] = int(expires_at)
    claims["nats"] = {**nats, "version": 2}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()).decode()
    signing_input = f"{_b64url(json.dumps(_HEADER).encode())}.{_b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64url(issuer.sign(signing_input.encode()))}"


class NatsCredentials(BaseModel):
    """A NATS user: its JWT and the nkey seed that proves it holds the JWT."""

    jwt: str = Field(repr=False)
    seed: str = Field(repr=False)


class AccountSigner:
    """Mints user identities in the Bifrost account with the account's key."""

    def __init__(self, account_seed: str, what: str = "the NATS account seed") -> None:
        self._account = _key_pair(account_seed, nkeys.PREFIX_BYTE_ACCOUNT, what)
        self.account_public_key = _public_key(self._account)

    def _user(self, name: str, permissions: dict[str, Any], expires_at: float | None) -> NatsCredentials:
        seed = new_seed(nkeys.PREFIX_BYTE_USER)
        user = _public_key(nkeys.from_seed(bytearray(seed.encode())))
        nats = {"type": "user", **_UNLIMITED, **permissions}
        return NatsCredentials(jwt=encode_jwt(self._account, user, name, nats, expires_at), seed=seed)

    def control_plane(self) -> NatsCredentials:
        """The control plane's identity: everything in the account, no expiry."""
        return self._user("bifrost-control-plane", {"pub": {}, "sub": {}}, None)

    def runner(self, execution_id: str, expires_at: datetime) -> NatsCredentials:
        """The identity of one execution's runner, valid until `expires_at`."""
        permissions = {
            "pub": {"allow": [events_subject(execution_id)]},
            "sub": {"allow": [control_subject(execution_id), f"{inbox_prefix(execution_id)}.>"]},
        }
        return self._user(f"bifrost-runner-{execution_id}", permissions, expires_at.timestamp())


    def pool_runner(self, runner_name: str, expires_at: datetime) -> NatsCredentials:
        """The identity of one waiting pool runner: it may only receive its claim and answer it."""
        permissions = {"pub": {"deny": [">"]}, "sub": {"allow": [pool_subject(runner_name)]}, "resp": {"max": 1}}
        return self._user(f"bifrost-pool-{runner_name}", permissions, expires_at.timestamp())


class NatsKeys(BaseModel):
    """The seeds of the operator, the system account and the Bifrost account."""

    operator: str = Field(repr=False)
    system_account: str = Field(repr=False)
    account: str = Field(repr=False)

    @classmethod
    def generate(cls) -> NatsKeys:
        return cls(
            operator=new_seed(nkeys.PREFIX_BYTE_OPERATOR),
            system_account=new_seed(nkeys.PREFIX_BYTE_ACCOUNT),
            account=new_seed(nkeys.PREFIX_BYTE_ACCOUNT),
        )

    @classmethod
    def load_or_create(cls, path: Path) -> NatsKeys:
        """The keys kept in `path`, generated there (readable by the owner only) the first time."""
        if not path.exists():
            create_key_file(path, cls.generate().model_dump_json().encode())
        try:
            return cls.model_validate_json(path.read_bytes())
        except ValidationError:
            raise NatsKeyError(f"{path} does not hold Bifrost's NATS keys: delete it to have new ones made") from None

    def server_config(self) -> str:
        """The part of a nats-server configuration that makes it trust these keys: the operator, the system
        account and both accounts' JWTs, resolved from memory."""
        operator = _key_pair(self.operator, nkeys.PREFIX_BYTE_OPERATOR, "the operator seed")
        system = _key_pair(self.system_account, nkeys.PREFIX_BYTE_ACCOUNT, "the system account seed")
        account = AccountSigner(self.account).account_public_key
        system_public = _public_key(system)
        operator_nats = {"type": "operator", "system_account": system_public}
        operator_jwt = encode_jwt(operator, _public_key(operator), "bifrost", operator_nats, None)
        account_nats = {"type": "account", "limits": {**_ACCOUNT_LIMITS, **_JETSTREAM_LIMITS}}
        system_nats = {"type": "account", "limits": _ACCOUNT_LIMITS}
        account_jwt = encode_jwt(operator, account, ACCOUNT_NAME, account_nats, None)
        system_jwt = encode_jwt(operator, system_public, SYSTEM_ACCOUNT_NAME, system_nats, None)
        return (
            f"operator: {operator_jwt}\n"
            f"system_account: {system_public}\n"
            "resolver: MEMORY\n"
            "resolver_preload: {\n"
            f"  {account}: {account_jwt}\n"
            f"  {system_public}: {system_jwt}\n"
            "}\n"
        )
