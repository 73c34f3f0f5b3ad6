"""The embedded mode's data folder, private to the control plane's user, and the keys it generates once and keeps
there."""

from __future__ import annotations

import os
from pathlib import Path


def create_key_file(path: Path, key: bytes) -> None:
    """Write `key` to a new file readable by its owner only. A file that already exists is left as it is:
    another process created it first, and everyone uses theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(key)


def make_private_folder(folder: Path) -> None:
    """Make `folder` (the data folder) if need be, accessible to its owner only: what is in it (keys, the SQLite
    database, the NATS store, runner records and logs) is nobody else's business."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)


def make_private_file(path: Path) -> None:
    """Make `path` if need be (empty), readable and writable by its owner only."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
