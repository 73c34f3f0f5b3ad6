"""The other commands against a running `bifrost serve`: executions, workflows, keys, secrets and config,
profiles; `--output json` of every listing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bifrost.api import ScheduleIn
from bifrost.client import Client
from tests.api.conftest import eventually
from tests.cli.conftest import ADMIN_KEY, Server, bifrost


def run_json(server: Server, *arguments: str) -> dict[str, object]:
    done = bifrost("run", *arguments, "-o", "json", env=server.environment())
    assert done.returncode == 0, done.stderr
    loaded: dict[str, object] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    "listing",
    [
        ["executions", "list"],
        ["workflows", "list"],
        ["keys", "list"],
        ["schedules", "list"],
        ["secrets", "list"],
        ["config", "list"],
    ],
)
def test_every_listing_has_json_output(server: Server, listing: list[str]) -> None:
    done = bifrost(*listing, "--output", "json", env=server.environment())
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)


def test_executions_list_show_and_logs(server: Server) -> None:
    execution = run_json(server, "ticks", "-p", "count=3")
    execution_id = str(execution["execution_id"])
    listed = json.loads(
        bifrost("executions", "list", "--workflow", "ticks", "-o", "json", env=server.environment()).stdout
    )
    assert execution_id in [row["execution_id"] for row in listed]
    table = bifrost("executions", "list", "--workflow", "ticks", env=server.environment()).stdout
    assert execution_id in table  # whole, never cut to fit a width
    shown = bifrost("executions", "show", execution_id, env=server.environment())
    assert "ticks" in shown.stdout and "Success" in shown.stdout
    logs = bifrost("executions", "logs", execution_id, env=server.environment()).stdout
    assert [line.rsplit(" ", 1)[1] for line in logs.splitlines() if ": tick " in line] == ["0", "1", "2"]
    lines = json.loads(bifrost("executions", "logs", execution_id, "-o", "json", env=server.environment()).stdout)
    assert [line["line"] for line in lines] == list(range(1, len(lines) + 1))
    followed = bifrost("executions", "logs", execution_id, "--follow", env=server.environment())
    assert followed.returncode == 0 and "tick 2" in followed.stdout


def test_executions_show_says_what_a_waiting_run_waits_for(server: Server) -> None:
    with server.api() as api:
        first, second = (
            api.post("/api/workflows/one_at_a_time/execute", json={"parameters": {}}).json()["execution_id"]
            for _ in range(2)
        )
        try:
            eventually(lambda: api.get(f"/api/executions/{first}").json()["status"] == "Running", what="the first")
            shown = bifrost("executions", "show", second, env=server.environment())
            assert shown.returncode == 0, shown.stderr
            assert "waiting for" in shown.stdout
            assert "workflow 'one_at_a_time''s max_concurrency of 1: 1 run now" in " ".join(shown.stdout.split())
        finally:
            for execution_id in (first, second):
                api.post(f"/api/executions/{execution_id}/cancel")


def test_executions_list_refuses_an_unknown_status(server: Server) -> None:
    done = bifrost("executions", "list", "--status", "Done", env=server.environment())
    assert done.returncode == 2
    assert "--status 'Done': use one of Pending, Running" in done.stderr


def test_rerun_runs_the_workflow_again_with_the_same_parameters(server: Server) -> None:
    first = run_json(server, "add", "-p", "a=5")
    again = bifrost("executions", "rerun", str(first["execution_id"]), "-o", "json", env=server.environment())
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["execution_id"] != first["execution_id"]
    assert (second["parameters"], second["result"]) == ({"a": 5, "b": 1}, {"sum": 6})


def test_cancelling_a_finished_execution_exits_2_saying_so(server: Server) -> None:
    execution = run_json(server, "add", "-p", "a=1")
    done = bifrost("executions", "cancel", str(execution["execution_id"]), env=server.environment())
    assert done.returncode == 2
    assert f"execution '{execution['execution_id']}' already finished (Success)" in done.stderr


def test_workflows_show_gives_the_parameters_and_a_run_line(server: Server) -> None:
    done = bifrost("workflows", "show", "add", env=server.environment())
    assert done.returncode == 0, done.stderr
    assert "Add two numbers." in done.stdout
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.startswith(("a ", "b "))}
    assert rows == {"a": ["integer", "yes"], "b": ["integer", "1"]}
    assert "bifrost run add -p 'a=<integer>'" in done.stdout


def test_a_key_made_with_the_cli_works_until_it_is_revoked(server: Server) -> None:
    made = bifrost("keys", "create", "ci-pipeline", "--expires", "1d", env=server.environment())
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("bfk_") and "shown only this once" in made.stderr
    assert bifrost("workflows", "list", env=server.environment(key=key)).returncode == 0
    [listed] = [
        row
        for row in json.loads(bifrost("keys", "list", "-o", "json", env=server.environment()).stdout)
        if row["name"] == "ci-pipeline"
    ]
    assert "key" not in listed and listed["expires_at"] is not None
    assert bifrost("keys", "revoke", listed["id"], env=server.environment()).returncode == 0
    refused = bifrost("workflows", "list", env=server.environment(key=key))
    assert refused.returncode == 7


def test_schedules_are_listed_shown_disabled_and_enabled(server: Server) -> None:
    with Client(server.url, ADMIN_KEY) as client:
        made = client.create_schedule(
            ScheduleIn(workflow_name="add", parameters={"a": 2}, cron="30 2 * * *", timezone="Europe/Berlin"),
            global_scope=True,
        )
    table = bifrost("schedules", "list", env=server.environment())
    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if made.id in line]
    assert "add" in row and "30 2 * * *" in row and "Europe/Berlin" in row and "enabled" in row
    shown = bifrost("schedules", "show", made.id, env=server.environment())
    assert shown.returncode == 0, shown.stderr
    assert '"a": 2' in shown.stdout and "no runs yet" in shown.stderr

    disabled = bifrost("schedules", "disable", made.id, "-o", "json", env=server.environment())
    assert disabled.returncode == 0, disabled.stderr
    assert json.loads(disabled.stdout)["enabled"] is False and json.loads(disabled.stdout)["next_fire_at"] is None
    with Client(server.url, ADMIN_KEY) as client:
        assert client.get_schedule(made.id).enabled is False
    enabled = json.loads(bifrost("schedules", "enable", made.id, "-o", "json", env=server.environment()).stdout)
    assert enabled["enabled"] is True and enabled["next_fire_at"] is not None

    missing = bifrost("schedules", "show", "no-such-schedule", env=server.environment())
    assert missing.returncode == 2 and "no schedule 'no-such-schedule'" in missing.stderr


def test_secrets_and_config_take_their_values_from_stdin_or_a_file(server: Server, tmp_path: Path) -> None:
    done = bifrost("secrets", "set", "api_token", stdin="s3cr3t-value\n", env=server.environment())
    assert done.returncode == 0, done.stderr
    listed = bifrost("secrets", "list", "-o", "json", env=server.environment())
    assert "s3cr3t-value" not in listed.stdout
    assert "api_token" in [row["name"] for row in json.loads(listed.stdout)]
    greeting = tmp_path / "greeting.json"
    greeting.write_text('{"text": "hello"}\n')
    stored = bifrost("config", "set", "greeting", "--json", "--from-file", str(greeting), env=server.environment())
    assert stored.returncode == 0, stored.stderr
    assert json.loads(bifrost("config", "get", "greeting", env=server.environment()).stdout) == {"text": "hello"}
    # What a workflow then reads: the secret (one trailing newline dropped) and the config entry.
    execution = run_json(server, "secret_length", "-p", "name=api_token")
    assert execution["result"] == {"length": len("s3cr3t-value"), "greeting": {"text": "hello"}}


def test_an_empty_value_or_bad_json_is_refused_and_nothing_is_stored(server: Server) -> None:
    empty = bifrost("secrets", "set", "blank", stdin="", env=server.environment())
    assert empty.returncode == 2 and "the secret value is empty" in empty.stderr
    bad = bifrost("config", "set", "broken", "--json", stdin="{nope", env=server.environment())
    assert bad.returncode == 2 and "--json: the value is not JSON" in bad.stderr
    names = [
        row["name"] for row in json.loads(bifrost("config", "list", "-o", "json", env=server.environment()).stdout)
    ]
    assert "broken" not in names


def test_a_profile_names_the_server_and_holds_the_key(server: Server, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    env = server.environment(key=None) | {"BIFROST_PROFILES_FILE": str(profiles)}
    del env["BIFROST_URL"]
    saved = bifrost("profile", "set", "here", "--url", server.url, stdin=ADMIN_KEY + "\n", env=env)
    assert saved.returncode == 0, saved.stderr
    assert stat.S_IMODE(profiles.stat().st_mode) == 0o600
    assert ADMIN_KEY not in bifrost("profile", "list", env=env).stdout
    assert bifrost("workflows", "list", env=env).returncode == 0  # the default profile
    assert bifrost("workflows", "list", "--profile", "here", env=env).returncode == 0
    missing = bifrost("workflows", "list", "--profile", "elsewhere", env=env)
    assert missing.returncode == 2
    assert f"no profile 'elsewhere' in {profiles} (profiles there: here)" in missing.stderr
