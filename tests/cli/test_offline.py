"""What the command does without a server: `discover` for pre-commit and CI, `local run` for authors."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.cli.conftest import bifrost

BROKEN_FILE = "from bifrost import workflow\n\n\n@workflow\ndef half(:\n    pass\n"
BAD_DECORATOR = """from bifrost import workflow


@workflow(timeout_seconds="soon")
def impatient():
    pass
"""
DUPLICATE = """from bifrost import workflow


@workflow(name="report")
def first():
    pass


@workflow(name="report")
def second():
    pass
"""
GOOD = '''import logging

from bifrost import context, workflow, workflows

log = logging.getLogger(__name__)


@workflow
async def greet(name: str, times: int = 1):
    """Greet someone."""
    token = await context.get_secret("token")
    for i in range(times):
        log.info("hello %s #%d (token %s)", name, i, token)
    print("printed, too")
    doubled = await workflows.run("double", n=times)
    return {"name": name, "doubled": doubled, "token": token, "prefix": await context.get_config("prefix")}


@workflow
def double(n: int):
    return n * 2


@workflow
def explode():
    raise ValueError("no good")


@workflow(timeout_seconds=1)
def sleepy():
    import time

    time.sleep(30)
'''


def offline() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("BIFROST_")}


def test_discover_lists_the_workflows_of_a_sound_folder_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(GOOD)
    done = bifrost("discover", str(tmp_path), "-o", "json", env=offline())
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert sorted(w["name"] for w in found["workflows"]) == ["double", "explode", "greet", "sleepy"]
    assert found["problems"] == []


def test_discover_prints_each_problem_at_its_file_and_line_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "teams").mkdir()
    (tmp_path / "teams" / "broken.py").write_text(BROKEN_FILE)
    (tmp_path / "bad.py").write_text(BAD_DECORATOR)
    (tmp_path / "dup.py").write_text(DUPLICATE)
    done = bifrost("discover", str(tmp_path), env=offline())
    assert done.returncode == 1
    problems = [line for line in done.stderr.splitlines() if line.startswith(str(tmp_path))]
    assert [line.split(": ", 1)[0] for line in problems] == [
        f"{tmp_path}/bad.py:4",
        f"{tmp_path}/dup.py:4",
        f"{tmp_path}/dup.py:9",
        f"{tmp_path}/teams/broken.py:5",
    ]
    assert "syntax error" in problems[3]
    assert "timeout_seconds" in problems[0]
    assert "the name 'report' is defined more than once" in problems[1]
    assert "greet" in done.stdout  # the sound workflows are listed all the same
    assert "4 problems" in done.stderr


def test_discover_of_a_missing_folder_exits_2(tmp_path: Path) -> None:
    done = bifrost("discover", str(tmp_path / "nowhere"), env=offline())
    assert done.returncode == 2
    assert "does not exist" in done.stderr


def test_local_run_runs_a_workflow_here_with_local_secrets_and_config(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(GOOD)
    values = tmp_path / "values.toml"
    values.write_text('[secrets]\ntoken = "t0ps3cret"\n\n[config]\nprefix = "Dr."\n')
    done = bifrost(
        "local", "run", "flows.py:greet", "-p", "name=Ada", "-p", "times=2", "--values", str(values),
        env=offline(), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "t0ps3cret" not in done.stdout + done.stderr  # masked, as a runner masks it
    log = [line for line in done.stdout.splitlines() if "hello Ada" in line]
    assert len(log) == 2 and log[0].endswith("hello Ada #0 (token ********)")
    assert "printed, too" in done.stdout
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert result == {"name": "Ada", "doubled": 4, "token": "********", "prefix": "Dr."}


def test_local_run_exits_as_bifrost_run_does(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(GOOD)
    failed = bifrost("local", "run", "explode", "--workspace", str(tmp_path), "-o", "json", env=offline())
    assert failed.returncode == 1
    outcome = json.loads(failed.stdout)
    assert (outcome["status"], outcome["error"]["type"]) == ("Failed", "ValueError")
    assert 'raise ValueError("no good")' in outcome["error"]["traceback"]
    timed_out = bifrost("local", "run", "sleepy", "--workspace", str(tmp_path), env=offline())
    assert timed_out.returncode == 4
    bad = bifrost("local", "run", "greet", "-p", "times=many", "--workspace", str(tmp_path), env=offline())
    assert bad.returncode == 2
    assert "name: Field required" in bad.stderr and "times: Input should be a valid integer" in bad.stderr
    unknown = bifrost("local", "run", f"{tmp_path / 'flows.py'}:nothing", "--workspace", str(tmp_path), env=offline())
    assert unknown.returncode == 2
    assert "has no @workflow function 'nothing' (its workflows: greet, double, explode, sleepy)" in unknown.stderr
