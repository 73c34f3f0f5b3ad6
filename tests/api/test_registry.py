from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from bifrost._internal.discovery import FileDiscovery
from control_plane import discovery_worker
from control_plane.db.migrate import upgrade_database
from control_plane.db.models import Workflow
from control_plane.db.session import make_engine
from control_plane.registry import Registry
from control_plane.workspace_store import LocalFolderStore, WorkspaceStoreError

GREET = '''
from bifrost import workflow

@workflow(category="demo", timeout_seconds=60)
async def greet(name: str, times: int = 1):
    """Say hello."""
    return {"greeting": "hello " * times + name}
'''

REPORT = """
import bifrost

@bifrost.workflow(execution_mode="sync", endpoint_enabled=True)
def report(day: str):
    return {"day": day}
"""


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    upgrade_database(engine)
    return engine


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    folder.mkdir()
    return folder


def stored_rows(db: Engine) -> dict[str, Workflow]:
    with Session(db) as session:
        return {row.name: row for row in session.exec(select(Workflow)).all()}


def test_scan_registers_workflows_with_their_schema_and_stores_them(db: Engine, workspace: Path) -> None:
    (workspace / "greet.py").write_text(GREET)
    (workspace / "reports").mkdir()
    (workspace / "reports" / "daily.py").write_text(REPORT)
    registry = Registry(LocalFolderStore(workspace), db)
    assert registry.rescan()

    greet = registry.get("greet")
    assert greet is not None
    assert (greet.file, greet.function_name, greet.category, greet.timeout_seconds) == ("greet.py", "greet", "demo", 60)
    assert greet.parameters_schema["required"] == ["name"]
    assert set(greet.parameters_schema["properties"]) == {"name", "times"}
    report = registry.get("report")
    assert report is not None and report.file == "reports/daily.py" and report.endpoint_enabled

    rows = stored_rows(db)
    assert set(rows) == {"greet", "report"}
    assert rows["greet"].timeout_seconds == 60
    assert rows["report"].execution_mode == "sync"


def test_rescan_follows_added_changed_and_deleted_files(db: Engine, workspace: Path) -> None:
    (workspace / "greet.py").write_text(GREET)
    registry = Registry(LocalFolderStore(workspace), db)
    registry.rescan()
    first_revision = registry.snapshot.revision
    assert not registry.rescan(), "nothing changed, so nothing is re-registered"

    (workspace / "report.py").write_text(REPORT)
    assert registry.rescan()
    assert set(registry.snapshot.workflows) == {"greet", "report"}
    assert registry.snapshot.revision != first_revision

    (workspace / "greet.py").write_text(GREET.replace("async def greet", "async def welcome"))
    assert registry.rescan()
    assert set(registry.snapshot.workflows) == {"welcome", "report"}

    (workspace / "report.py").unlink()
    assert registry.rescan()
    assert set(registry.snapshot.workflows) == {"welcome"}
    assert set(stored_rows(db)) == {"welcome"}


def test_broken_file_is_reported_and_the_rest_still_registers(db: Engine, workspace: Path) -> None:
    (workspace / "greet.py").write_text(GREET)
    (workspace / "broken.py").write_text("from bifrost import workflow\n\n@workflow\ndef oops(:\n    pass\n")
    registry = Registry(LocalFolderStore(workspace), db)
    registry.rescan()
    assert set(registry.snapshot.workflows) == {"greet"}
    [problem] = registry.snapshot.problems
    assert problem.file == "broken.py"
    assert problem.line == 4
    assert "syntax" in problem.message


def test_a_name_defined_twice_registers_neither(db: Engine, workspace: Path) -> None:
    (workspace / "a.py").write_text(GREET)
    (workspace / "b.py").write_text(GREET)
    (workspace / "report.py").write_text(REPORT)
    registry = Registry(LocalFolderStore(workspace), db)
    registry.rescan()
    assert set(registry.snapshot.workflows) == {"report"}
    assert {p.file for p in registry.snapshot.problems} == {"a.py", "b.py"}
    assert all(
        "'greet'" in p.message and "a.py" in p.message and "b.py" in p.message for p in registry.snapshot.problems
    )


def test_hidden_folders_are_not_part_of_the_workspace(db: Engine, workspace: Path) -> None:
    (workspace / ".trash").mkdir()
    (workspace / ".trash" / "greet.py").write_text(GREET)
    registry = Registry(LocalFolderStore(workspace), db)
    registry.rescan()
    assert registry.snapshot.workflows == {}


async def test_running_registry_picks_up_changes_by_itself(db: Engine, workspace: Path) -> None:
    registry = Registry(LocalFolderStore(workspace), db, poll_seconds=0.05)
    await registry.start()
    try:
        assert registry.get("greet") is None
        (workspace / "greet.py").write_text(GREET)
        for _ in range(400):
            if registry.get("greet") is not None:
                break
            await asyncio.sleep(0.05)
        assert registry.get("greet") is not None
    finally:
        await registry.stop()


async def test_missing_workspace_folder_fails_start_with_its_path(db: Engine, tmp_path: Path) -> None:
    registry = Registry(LocalFolderStore(tmp_path / "nowhere"), db)
    with pytest.raises(WorkspaceStoreError, match="nowhere"):
        await registry.start()


def test_each_revision_is_recorded_for_runners_to_sync(db: Engine, workspace: Path) -> None:
    store = LocalFolderStore(workspace)
    (workspace / "greet.py").write_text(GREET)
    registry = Registry(store, db)
    registry.rescan()
    first = registry.snapshot.revision
    assert first is not None
    assert set(store.load_revision(first).files) == {"greet.py"}

    (workspace / "lookup.json").write_text('{"a": 1}')
    assert registry.rescan(), "a data file is part of the revision too"
    second = registry.snapshot.revision
    assert second is not None and second != first
    assert set(store.load_revision(second).files) == {"greet.py", "lookup.json"}
    assert set(registry.snapshot.workflows) == {"greet"}


def test_a_file_that_crashes_discovery_is_reported_not_fatal(
    db: Engine, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_discover = discovery_worker.discover_source

    def discover_or_crash(path: str, source: str) -> FileDiscovery:
        if path == "weird.py":
            raise RecursionError("maximum recursion depth exceeded")
        return real_discover(path, source)

    monkeypatch.setattr(discovery_worker, "discover_source", discover_or_crash)
    (workspace / "greet.py").write_text(GREET)
    (workspace / "weird.py").write_text(REPORT)
    registry = Registry(LocalFolderStore(workspace), db)
    registry.rescan()
    assert set(registry.snapshot.workflows) == {"greet"}
    [problem] = registry.snapshot.problems
    assert problem.file == "weird.py"
    assert "RecursionError" in problem.message
