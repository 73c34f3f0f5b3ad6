"""The variables a run keeps of its workflow are bounded in what capturing them costs, not only in their size:
a run holding huge objects still finishes, with a short view of each."""

from __future__ import annotations

import json
from pathlib import Path

from bifrost_runner.variables import MAX_VALUE_CHARS
from tests.api.conftest import eventually, finished, running_bifrost, start

WORKFLOWS = """
from bifrost import workflow


@workflow(resources={"memory_limit_mb": 6144})
def hoard():
    numbers = list(range(10_000_000))
    text = "x" * 300_000_000
    blob = b"y" * 100_000_000
    members = set(range(1_000_000))
    table = {n: [n, str(n)] for n in range(1_000_000)}
    nested = [[list(range(1_000))] * 1_000] * 1_000
    return {"held": len(numbers) + len(text) + len(blob) + len(members) + len(table) + len(nested)}
"""


def test_huge_variables_are_captured_in_short(tmp_path: Path) -> None:
    with (
        running_bifrost(tmp_path, f"sqlite:///{tmp_path / 'bifrost.db'}", {"flows.py": WORKFLOWS}) as bifrost,
        bifrost.client() as api,
    ):
        eventually(lambda: "hoard" in {w["name"] for w in api.get("/api/workflows").json()}, what="registration")
        execution = finished(api, start(api, "hoard"))
        variables = api.get(f"/api/executions/{execution['execution_id']}/variables").json()["variables"]
    assert execution["status"] == "Success", execution["error"]
    assert execution["result"] == {"held": 412_001_000}
    assert set(variables) == {"numbers", "text", "blob", "members", "table", "nested"}
    assert variables["numbers"] == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]"
    assert variables["text"].startswith("'xxxx")
    assert variables["text"].endswith("[299,995,904 more characters]")
    assert variables["blob"].startswith("b'yyyy")
    assert variables["table"].startswith("{0: [0, '0'], 1: [1, '1'],")
    assert variables["nested"].startswith("[[[0, 1, 2,")
    for name, shown in variables.items():
        assert len(json.dumps(shown)) <= MAX_VALUE_CHARS + 100, name
