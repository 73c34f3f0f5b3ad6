"""A control plane on an S3 workspace (a real SeaweedFS) with the local backend: files uploaded through the API
or written straight into the bucket become workflows, and every run executes exactly its pinned revision."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bifrost._internal.workspace import content_etag
from bifrost_devtools.s3 import SeaweedS3
from tests.api.conftest import Bifrost, eventually, finished, start
from tests.workspace.conftest import (
    PREFIX,
    new_bucket,
    registry_revision,
    running_bifrost,
    s3_overrides,
    wait_running,
    workflow_names,
)

GREETINGS = textwrap.dedent(
    """
    from bifrost import workflow


    @workflow(execution_mode="sync")
    def greet(name: str) -> str:
        return f"hello {name}"
    """
)

CURRENT_ANSWER = textwrap.dedent(
    """
    from bifrost import workflow

    from helpers import ANSWER


    @workflow
    def current_answer() -> str:
        return ANSWER
    """
)


def versioned(answer: str) -> str:
    """`which` tells which code it runs; given a marker file, it waits for it (holding its only slot) first."""
    return textwrap.dedent(
        f"""
        import pathlib
        import time

        from bifrost import workflow

        from helpers import ANSWER


        @workflow
        def which(marker: str = "") -> dict[str, str]:
            while marker and not pathlib.Path(marker).exists():
                time.sleep(0.02)
            return {{"module": "{answer}", "helper": ANSWER}}
        """
    )


@pytest.fixture(scope="module")
def bucket(seaweedfs: SeaweedS3) -> str:
    return new_bucket(seaweedfs, versioned=True)


@pytest.fixture(scope="module")
def bifrost(seaweedfs: SeaweedS3, bucket: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bifrost]:
    # One run of a workflow at a time: a run holding the slot keeps the next one queued, pinned to its revision.
    overrides = s3_overrides(seaweedfs, bucket) | {"max_concurrency_per_workflow": 1}
    with running_bifrost(tmp_path_factory.mktemp("s3-workspace"), **overrides) as running:
        yield running


@pytest.fixture
def api(bifrost: Bifrost) -> Iterator[httpx.Client]:
    with bifrost.client() as client:
        yield client


def put_object(server: SeaweedS3, bucket: str, path: str, source: str) -> None:
    """As `aws s3 cp` would: straight into the bucket, past the control plane."""
    server.client().put_object(Bucket=bucket, Key=f"{PREFIX}/{path}", Body=source.encode())


def test_a_folder_uploaded_through_the_api_runs_from_s3(api: httpx.Client) -> None:
    upload = api.post(
        "/api/workspace/sync", json={"files": {"people/greetings.py": GREETINGS, "people/names.csv": "ada\n"}}
    )
    assert upload.status_code == 200, upload.text
    revision = upload.json()["revision"]

    assert "greet" in workflow_names(api)  # the upload answers once the registry has it
    listing = api.get("/api/workspace/files").json()
    assert listing["revision"] == revision
    by_path = {f["path"]: f for f in listing["files"]}
    assert by_path["people/greetings.py"] == {
        "path": "people/greetings.py",
        "etag": content_etag(GREETINGS.encode()),
        "size": len(GREETINGS.encode()),
    }
    read = api.get("/api/workspace/files/people/names.csv")
    assert (read.status_code, read.content) == (200, b"ada\n")
    assert read.headers["etag"] == '"' + content_etag(b"ada\n") + '"'

    run = api.post("/api/workflows/greet/execute", json={"parameters": {"name": "Ada"}})
    assert run.status_code == 200, run.text
    execution = run.json()
    assert (execution["status"], execution["result"]) == ("Success", "hello Ada")
    assert execution["workspace_revision"] == revision
    assert api.get(f"/api/executions/{execution['execution_id']}").json()["workspace_revision"] == revision


def test_files_written_straight_into_the_bucket_are_discovered_live(
    api: httpx.Client, seaweedfs: SeaweedS3, bucket: str
) -> None:
    put_object(seaweedfs, bucket, "direct/added.py", GREETINGS.replace("greet", "greet_direct"))
    eventually(lambda: "greet_direct" in workflow_names(api), within=10, what="the bucket write to be discovered")

    put_object(seaweedfs, bucket, "direct/broken.py", "from bifrost import workflow\n\n@workflow\ndef oops(:\n")

    def broken_reported() -> list[dict[str, Any]] | None:
        errors: list[dict[str, Any]] = api.get("/api/workspace/errors").json()
        return [e for e in errors if e["file"] == "direct/broken.py"] or None

    problems = eventually(broken_reported, within=10, what="the broken file to be reported")
    assert problems[0]["line"] == 4
    assert {"greet", "greet_direct"} <= workflow_names(api)  # the broken file hides nothing else

    seaweedfs.client().delete_object(Bucket=bucket, Key=f"{PREFIX}/direct/added.py")
    eventually(lambda: "greet_direct" not in workflow_names(api), within=10, what="the removed workflow to go")
    seaweedfs.client().delete_object(Bucket=bucket, Key=f"{PREFIX}/direct/broken.py")
    eventually(lambda: not broken_reported(), within=10, what="the removed file's error to go")


def test_a_run_queued_before_a_change_runs_exactly_its_old_revision(
    bifrost: Bifrost, api: httpx.Client, seaweedfs: SeaweedS3, bucket: str
) -> None:
    files = {"helpers.py": 'ANSWER = "v1"\n', "pinned/which.py": versioned("v1"), "pinned/current.py": CURRENT_ANSWER}
    for path, source in files.items():
        assert api.put(f"/api/workspace/files/{path}", content=source).status_code == 200
    old_revision = registry_revision(api)
    marker = bifrost.settings.local_sandbox_paths[0] / "open"
    holding = start(api, "which", marker=str(marker))
    wait_running(api, holding)
    pinned = start(api, "which")  # queued behind `holding`, pinned to the revision of now

    # The module and the helper it imports both change: one through the API, one straight in the bucket.
    assert api.put("/api/workspace/files/pinned/which.py", content=versioned("v2")).status_code == 200
    put_object(seaweedfs, bucket, "helpers.py", 'ANSWER = "v2"\n')
    new_revision = api.get("/api/workspace/files").json()["revision"]
    eventually(lambda: registry_revision(api) == new_revision, within=10, what="the registry to read the change")
    # A run of the new revision moves the runners' shared cache on before the queued run syncs.
    assert finished(api, start(api, "current_answer"))["result"] == "v2"
    assert api.get(f"/api/executions/{pinned}").json()["status"] == "Pending"
    marker.touch()

    assert finished(api, holding)["result"] == {"module": "v1", "helper": "v1"}
    old_run = finished(api, pinned)
    assert old_run["status"] == "Success", old_run["error"]
    assert (old_run["result"], old_run["workspace_revision"]) == ({"module": "v1", "helper": "v1"}, old_revision)
    new_run = finished(api, start(api, "which"))
    assert (new_run["result"], new_run["workspace_revision"]) == ({"module": "v2", "helper": "v2"}, new_revision)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../outside.py", "'..' would leave the workspace"),
        ("/etc/cron.d/job.py", "absolute paths are not allowed"),
        ("flows/.hidden.py", "hidden files and folders are not workspace files"),
        ("flows/run.sh", ".sh files are not accepted"),
        ("flows/__pycache__/x.cpython-311.pyc", "__pycache__ holds compiled files"),
        ("flows\\windows.py", "it contains a backslash"),
    ],
)
def test_path_attacks_are_refused_naming_the_path_and_nothing_is_written(
    api: httpx.Client, path: str, reason: str
) -> None:
    before = api.get("/api/workspace/files").json()
    upload = api.post(
        "/api/workspace/sync", json={"files": {"ok/fine.py": "X = 1\n", path: "import os\n"}, "replace_all": False}
    )
    assert upload.status_code == 422, upload.text
    assert repr(path) in upload.json()["detail"] and reason in upload.json()["detail"]
    assert api.get("/api/workspace/files").json() == before


@pytest.mark.parametrize(
    "encoded",
    ["..%2Foutside.py", "%2E%2E/outside.py", "flows/%2Ehidden.py", "flows%5Cwindows.py", "flows/run.sh"],
)
def test_single_file_writes_refuse_the_same_paths(api: httpx.Client, encoded: str) -> None:
    before = api.get("/api/workspace/files").json()
    response = api.put(f"/api/workspace/files/{encoded}", content=b"import os\n")
    assert response.status_code == 422, response.text
    assert "refused" in response.json()["detail"]
    assert api.get("/api/workspace/files").json() == before


def test_missing_files_are_404(api: httpx.Client) -> None:
    assert api.get("/api/workspace/files/nowhere/none.py").status_code == 404
    missing = api.delete("/api/workspace/files/nowhere/none.py")
    assert missing.status_code == 404
    assert "'nowhere/none.py' does not exist" in missing.json()["detail"]


def test_deleting_a_file_through_the_api_removes_its_workflow(api: httpx.Client) -> None:
    source = GREETINGS.replace("greet", "short_lived")
    assert api.put("/api/workspace/files/tmp/short_lived.py", content=source).status_code == 200
    assert "short_lived" in workflow_names(api)
    assert api.delete("/api/workspace/files/tmp/short_lived.py").status_code == 204
    assert "short_lived" not in workflow_names(api)
    assert api.get("/api/workflows/short_lived").status_code == 404


def test_only_platform_admins_write_the_workspace(api: httpx.Client, bifrost: Bifrost) -> None:
    created = api.post("/api/keys/service", json={"name": "deployer", "role": "org_admin"})
    assert created.status_code == 201, created.text
    with bifrost.client(created.json()["key"]) as member:
        assert member.get("/api/workspace/files").status_code == 200
        writes = [
            member.put("/api/workspace/files/x.py", content=b"X = 1\n"),
            member.delete("/api/workspace/files/helpers.py"),
            member.post("/api/workspace/sync", json={"files": {}}),
        ]
        assert [w.status_code for w in writes] == [403, 403, 403]
    assert "x.py" not in {f["path"] for f in api.get("/api/workspace/files").json()["files"]}
