"""Keys the embedded mode generates once and keeps in its data folder."""

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
