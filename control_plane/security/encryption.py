"""Encryption of secret values at rest: Fernet (AES-128-CBC + HMAC-SHA256), several keys for rotation."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from control_plane.security.key_files import create_key_file
from control_plane.settings import Settings

KEY_FILE_NAME = "encryption.key"


class SecretDecryptionError(Exception):
    """A stored secret that none of the configured keys opens."""


class SecretCipher:
    """Encrypts with the newest key; decrypts with any configured key."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptionError(
                "a stored secret cannot be decrypted with any key in BIFROST_ENCRYPTION_KEYS: the key that "
                "encrypted it was removed or changed (keep the old key after the new one until rotation is done)"
            ) from exc

    def rotate(self, ciphertext: str) -> str:
        """The same value encrypted with the newest key."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptionError(
                "a stored secret cannot be re-encrypted: no key in BIFROST_ENCRYPTION_KEYS decrypts it"
            ) from exc


def load_encryption_keys(settings: Settings) -> list[bytes]:
    """`BIFROST_ENCRYPTION_KEYS` (comma-separated, newest first), else the key kept in `data_dir`."""
    if settings.encryption_keys is not None:
        keys = [part.strip().encode() for part in settings.encryption_keys.get_secret_value().split(",")]
        for position, key in enumerate(keys, start=1):
            _check_key(key, f"BIFROST_ENCRYPTION_KEYS key #{position}")
        return keys
    path = settings.data_dir / KEY_FILE_NAME
    if not path.exists():
        create_key_file(path, Fernet.generate_key())
    key = path.read_bytes().strip()
    _check_key(key, str(path))
    return [key]


def _check_key(key: bytes, where: str) -> None:
    try:
        Fernet(key)
    except ValueError as exc:
        raise ValueError(
            f"{where} is not a Fernet key (32 url-safe base64-encoded bytes); "
            "make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        ) from exc


