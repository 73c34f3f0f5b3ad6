"""Secrets at rest: encrypted with the configured keys; a missing key fails clearly; keys rotate."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from control_plane.security.encryption import SecretCipher, SecretDecryptionError, load_encryption_keys
from control_plane.settings import Settings
from tests.api.conftest import fresh_database, running_bifrost
from tests.security.conftest import WORKFLOWS, wait_for_workflows

OLD_KEY = Fernet.generate_key()
NEW_KEY = Fernet.generate_key()


def test_ciphertext_hides_the_value_and_decrypts_back() -> None:
    cipher = SecretCipher([OLD_KEY])
    ciphertext = cipher.encrypt("hunter2-but-longer")
    assert "hunter2" not in ciphertext
    assert cipher.decrypt(ciphertext) == "hunter2-but-longer"


def test_a_wrong_key_gives_a_clear_error_not_garbage() -> None:
    ciphertext = SecretCipher([OLD_KEY]).encrypt("value")
    with pytest.raises(SecretDecryptionError, match="BIFROST_ENCRYPTION_KEYS"):
        SecretCipher([NEW_KEY]).decrypt(ciphertext)


def test_rotation_reencrypts_with_the_newest_key() -> None:
    old_ciphertext = SecretCipher([OLD_KEY]).encrypt("value")
    during = SecretCipher([NEW_KEY, OLD_KEY])
    assert during.decrypt(old_ciphertext) == "value"
    rotated = during.rotate(old_ciphertext)
    assert SecretCipher([NEW_KEY]).decrypt(rotated) == "value"
    assert during.encrypt("fresh") != during.encrypt("fresh")  # random IVs: equal values do not show


def test_configured_keys_are_checked_one_by_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, encryption_keys=SecretStr(f"{NEW_KEY.decode()}, not-a-key"))
    with pytest.raises(ValueError, match="key #2 is not a Fernet key"):
        load_encryption_keys(settings)
    both = Settings(data_dir=tmp_path, encryption_keys=SecretStr(f"{NEW_KEY.decode()},{OLD_KEY.decode()}"))
    assert load_encryption_keys(both) == [NEW_KEY, OLD_KEY]


def test_default_key_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = load_encryption_keys(settings)
    key_file = tmp_path / "data" / "encryption.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_encryption_keys(settings) == first
    Fernet(first[0])


def test_restarts_with_removed_and_rotated_keys(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    database_url = fresh_database("sqlite", tmp_path, request)

    def leak_with(keys: list[bytes]) -> dict[str, object]:
        joined = SecretStr(",".join(key.decode() for key in keys))
        with (
            running_bifrost(tmp_path, database_url, {"flows.py": WORKFLOWS}, encryption_keys=joined) as bifrost,
            bifrost.client() as admin,
        ):
            wait_for_workflows(admin)
            if keys == [OLD_KEY]:
                assert admin.put("/api/secrets/token", json={"value": "kept-across-restarts"}).status_code == 200
            if len(keys) == 2:
                assert admin.post("/api/secrets/rotate").json() == {"rotated": 1}
            done = admin.post("/api/workflows/leak/execute", json={"parameters": {"name": "token"}})
            execution: dict[str, object] = done.json()
            return execution

    assert leak_with([OLD_KEY])["status"] == "Success"
    without_the_key = leak_with([NEW_KEY])
    assert without_the_key["status"] == "Failed"
    assert "cannot be decrypted" in str(without_the_key["error"])
    assert leak_with([NEW_KEY, OLD_KEY])["status"] == "Success"
    assert leak_with([NEW_KEY])["status"] == "Success"
