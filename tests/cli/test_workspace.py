"""`bifrost workspace`: a local folder pushed as one revision, then run; status and pull."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.api.conftest import eventually
from tests.cli.conftest import Server, bifrost

PUSHED = """
from bifrost import workflow


@workflow(execution_mode="sync")
def pushed_greeting(name: str):
    return f"hello {name}"
"""


def test_push_then_run_the_pushed_workflow(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    shutil.copytree(server.workspace, folder)
    (folder / "greetings.py").write_text(PUSHED)
    (folder / "notes.rst").write_text("not a workspace file\n")

    status = bifrost("workspace", "status", str(folder), "-o", "json", env=server.environment())
    assert status.returncode == 0, status.stderr
    before = json.loads(status.stdout)
    assert (before["added"], before["modified"], before["deleted"]) == (["greetings.py"], [], [])
    assert before["skipped"][0]["path"] == "notes.rst"

    pushed = bifrost("workspace", "push", str(folder), env=server.environment())
    assert pushed.returncode == 0, pushed.stderr
    assert "added" in pushed.stdout and "greetings.py" in pushed.stdout
    ran = bifrost("run", "pushed_greeting", "-p", "name=Ada", env=server.environment())
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == "hello Ada"

    after = json.loads(bifrost("workspace", "status", str(folder), "-o", "json", env=server.environment()).stdout)
    assert (after["added"], after["modified"], after["deleted"]) == ([], [], [])
    assert after["folder_revision"] == after["server_revision"]

    pulled = tmp_path / "pulled"
    done = bifrost("workspace", "pull", str(pulled), env=server.environment())
    assert done.returncode == 0, done.stderr
    assert (pulled / "greetings.py").read_text() == PUSHED
    assert (pulled / "flows.py").read_text() == (server.workspace / "flows.py").read_text()


def test_a_push_shows_the_problems_of_the_pushed_files(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    shutil.copytree(server.workspace, folder)
    (folder / "broken.py").write_text("from bifrost import workflow\n\n@workflow\ndef broken(:\n")
    pushed = bifrost("workspace", "push", str(folder), env=server.environment())
    assert pushed.returncode == 0, pushed.stderr
    assert "problem: broken.py:4: syntax error" in pushed.stderr
    (folder / "broken.py").unlink()
    assert bifrost("workspace", "push", str(folder), env=server.environment()).returncode == 0
    eventually(
        lambda: "broken.py" not in bifrost("workspace", "status", str(folder), env=server.environment()).stdout,
        what="the broken file to be gone",
    )


def test_a_file_that_is_not_text_is_refused_before_anything_is_sent(server: Server, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    shutil.copytree(server.workspace, folder)
    (folder / "data.csv").write_bytes(b"\xff\xfe binary")
    done = bifrost("workspace", "push", str(folder), env=server.environment())
    assert done.returncode == 2
    assert f"{folder / 'data.csv'} is not UTF-8 text" in done.stderr
    with server.api() as api:
        assert "data.csv" not in [f["path"] for f in api.get("/api/workspace/files").json()["files"]]
