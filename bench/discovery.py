"""Static discovery speed on a generated workspace of 10,000 workflow files: the SDK's scan of a folder (one
core), and the control plane's registry start on SQLite, first with an empty discovery cache (files shared out
between the control plane and a worker process for each other core; target under 3 s wall) and then as a
restart with nothing changed (a new store and registry on the same folder and database; target under 0.5 s
wall). The machine's load average is printed with the figures: wall times on a shared machine say little
without it.

Run: `python -m bench.discovery`.
"""

from __future__ import annotations

import ast
import os
import random
import resource
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path

from bifrost._internal.discovery import discover_workspace, workspace_files
from control_plane.db.migrate import upgrade_database
from control_plane.db.session import make_engine
from control_plane.registry import Registry
from control_plane.workspace_store import LocalFolderStore

FILES = 10_000
TARGET_SECONDS = 3.0
RESTART_TARGET_SECONDS = 0.5

_PARAMETER_SHAPES = [
    "email: str",
    "name: str",
    "count: int = 10",
    "ratio: float = 0.5",
    "active: bool = True",
    "since: date | None = None",
    "site: Literal['north', 'south', 'east'] = 'north'",
    "tags: list[str] = []",
    "ident: UUID",
    "note: Annotated[str, Field(description='Free text.', max_length=500)] = ''",
    "priority: Priority = Priority.NORMAL",
    "when: datetime",
]

_HEADER = '''\
"""Generated workflows, file {index}."""

import logging
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from bifrost import ExecutionContext, workflow, data_provider

logger = logging.getLogger(__name__)


class Priority(str, Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


def helper(value: str) -> str:
    return value.strip().lower()
'''

_MODEL = '''

class Ticket{index}(BaseModel):
    """A ticket to file."""

    title: str
    body: str = ""
    priority: Priority = Priority.NORMAL
'''

_WORKFLOW = '''

@workflow(category="Generated", tags=["bench"], timeout_seconds={timeout})
async def {name}(context: ExecutionContext, {parameters}):
    """Workflow {name}.

    Args:
        {first}: The first parameter.
    """
    logger.info("running %s", context.execution_id)
    return {{"ok": True}}
'''


def generate(root: Path, files: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    for index in range(files):
        folder = root / f"team_{index % 50:02d}"
        folder.mkdir(exist_ok=True)
        parts = [_HEADER.format(index=index)]
        with_model = index % 10 == 0
        if with_model:
            parts.append(_MODEL.format(index=index))
        for number in range(rng.randint(1, 3)):
            shapes = rng.sample(_PARAMETER_SHAPES, rng.randint(1, 5))
            shapes.sort(key=lambda shape: "=" in shape)
            if with_model and number == 0:
                shapes.insert(0, f"ticket: Ticket{index}")
            parts.append(
                _WORKFLOW.format(
                    name=f"flow_{index}_{number}",
                    timeout=rng.choice([60, 600, 1800]),
                    parameters=", ".join(shapes),
                    first=shapes[0].split(":")[0],
                )
            )
        if index % 25 == 0:
            parts.append(
                textwrap.dedent(f"""

                @data_provider(name="provider_{index}")
                async def provider_{index}(context):
                    return [{{"label": "A", "value": "a"}}]
                """)
            )
        (folder / f"flows_{index:05d}.py").write_text("".join(parts))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bifrost-bench-") as tmp:
        root = Path(tmp)
        generate(root, FILES)
        size_mb = sum(path.stat().st_size for path in root.rglob("*.py")) / 1e6

        start, cpu_start = time.perf_counter(), time.process_time()
        discovery = discover_workspace(root)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start

        cpu_start = time.process_time()
        for path in workspace_files(root):
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        parse_cpu = time.process_time() - cpu_start

        tracemalloc.start()
        discover_workspace(root)
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        registry_cold, registry_restart = registry_start_seconds(root, Path(tmp) / "bifrost.db")

    if discovery.errors or discovery.conflicts or discovery.files_scanned != FILES:
        raise RuntimeError(f"generated workspace did not discover cleanly: {discovery.errors[:3]}")
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    verdict = "ok" if cpu < TARGET_SECONDS else "SLOWER THAN TARGET"
    beyond_parse = cpu - parse_cpu
    print(
        f"discovery: {FILES} files ({size_mb:.1f} MB), {len(discovery.workflows)} workflows, "
        f"{len(discovery.data_providers)} data providers"
    )
    print(
        f"discovery: total {elapsed:.2f} s wall, {cpu:.2f} s CPU ({verdict}: target {TARGET_SECONDS:.0f} s), "
        f"{FILES / elapsed:,.0f} files/s wall, {FILES / cpu:,.0f} files/s CPU"
    )
    print(f"discovery: with ast.parse    {cpu:.2f} s CPU, {cpu * 1000 / FILES:.3f} ms per file")
    print(
        f"discovery: ast.parse alone   {parse_cpu:.2f} s CPU, {parse_cpu * 1000 / FILES:.3f} ms per file "
        "(reading and parsing every file, nothing else)"
    )
    print(
        f"discovery: without ast.parse {beyond_parse:.2f} s CPU, {beyond_parse * 1000 / FILES:.3f} ms per file "
        "(names, annotations, schemas, info models)"
    )
    print(f"discovery: peak traced memory {traced_peak / 1e6:.1f} MB, process max RSS {max_rss_mb:.0f} MB")
    for label, (wall, cpu, workers_cpu), target in (
        ("registry start, empty cache    ", registry_cold, TARGET_SECONDS),
        ("registry restart, none changed ", registry_restart, RESTART_TARGET_SECONDS),
    ):
        verdict = "ok" if wall < target else "SLOWER THAN TARGET"
        print(
            f"discovery: {label} {wall:.2f} s wall ({verdict}: target {target} s wall), {cpu:.2f} s CPU in the "
            f"control plane, {workers_cpu:.2f} s CPU in worker processes"
        )
    print("discovery: load average (1, 5, 15 min) {:.2f} {:.2f} {:.2f} on {} cores".format(*os.getloadavg(), _cores()))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def registry_start_seconds(root: Path, database: Path) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(wall, CPU of this process, CPU of its worker processes) of a registry's first scan with an empty
    discovery cache, then of a new store's and registry's first scan on the same folder and database (a
    control-plane restart)."""
    engine = make_engine(f"sqlite:///{database}")
    upgrade_database(engine)
    figures = []
    for _ in range(2):
        registry = Registry(LocalFolderStore(root), engine)
        start, cpu_start, children_start = time.perf_counter(), time.process_time(), _children_cpu()
        registry.rescan()
        figures.append((time.perf_counter() - start, time.process_time() - cpu_start, _children_cpu() - children_start))
        if len(registry.snapshot.workflows) < FILES:
            raise RuntimeError(f"the registry found only {len(registry.snapshot.workflows)} workflows")
    engine.dispose()
    return figures[0], figures[1]


if __name__ == "__main__":
    main()
    sys.exit(0)
