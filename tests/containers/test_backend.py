"""Executions through the podman backend, for real: the control plane starts one container per execution from the
runner image built here, and the runner in it reaches the control plane and NATS on the host."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from bifrost._internal.protocol import RUNNER_EXIT_CODES, ExecutionStatus
from bifrost_devtools import images
from bifrost_devtools.services import NatsServer, running_nats
from control_plane.backends.base import LaunchSpec, RunnerWorkspace
from control_plane.backends.container_spec import (
    EXECUTION_ID,
    INSTANCE,
    container_name,
    inspect_commands,
    instance_of,
    run_arguments,
    runner_env,
)
from control_plane.settings import Settings
from tests.api.conftest import ADMIN_KEY, Bifrost, eventually, finished, make_settings, serving, start

WORKFLOWS = """
import asyncio
import logging
import os
import time
from pathlib import Path

from bifrost import workflow

logger = logging.getLogger(__name__)


@workflow
async def create_user(email: str, department: str = "IT"):
    logger.info("creating %s in %s", email, department)
    return {"user": email, "department": department, "uid": os.getuid()}


@workflow
def inside():
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    writable = {}
    for folder in ("/", "/opt", "/tmp"):
        try:
            Path(folder, "probe").write_text("x")
            writable[folder] = True
        except OSError:
            writable[folder] = False
    return {
        "user": f"{os.getuid()}:{os.getgid()}",
        "home": os.environ["HOME"],
        "capabilities": [status["CapEff"].strip(), status["CapBnd"].strip()],
        "no_new_privileges": status["NoNewPrivs"].strip(),
        "writable": writable,
    }


@workflow
async def wait_for(marker: str):
    # The workspace folder is the runner's, read-only: the test releases the workflow by writing the marker there.
    logger.info("waiting for %s", marker)
    while not Path(os.environ["BIFROST_WORKSPACE_URL"], marker).exists():
        await asyncio.sleep(0.1)
    return {"released": marker}


@workflow(resources={"memory_limit_mb": 128})
def hog():
    print("allocating", flush=True)
    chunks = []
    while True:
        chunks.append(b"x" * (16 * 1024 * 1024))


@workflow(timeout_seconds=2)
async def blocks_its_loop():
    print("blocking", flush=True)
    time.sleep(600)


@workflow
async def stubborn():
    print("not listening", flush=True)
    while True:
        try:
            await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            time.sleep(600)  # the runner's loop, blocked for good: it cannot report the cancel


@workflow
def explode():
    raise RuntimeError("the ticket system refused the change")


@workflow
def tabulated(rows: list[list[str]]):
    from tabulate import tabulate

    return tabulate(rows)
"""


@pytest.fixture
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend, `podman` unless the test is parametrized with `docker` too: the docker CLI, talking to podman's
    Docker-compatible service."""
    name: str = getattr(request, "param", "podman")
    if name == "docker":
        monkeypatch.setenv("DOCKER_HOST", request.getfixturevalue("docker_host"))
    return name


both_engines = pytest.mark.parametrize("engine", ["podman", "docker"], indirect=True)


def container_settings(tmp: Path, nats: NatsServer, runner_image: str, engine: str) -> Settings:
    settings = make_settings(
        tmp,
        f"sqlite:///{tmp / 'bifrost.db'}",
        nats.url,
        nats_account_seed=SecretStr(nats.account_seed),
        backend=engine,
        runner_image=runner_image,
        runner_image_pull_policy="Never",
        cancel_grace_seconds=1.0,
        runner_exit_grace_seconds=1.0,
        container_deadline_grace_seconds=1.0,
    )
    (tmp / "workspace" / "flows.py").write_text(WORKFLOWS)
    return settings


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path, identities=True) as server:
        yield server


@contextmanager
def bifrost_on(tmp: Path, nats: NatsServer, runner_image: str, engine: str) -> Iterator[Bifrost]:
    settings = container_settings(tmp, nats, runner_image, engine)
    with images.removing_containers(settings), serving(settings) as url:
        yield Bifrost(url=url, settings=settings, workspace=tmp / "workspace")


@pytest.fixture
def bifrost(tmp_path: Path, nats: NatsServer, runner_image: str, engine: str) -> Iterator[Bifrost]:
    with bifrost_on(tmp_path, nats, runner_image, engine) as running:
        yield running


@pytest.fixture
def api(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with bifrost.client() as client:
        yield client


def container(execution_id: str) -> dict[str, Any] | None:
    """The execution's container as podman describes it; None when there is none."""
    try:
        [described] = json.loads(images.podman("container", "inspect", container_name(execution_id)))
    except images.PodmanError as exc:
        if "no such container" in str(exc):
            return None
        raise
    return dict(described)


def log_messages(api: httpx.Client, execution_id: str) -> list[str]:
    return [record["message"] for record in api.get(f"/api/executions/{execution_id}/logs").json()["logs"]]


def running_with_log(api: httpx.Client, execution_id: str, text: str) -> None:
    """Until the execution runs and its log holds `text`: it arrived live, while the workflow still runs."""

    def probe() -> bool:
        status = api.get(f"/api/executions/{execution_id}").json()["status"]
        assert status in ("Pending", "Running"), status
        return status == "Running" and any(text in message for message in log_messages(api, execution_id))

    eventually(probe, within=120, what=f"{text!r} in the log of running execution {execution_id}")


def gone(execution_id: str) -> bool:
    return container(execution_id) is None


@both_engines
def test_an_execution_runs_in_a_container_of_its_own(api: httpx.Client, engine: str) -> None:
    execution_id = start(api, "create_user", email="ada@example.com", department="Ops")
    execution = finished(api, execution_id)

    assert execution["status"] == "Success", execution
    assert execution["result"] == {"user": "ada@example.com", "department": "Ops", "uid": 10001}
    assert any("creating ada@example.com in Ops" in message for message in log_messages(api, execution_id))
    # The launch is recorded once `podman run` returns, which may be after the runner finished.
    runner = eventually(lambda: api.get(f"/api/executions/{execution_id}").json()["runner"], what="the launch record")
    assert runner["backend"] == engine
    assert runner["runner_ref"] == container_name(execution_id)
    assert runner["commands"] == inspect_commands(engine, execution_id)
    eventually(lambda: gone(execution_id), what="the finished execution's container to be removed")


@both_engines
def test_a_runner_container_is_locked_down_and_labelled(bifrost: Bifrost, api: httpx.Client) -> None:
    execution_id = start(api, "wait_for", marker="locked-down")
    running_with_log(api, execution_id, "waiting for locked-down")
    described = container(execution_id)
    assert described is not None
    config, host = described["Config"], described["HostConfig"]

    assert host["Memory"] == bifrost.settings.container_memory_limit_mb * 1024 * 1024
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == bifrost.settings.container_max_processes
    workspace = str(bifrost.workspace.resolve())
    assert [(m["Source"], m["Destination"], m["RW"]) for m in described["Mounts"]] == [(workspace, workspace, False)]
    labels = config["Labels"]
    assert labels[EXECUTION_ID] == execution_id
    assert labels["bifrost.io/workflow"] == "wait_for"
    assert labels["bifrost.io/org"] == api.get(f"/api/executions/{execution_id}").json()["org_id"]
    assert labels["app.kubernetes.io/managed-by"] == "bifrost"
    assert "locked-down" not in json.dumps(config["Env"])  # parameters never reach the container's definition

    (bifrost.workspace / "locked-down").touch()
    execution = finished(api, execution_id)
    assert (execution["status"], execution["result"]) == ("Success", {"released": "locked-down"})


def test_the_runner_runs_unprivileged_on_a_read_only_root(api: httpx.Client) -> None:
    execution = finished(api, start(api, "inside"))

    assert execution["status"] == "Success", execution
    assert execution["result"] == {
        "user": "10001:10001",
        "home": "/tmp",
        "capabilities": ["0000000000000000", "0000000000000000"],
        "no_new_privileges": "1",
        "writable": {"/": False, "/opt": False, "/tmp": True},
    }


def test_a_failed_run_ends_its_container_as_failed(api: httpx.Client) -> None:
    since = time.time() - 1
    execution_id = start(api, "explode")
    execution = finished(api, execution_id)

    assert execution["status"] == "Failed", execution
    assert execution["error"]["type"] == "RuntimeError"  # the workflow's own error, not the container's exit
    assert execution["error"]["runner_log_tail"] is None
    eventually(lambda: gone(execution_id), what="the failed run's container to end and be removed")
    events = images.podman(
        "events", "--stream=false", f"--since={since:.0f}", f"--filter=container={container_name(execution_id)}",
        "--filter=event=died", "--format={{json .}}",
    )  # fmt: skip
    exit_codes = [json.loads(line).get("ContainerExitCode", 0) for line in events.splitlines()]
    assert exit_codes == [RUNNER_EXIT_CODES[ExecutionStatus.FAILED]]


@both_engines
def test_a_runner_over_its_memory_limit_fails_naming_the_limit(api: httpx.Client) -> None:
    execution_id = start(api, "hog")
    execution = finished(api, execution_id)

    assert execution["status"] == "Failed", execution
    message = execution["error"]["message"]
    assert "memory limit of 128 MiB" in message and "exit code 137" in message, message
    assert "allocating" in execution["error"]["runner_log_tail"]
    eventually(lambda: gone(execution_id), what="the killed runner's container to be removed")
    # podman's container monitor marks an out-of-memory kill with a file in the folder the CLI ran in: not ours.
    assert not Path("oom").exists()


@both_engines
def test_a_runner_past_its_deadline_is_stopped_and_times_out(api: httpx.Client) -> None:
    execution_id = start(api, "blocks_its_loop")
    execution = finished(api, execution_id)

    assert execution["status"] == "Timeout", execution
    assert "ran past its workflow's timeout of 2s" in execution["error"]["message"]
    assert "blocking" in execution["error"]["runner_log_tail"]
    eventually(lambda: gone(execution_id), what="the timed-out runner's container to be removed")


@both_engines
def test_cancel_stops_a_runner_that_does_not_listen(api: httpx.Client) -> None:
    execution_id = start(api, "stubborn")
    running_with_log(api, execution_id, "not listening")

    assert api.post(f"/api/executions/{execution_id}/cancel").status_code == 202
    execution = finished(api, execution_id)

    assert execution["status"] == "Cancelled", execution
    assert "did not stop within 1s and was killed" in execution["error"]["message"]
    eventually(lambda: gone(execution_id), within=60, what="the cancelled runner's container to be removed")


def test_cancel_reaches_the_runner_in_its_container(bifrost: Bifrost, api: httpx.Client) -> None:
    execution_id = start(api, "wait_for", marker="never")
    running_with_log(api, execution_id, "waiting for never")

    api.post(f"/api/executions/{execution_id}/cancel")
    execution = finished(api, execution_id)

    assert execution["status"] == "Cancelled", execution
    assert "killed" not in execution["error"]["message"]
    eventually(lambda: gone(execution_id), what="the cancelled runner's container to be removed")


@both_engines
def test_a_missing_runner_image_fails_the_execution_naming_it(tmp_path: Path, nats: NatsServer, engine: str) -> None:
    missing = "localhost/bifrost-runner:no-such-tag"
    with bifrost_on(tmp_path, nats, missing, engine) as bifrost, bifrost.client() as api:
        execution = finished(api, start(api, "create_user", email="ada@example.com"))
    assert execution["status"] == "Failed", execution
    assert f"The runner image '{missing}' is not available to {engine}" in execution["error"]["message"]
    assert "BIFROST_RUNNER_IMAGE_PULL_POLICY=Never" in execution["error"]["message"]


def test_a_runner_container_that_cannot_start_fails_the_execution(
    tmp_path: Path, nats: NatsServer, base_image: str, engine: str
) -> None:
    """The Python base image has no `python` command, which runners are started with."""
    with bifrost_on(tmp_path, nats, base_image, engine) as bifrost, bifrost.client() as api:
        execution_id = start(api, "create_user", email="ada@example.com")
        execution = finished(api, execution_id)
    assert execution["status"] == "Failed", execution
    assert f"The runner container {container_name(execution_id)} could not start" in execution["error"]["message"]
    assert gone(execution_id)


def test_a_team_runner_image_runs_workflows_that_need_its_libraries(
    tmp_path: Path, nats: NatsServer, team_runner_image: str, engine: str
) -> None:
    with bifrost_on(tmp_path, nats, team_runner_image, engine) as bifrost, bifrost.client() as api:
        execution = finished(api, start(api, "tabulated", rows=[["a", "1"], ["b", "2"]]))
    assert execution["status"] == "Success", execution
    assert execution["result"].split("\n")[1:3] == ["a  1", "b  2"]


@pytest.fixture
def restartable(tmp_path: Path, nats: NatsServer, runner_image: str, engine: str) -> Iterator[Settings]:
    """The settings of a control plane the test starts, stops and starts again."""
    settings = container_settings(tmp_path, nats, runner_image, engine)
    with images.removing_containers(settings):
        yield settings


@both_engines
def test_a_restarted_control_plane_follows_its_containers_again(restartable: Settings, runner_image: str) -> None:
    workspace = restartable.workspace_dir
    assert workspace is not None
    with serving(restartable) as url, httpx.Client(base_url=url, headers=auth(), timeout=60) as api:
        followed = start(api, "wait_for", marker="followed")
        ended_meanwhile = start(api, "wait_for", marker="ended-meanwhile")
        removed_meanwhile = start(api, "wait_for", marker="removed-meanwhile")
        done = start(api, "create_user", email="ada@example.com")
        for execution_id in (followed, ended_meanwhile, removed_meanwhile):
            running_with_log(api, execution_id, "waiting for")
        assert finished(api, done)["status"] == "Success"
        eventually(lambda: gone(done), what="the finished execution's container to be removed")

    # While no control plane runs: one runner finishes, one container is removed, and the container of an
    # execution that is over is left behind (as by a control plane that crashed before removing it).
    (workspace / "ended-meanwhile").touch()
    eventually(lambda: not running(ended_meanwhile), what="the released runner to end")
    images.podman("rm", "--force", container_name(removed_meanwhile))
    labels = [f"--label={INSTANCE}={instance_of(restartable)}", f"--label={EXECUTION_ID}={done}"]
    left_behind = images.podman("create", *labels, runner_image).strip()

    with serving(restartable) as url, httpx.Client(base_url=url, headers=auth(), timeout=60) as api:
        ended = finished(api, ended_meanwhile)
        assert (ended["status"], ended["result"]) == ("Success", {"released": "ended-meanwhile"})
        removed = finished(api, removed_meanwhile)
        assert removed["status"] == "Failed"
        assert f"container {container_name(removed_meanwhile)} no longer exists" in removed["error"]["message"]
        eventually(lambda: gone(ended_meanwhile), what="the container that ended meanwhile to be removed")
        eventually(lambda: not exists(left_behind), what="the container of an execution that is over to be removed")

        assert api.get(f"/api/executions/{followed}").json()["status"] == "Running"
        (workspace / "followed").touch()
        execution = finished(api, followed)
        assert (execution["status"], execution["result"]) == ("Success", {"released": "followed"})
        eventually(lambda: gone(followed), what="the container followed again to be removed once it ended")


def running(execution_id: str) -> bool:
    described = container(execution_id)
    return described is not None and bool(described["State"]["Running"])


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def exists(container_id: str) -> bool:
    try:
        images.podman("container", "exists", container_id)
    except images.PodmanError:
        return False
    return True


def test_kubernetes_pull_secrets_are_refused_for_containers(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="BIFROST_RUNNER_IMAGE_PULL_SECRETS names Kubernetes Secrets"):
        Settings(data_dir=tmp_path, backend="podman", runner_image_pull_secrets=["registry-creds"])


def test_a_workspace_folder_that_cannot_be_mounted_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "team:ops"
    folder.mkdir()
    with pytest.raises(ValidationError, match=f"cannot mount the workspace folder {folder} into runner containers"):
        Settings(data_dir=tmp_path, backend="docker", workspace_url=str(folder))


def test_credentials_reach_the_container_by_name_only(tmp_path: Path) -> None:
    spec = LaunchSpec(
        execution_id="e-1", workflow_name="create_user", org_id=None, token="execution-token-value",
        timeout_seconds=60, api_url="http://127.0.0.1:8000", nats_url="nats://127.0.0.1:4222",
        workspace=RunnerWorkspace(url="s3://bucket/ops", s3_secret_access_key="s3-secret-value"),
    )  # fmt: skip
    arguments = run_arguments(spec, Settings(data_dir=tmp_path, backend="podman"), "instance", 0.0)

    assert "--env=BIFROST_EXECUTION_TOKEN" in arguments
    assert "--env=BIFROST_S3_SECRET_ACCESS_KEY" in arguments
    assert not [argument for argument in arguments if "token-value" in argument or "secret-value" in argument]
    assert runner_env(spec)["BIFROST_EXECUTION_TOKEN"] == "execution-token-value"
    # The CLI runs with the control plane's HOME, where its own configuration (docker contexts, logins) is.
    assert "HOME" not in runner_env(spec)
    assert "--env=HOME=/tmp" in arguments
