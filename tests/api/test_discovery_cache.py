"""The discovery cache: what each workspace file holds is kept in the database, so a restarted control plane
re-parses only the files that changed while it was down, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, select

from bifrost._internal.discovery import FileDiscovery
from control_plane import discovery_worker
from control_plane import registry as registry_module
from control_plane.db.migrate import upgrade_database
from control_plane.db.models import DiscoveredFile, Workflow, as_utc, utcnow
from control_plane.db.session import make_engine
from control_plane.registry import Registry
from control_plane.workspace_store import LocalFolderStore
from control_plane.workspace_store.local import STAMPS_FILE
from tests.api.conftest import fresh_database


def flow(name: str, timeout: int = 60) -> str:
    return f'''
from bifrost import workflow

@workflow(timeout_seconds={timeout})
async def {name}(who: str, times: int = 1):
    """Say hello to someone."""
    return "hello " * times + who
'''


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(fresh_database(request.param, tmp_path, request))
    upgrade_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "workspace"
    folder.mkdir()
    return folder


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths discovery parses (in this process), in order."""
    seen: list[str] = []
    real_discover = discovery_worker.discover_source

    def counting(path: str, source: str) -> FileDiscovery:
        seen.append(path)
        return real_discover(path, source)

    monkeypatch.setattr(discovery_worker, "discover_source", counting)
    return seen


def restarted(workspace: Path, db: Engine) -> Registry:
    """A registry as a freshly started control plane has it after its first scan."""
    registry = Registry(LocalFolderStore(workspace), db)
    assert registry.rescan()
    return registry


def stored(db: Engine) -> dict[str, int]:
    with Session(db) as session:
        return {row.name: row.timeout_seconds for row in session.exec(select(Workflow)).all()}


def test_a_restart_with_nothing_changed_parses_nothing(db: Engine, workspace: Path, parsed: list[str]) -> None:
    (workspace / "greet.py").write_text(flow("greet"))
    (workspace / "reports").mkdir()
    (workspace / "reports" / "daily.py").write_text(flow("daily", timeout=120))
    first = restarted(workspace, db)
    assert sorted(parsed) == ["greet.py", "reports/daily.py"]

    parsed.clear()
    second = restarted(workspace, db)
    assert parsed == []
    assert second.snapshot.workflows == first.snapshot.workflows
    assert second.snapshot.revision == first.snapshot.revision
    assert second.snapshot.workflows["daily"].form_fields == first.snapshot.workflows["daily"].form_fields
    assert stored(db) == {"greet": 60, "daily": 120}


def test_a_restart_parses_only_the_changed_and_added_files(db: Engine, workspace: Path, parsed: list[str]) -> None:
    (workspace / "same.py").write_text(flow("same"))
    (workspace / "edited.py").write_text(flow("edited"))
    (workspace / "removed.py").write_text(flow("removed"))
    restarted(workspace, db)

    (workspace / "edited.py").write_text(flow("edited", timeout=300))
    (workspace / "removed.py").unlink()
    (workspace / "added.py").write_text(flow("added", timeout=90))
    parsed.clear()
    registry = restarted(workspace, db)

    assert sorted(parsed) == ["added.py", "edited.py"]
    assert set(registry.snapshot.workflows) == {"same", "edited", "added"}
    assert registry.snapshot.workflows["edited"].timeout_seconds == 300
    assert stored(db) == {"same": 60, "edited": 300, "added": 90}
    with Session(db) as session:
        assert set(session.exec(select(DiscoveredFile.path)).all()) == {"same.py", "edited.py", "added.py"}


def settled(path: Path, text: str) -> None:
    """Write `text` and date the file an hour back, as a file nobody touched for long."""
    path.write_text(text)
    an_hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(an_hour_ago, an_hour_ago))


def rewrite_in_place(path: Path, text: str) -> None:
    """Replace the content without changing the file's inode, size or modification time (as a tool that restores
    timestamps does); only its change time moves, which no tool can set."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    with path.open("r+b") as file:
        file.write(text.encode())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_a_restart_parses_a_file_changed_with_its_old_size_and_modification_time(
    db: Engine, workspace: Path, parsed: list[str]
) -> None:
    settled(workspace / "same.py", flow("same"))
    settled(workspace / "edited.py", flow("edited", timeout=100))
    restarted(workspace, db)

    rewrite_in_place(workspace / "edited.py", flow("edited", timeout=300))
    parsed.clear()
    registry = restarted(workspace, db)

    assert parsed == ["edited.py"]
    assert registry.snapshot.workflows["edited"].timeout_seconds == 300
    assert stored(db) == {"same": 60, "edited": 300}


def test_a_file_rewritten_right_after_a_scan_is_seen_changed(db: Engine, workspace: Path) -> None:
    """Rewritten within the same clock tick as its hash, a file keeps its stat: it is hashed again until its
    last change is a little older than its hash."""
    target = workspace / "flow.py"
    for attempt in range(20):
        target.write_text(flow("flow", timeout=100 + attempt))
        registry = Registry(LocalFolderStore(workspace), db)
        registry.rescan()
        assert registry.snapshot.workflows["flow"].timeout_seconds == 100 + attempt
        rewrite_in_place(target, flow("flow", timeout=200 + attempt))
        registry.rescan()
        assert registry.snapshot.workflows["flow"].timeout_seconds == 200 + attempt
        assert restarted(workspace, db).snapshot.workflows["flow"].timeout_seconds == 200 + attempt


def test_an_unreadable_record_of_stamps_only_costs_hashing_again(db: Engine, workspace: Path) -> None:
    settled(workspace / "greet.py", flow("greet"))
    first = restarted(workspace, db)
    (workspace / STAMPS_FILE).write_text("{not json")
    settled(workspace / "greet.py", flow("greet", timeout=90))

    registry = restarted(workspace, db)
    assert registry.snapshot.workflows["greet"].timeout_seconds == 90
    assert registry.snapshot.revision != first.snapshot.revision
    assert restarted(workspace, db).snapshot.revision == registry.snapshot.revision


def test_a_conflict_resolved_while_down_registers_the_name(db: Engine, workspace: Path, parsed: list[str]) -> None:
    (workspace / "a.py").write_text(flow("greet"))
    (workspace / "b.py").write_text(flow("greet", timeout=120))
    assert restarted(workspace, db).snapshot.workflows == {}
    assert stored(db) == {}

    (workspace / "b.py").unlink()
    parsed.clear()
    registry = restarted(workspace, db)
    assert parsed == []
    assert set(registry.snapshot.workflows) == {"greet"}
    assert stored(db) == {"greet": 60}


def test_entries_of_other_discovery_code_are_parsed_again(db: Engine, workspace: Path, parsed: list[str]) -> None:
    (workspace / "greet.py").write_text(flow("greet"))
    restarted(workspace, db)
    with Session(db) as session:
        session.execute(update(DiscoveredFile).values(parser="an older release"))
        session.add(Workflow(name="stale", file="gone.py", function_name="stale"))
        session.commit()

    parsed.clear()
    registry = restarted(workspace, db)
    assert parsed == ["greet.py"]
    assert set(registry.snapshot.workflows) == {"greet"}
    assert stored(db) == {"greet": 60}
    with Session(db) as session:
        assert set(session.exec(select(DiscoveredFile.parser)).all()) == {registry_module.parser_version()}


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_files_parsed_by_worker_processes_give_what_one_process_gives(
    db: Engine, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 4 * discovery_worker.CHUNK  # more than the worker's first chunk: the control plane may take some
    for index in range(count):
        (workspace / f"flow_{index}.py").write_text(flow(f"flow_{index}", timeout=60 + index))
    (workspace / "broken.py").write_text("from bifrost import workflow\n\n@workflow\ndef oops(:\n    pass\n")
    serial_db = make_engine(f"sqlite:///{tmp_path / 'serial.db'}")
    upgrade_database(serial_db)
    serial = restarted(workspace, serial_db)

    monkeypatch.setattr(registry_module, "PARALLEL_FROM_FILES", 2)
    parallel = restarted(workspace, db)

    assert parallel.snapshot.workflows == serial.snapshot.workflows
    assert parallel.snapshot.problems == serial.snapshot.problems
    assert [problem.file for problem in parallel.snapshot.problems] == ["broken.py"]
    assert stored(db) == {f"flow_{index}": 60 + index for index in range(count)}


@pytest.mark.parametrize("workers", [False, True], ids=["one process", "worker processes"])
def test_the_workflows_table_holds_each_function_as_the_registry_describes_it(
    db: Engine, workspace: Path, monkeypatch: pytest.MonkeyPatch, workers: bool
) -> None:
    (workspace / "greet.py").write_text(
        "from bifrost import data_provider, workflow\n\n"
        '@workflow(tags=["hello"], endpoint_enabled=True, schedule="0 9 * * 1", retries={"count": 2})\n'
        'def greet(who: str, when: date | None = None, mood: Literal["glad", "calm"] = "calm"):\n'
        '    """Say hello."""\n\n'
        "@data_provider(cache_ttl_seconds=60)\n"
        "async def moods(context):\n"
        '    return [{"label": "Glad", "value": "glad"}]\n'
        "\n\nfrom datetime import date\nfrom typing import Literal\n"
    )
    if workers:
        monkeypatch.setattr(registry_module, "PARALLEL_FROM_FILES", 1)
    before = utcnow()
    registry = restarted(workspace, db)
    after = utcnow()

    with Session(db) as session:
        rows = {row.name: row for row in session.exec(select(Workflow)).all()}
    greet, moods = registry.snapshot.workflows["greet"], registry.snapshot.data_providers["moods"]
    assert rows["greet"].model_dump(exclude={"updated_at"}) == {
        "name": "greet",
        "kind": "workflow",
        "description": "Say hello.",
        "category": None,
        "file": "greet.py",
        "function_name": "greet",
        "execution_mode": "sync",
        "endpoint_enabled": True,
        "schedule": "0 9 * * 1",
        "timeout_seconds": greet.timeout_seconds,
        "meta": {
            **greet.model_dump(
                mode="json", include={"tags", "retries", "max_concurrency", "resources", "line", "is_async", "warnings"}
            ),
            "form_fields": [field.model_dump(mode="json") for field in greet.form_fields],
        },
        "parameters_schema": greet.parameters_schema,
    }
    assert rows["greet"].meta["retries"]["count"] == 2
    assert [field["type"] for field in rows["greet"].meta["form_fields"]] == ["text", "date", "select"]
    assert rows["moods"].model_dump(exclude={"updated_at"}) == {
        "name": "moods",
        "kind": "data_provider",
        "description": None,
        "category": None,
        "file": "greet.py",
        "function_name": "moods",
        "execution_mode": "sync",
        "endpoint_enabled": False,
        "schedule": None,
        "timeout_seconds": moods.timeout_seconds,
        "meta": {"cache_ttl_seconds": 60, "line": 7, "is_async": True, "warnings": []},
        "parameters_schema": moods.parameters_schema,
    }
    assert before <= as_utc(rows["greet"].updated_at) <= after
    with Session(db) as session:  # stored as every other timestamp is, so that queries compare them
        found = session.exec(select(Workflow.name).where(Workflow.updated_at == rows["greet"].updated_at)).all()
    assert set(found) == {"greet", "moods"}


def child_processes() -> set[int]:
    return {int(pid) for children in Path("/proc/self/task").glob("*/children") for pid in children.read_text().split()}


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_first_start_of_a_small_workspace_leaves_no_worker_process_behind(
    db: Engine, workspace: Path, parsed: list[str]
) -> None:
    (workspace / "greet.py").write_text(flow("greet"))
    before = child_processes()

    registry = restarted(workspace, db)  # an empty database: workers start before the listing shows one file

    assert set(registry.snapshot.workflows) == {"greet"}
    assert parsed == ["greet.py"]  # parsed here, not by a worker
    assert child_processes() <= before
