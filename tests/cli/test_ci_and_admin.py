"""The CI example of docs/cli.md, as a pipeline runs it; `bifrost admin create-key` on the server's host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import Server, bifrost

CI_SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "ci-run-workflow.sh"


def run_ci_job(server: Server, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = server.environment()
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # where the pipeline installed `bifrost`
    return subprocess.run(
        ["sh", str(CI_SCRIPT), *arguments], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_the_ci_example_passes_when_the_workflow_succeeds(server: Server) -> None:
    done = run_ci_job(server, "ticks", "-p", "count=3")
    assert done.returncode == 0, done.stderr
    assert ": tick 2" in done.stdout  # the log is in the job's output


def test_the_ci_example_fails_the_job_when_the_workflow_fails(server: Server) -> None:
    failed = run_ci_job(server, "explode")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Bifrost workflow explode: the workflow failed (exit 1)" in failed.stderr
    refused = run_ci_job(server, "add", "-p", "a=not-a-number")
    assert refused.returncode == 2, refused.stdout + refused.stderr


def test_admin_create_key_makes_a_platform_admin_key_and_audits_it(server: Server) -> None:
    made = bifrost("admin", "create-key", "--name", "lost-and-found", env=server.server_environment())
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("bfk_") and "admin@bifrost.local" in made.stderr
    assert bifrost("workflows", "list", env=server.environment(key=key)).returncode == 0
    with server.api(key) as api:
        assert api.get("/api/session").json()["is_platform_admin"] is True
        events = api.get("/api/audit", params={"action": "api_key.created", "all_orgs": True}).json()["events"]
    [event] = [event for event in events if event["target"] == key[:12]]
    assert event["actor_email"] == "bifrost admin create-key"
    assert "@" in event["detail"]["origin"]


def test_admin_create_key_refuses_a_folder_without_a_database(server: Server, tmp_path: Path) -> None:
    env = server.server_environment() | {"BIFROST_DATA_DIR": str(tmp_path)}
    done = bifrost("admin", "create-key", env=env)
    assert done.returncode == 2
    assert done.stderr.startswith(f"bifrost: no Bifrost database at {tmp_path}")
    assert list(tmp_path.iterdir()) == []


def test_admin_create_key_names_the_admins_when_the_email_matches_none(server: Server) -> None:
    done = bifrost("admin", "create-key", "--email", "nobody@example.com", env=server.server_environment())
    assert done.returncode == 2
    assert "no active platform admin 'nobody@example.com' (the platform admins: admin@bifrost.local)" in done.stderr
    listed = json.loads(bifrost("keys", "list", "-o", "json", env=server.environment()).stdout)
    assert all(row["name"] != "recovery" for row in listed)
