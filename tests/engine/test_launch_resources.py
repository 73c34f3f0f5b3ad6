"""A workflow's `@workflow(resources=...)` travels from its file, through the registry's table, into the launch
of each of its executions; a workflow without them leaves the backend's defaults."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy

from control_plane.backends.base import RunnerResources
from control_plane.registry import Registry
from control_plane.settings import Settings
from control_plane.workspace_store import LocalFolderStore
from tests.engine.conftest import EngineFactory, RecordingBackend

WORKFLOWS = """
    from bifrost import workflow

    @workflow(resources={"cpu_request": "500m", "cpu_limit": "2", "memory_limit_mb": 4096})
    def reindex():
        return {}

    @workflow
    def ping():
        return {}
"""


async def test_launches_carry_the_resources_the_workflow_asked_for(
    settings: Settings,
    db: sqlalchemy.Engine,
    start_engine: EngineFactory,
    execution_row: Callable[..., dict[str, Any]],
    backend: RecordingBackend,
) -> None:
    workspace = Path(settings.workspace_url)
    (workspace / "maintenance.py").write_text(textwrap.dedent(WORKFLOWS))
    registry = Registry(LocalFolderStore(workspace), db)
    assert registry.rescan()
    assert registry.snapshot.problems == ()

    engine = await start_engine()
    reindex_row, ping_row = execution_row("reindex"), execution_row("ping")
    reindex, ping = reindex_row["id"], ping_row["id"]
    await engine.submit(reindex, sync=True, new_row=reindex_row)
    await engine.submit(ping, sync=True, new_row=ping_row)

    resources = {spec.execution_id: spec.resources for spec in backend.launches}
    assert resources == {
        reindex: RunnerResources(cpu_request="500m", cpu_limit="2", memory_limit_mb=4096),
        ping: None,
    }


async def test_changed_resources_apply_to_the_next_launch(
    settings: Settings,
    db: sqlalchemy.Engine,
    start_engine: EngineFactory,
    execution_row: Callable[..., dict[str, Any]],
    backend: RecordingBackend,
) -> None:
    workspace = Path(settings.workspace_url)
    source = workspace / "maintenance.py"
    source.write_text(textwrap.dedent(WORKFLOWS))
    registry = Registry(LocalFolderStore(workspace), db)
    registry.rescan()
    engine = await start_engine()
    before_row = execution_row("reindex")
    before = before_row["id"]
    await engine.submit(before, sync=True, new_row=before_row)

    source.write_text(textwrap.dedent(WORKFLOWS).replace('"memory_limit_mb": 4096', '"memory_limit_mb": 16384'))
    assert registry.rescan()
    after_row = execution_row("reindex")
    after = after_row["id"]
    await engine.submit(after, sync=True, new_row=after_row)

    limits = {spec.execution_id: spec.resources and spec.resources.memory_limit_mb for spec in backend.launches}
    assert limits == {before: 4096, after: 16384}
