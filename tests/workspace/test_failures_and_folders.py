"""The embedded mode's plain folder workspace, and what happens when the workspace storage fails: refused
credentials and an S3 outage during a runner's sync end in a clear failure, never in a run of unknown code."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import SecretStr

from bifrost._internal.workspace import WorkspaceStoreError
from bifrost_devtools.s3 import SeaweedS3, running_seaweedfs
from bifrost_runner.checkout import CACHE_FOLDER, REVISIONS_FOLDER
from bifrost_runner.sync import INDEX_FILE
from control_plane.app import create_app
from tests.api.conftest import eventually, finished, make_settings, start
from tests.workspace.conftest import (
    new_bucket,
    registry_revision,
    runner_cache,
    running_bifrost,
    s3_overrides,
    shared_folder,
    wait_running,
    workflow_names,
)

COUNTER = textwrap.dedent(
    """
    import pathlib
    import time

    from bifrost import workflow

    from settings import STEP


    @workflow
    def count(start: int, marker: str = "") -> int:
        while marker and not pathlib.Path(marker).exists():
            time.sleep(0.02)
        return start + STEP


    @workflow
    def step() -> int:
        return STEP
    """
)


def test_a_folder_workspace_runs_edits_live_from_a_shared_cache(tmp_path: Path) -> None:
    with running_bifrost(tmp_path) as bifrost, bifrost.client() as api:
        bifrost.write_workflow("settings.py", "STEP = 1\n")
        bifrost.write_workflow("ops/counter.py", COUNTER)
        eventually(lambda: "count" in workflow_names(api), what="the new file to be discovered")
        first = finished(api, start(api, "count", start=41))
        assert (first["status"], first["result"]) == ("Success", 42)

        bifrost.write_workflow("settings.py", "STEP = 2\n")
        revision = api.get("/api/workspace/files").json()["revision"]
        assert revision != first["workspace_revision"]
        eventually(lambda: registry_revision(api) == revision, what="the registry to read the edit")
        second = finished(api, start(api, "count", start=41))
        assert (second["status"], second["result"], second["workspace_revision"]) == ("Success", 43, revision)

        cache = runner_cache(bifrost)  # one, kept for the next runners
        assert (cache / CACHE_FOLDER / INDEX_FILE).is_file()
        assert (cache / CACHE_FOLDER / "settings.py").read_text() == "STEP = 2\n"
        checkouts = {entry.name for entry in (cache / REVISIONS_FOLDER).iterdir() if entry.is_dir()}
        assert checkouts == {first["workspace_revision"], revision}  # one per revision, kept for the next runs
        assert not (bifrost.workspace / "ops" / "__pycache__").exists()  # nothing was imported from the folder


def test_a_run_pinned_to_a_folder_revision_runs_exactly_its_code_after_the_folder_changed(tmp_path: Path) -> None:
    with running_bifrost(tmp_path, max_concurrency_per_workflow=1) as bifrost, bifrost.client() as api:
        bifrost.write_workflow("settings.py", "STEP = 1\n")
        bifrost.write_workflow("ops/counter.py", COUNTER)
        eventually(lambda: "count" in workflow_names(api), what="the workflows to be discovered")
        marker = shared_folder(tmp_path) / "open"
        holding = start(api, "count", start=1, marker=str(marker))
        wait_running(api, holding)
        pinned = start(api, "count", start=1)  # queued behind `holding`, pinned to STEP = 1
        pinned_revision = api.get(f"/api/executions/{pinned}").json()["workspace_revision"]

        bifrost.write_workflow("settings.py", "STEP = 1000\n")
        new_revision = api.get("/api/workspace/files").json()["revision"]
        eventually(lambda: registry_revision(api) == new_revision, what="the registry to read the edit")
        # A run of the new revision moves the runners' shared cache on: only the folder's kept copy has STEP = 1.
        assert finished(api, start(api, "step"))["result"] == 1000
        marker.touch()

        assert finished(api, holding)["result"] == 2  # imported before the edit, from its own checkout
        old = finished(api, pinned)
        assert (old["status"], old["result"], old["workspace_revision"]) == ("Success", 2, pinned_revision)


def test_an_execution_started_right_after_an_api_write_runs_the_new_code(tmp_path: Path) -> None:
    # The registry does not poll within the test: only the write's own rescan can show it the new code.
    with running_bifrost(tmp_path, workspace_poll_seconds=3600) as bifrost, bifrost.client() as api:
        for path, source in (("ops/counter.py", COUNTER), ("settings.py", "STEP = 1\n")):
            assert api.put(f"/api/workspace/files/{path}", content=source.encode()).status_code == 200
        assert finished(api, start(api, "step"))["result"] == 1

        written = api.put("/api/workspace/files/settings.py", content=b"STEP = 7\n")
        assert written.status_code == 200, written.text
        run = finished(api, start(api, "step"))
        assert (run["status"], run["result"]) == ("Success", 7)
        assert run["workspace_revision"] == api.get("/api/workspace/files").json()["revision"]


def test_refused_runner_credentials_fail_the_run_naming_the_cause(seaweedfs: SeaweedS3, tmp_path: Path) -> None:
    bucket = new_bucket(seaweedfs)
    overrides = s3_overrides(seaweedfs, bucket, s3_runner_secret_access_key=SecretStr("not-the-secret"))
    with running_bifrost(tmp_path, **overrides) as bifrost, bifrost.client() as api:
        upload = api.post("/api/workspace/sync", json={"files": {"counter.py": COUNTER, "settings.py": "STEP = 1\n"}})
        assert upload.status_code == 200, upload.text
        failed = finished(api, start(api, "count", start=1))
        assert (failed["status"], failed["error"]["type"]) == ("Failed", "WorkspaceSyncError")
        assert f"S3 refused the runner's credentials for bucket '{bucket}'" in failed["error"]["message"]


async def test_refused_control_plane_credentials_stop_the_start_with_a_clear_error(
    seaweedfs: SeaweedS3, tmp_path: Path
) -> None:
    bucket = new_bucket(seaweedfs)
    overrides = s3_overrides(seaweedfs, bucket, s3_secret_access_key=SecretStr("not-the-secret"))
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'bifrost.db'}", "nats://127.0.0.1:1", **overrides)
    app = create_app(settings)
    with pytest.raises(WorkspaceStoreError, match=f"S3 refused the credentials for bucket '{bucket}'"):
        async with app.router.lifespan_context(app):
            pass
    assert seaweedfs.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_s3_down_during_a_runner_sync_is_retried_then_fails_clearly(tmp_path: Path) -> None:
    with running_seaweedfs(tmp_path / "seaweedfs") as server:
        bucket = new_bucket(server)
        with running_bifrost(tmp_path / "bifrost", **s3_overrides(server, bucket)) as bifrost, bifrost.client() as api:
            files = {"counter.py": COUNTER, "settings.py": "STEP = 1\n"}
            assert api.post("/api/workspace/sync", json={"files": files}).status_code == 200
            log = bifrost.settings.data_dir.resolve() / "runners"

            server.stop()
            failed = finished(api, start(api, "count", start=1))
            assert (failed["status"], failed["error"]["type"]) == ("Failed", "WorkspaceSyncError")
            message = failed["error"]["message"]
            assert f"cannot reach s3://{bucket}/" in message
            assert "gave up after 5 attempts" in message
            assert "retrying" in "".join(p.read_text(errors="replace") for p in log.rglob("*.log"))

            server.start()
            recovered = finished(api, start(api, "count", start=1))
            assert (recovered["status"], recovered["result"]) == ("Success", 2), recovered["error"]
