"""Files made ahead and named when needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bifrost._internal.prepared_files import PreparedFile


def test_a_named_file_holds_what_was_written_before_it_had_a_name(tmp_path: Path) -> None:
    prepared = PreparedFile.make(tmp_path)
    assert prepared is not None
    os.write(prepared.fd, b"ready")
    assert list(tmp_path.iterdir()) == []

    fd = prepared.name(tmp_path / "record.json")
    os.write(fd, b" and named")
    os.close(fd)

    assert (tmp_path / "record.json").read_bytes() == b"ready and named"


def test_a_taken_name_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "record.json").write_text("first")
    prepared = PreparedFile.make(tmp_path)
    assert prepared is not None

    with pytest.raises(FileExistsError):
        prepared.name(tmp_path / "record.json")
    prepared.discard()

    assert (tmp_path / "record.json").read_text() == "first"
    assert [path.name for path in tmp_path.iterdir()] == ["record.json"]


def test_a_folder_that_cannot_hold_unnamed_files_gives_none(tmp_path: Path) -> None:
    assert PreparedFile.make(tmp_path / "missing") is None
