"""The runner's own copy of its revision: made from the shared cache, left alone while its runner lives, removed
when it ends, and cleaned up by the next runner when it was killed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bifrost_runner.checkout import CACHE_FOLDER, CHECKOUTS_FOLDER, checked_out
from bifrost_runner.config import RunnerConfig
from bifrost_runner.sync import WorkspaceSyncError
from control_plane.workspace_store import LocalFolderStore, upload_files

FILES = {"flows/report.py": b"TITLE = 'v1'\n", "flows/rates.csv": b"eur,1.0\n"}


def runner_config(tmp_path: Path, execution_id: str, **fields: object) -> RunnerConfig:
    return RunnerConfig.model_validate(
        {
            "execution_id": execution_id,
            "token": "unused",
            "api_url": "http://127.0.0.1:1",
            "nats_url": "nats://127.0.0.1:1",
            "timeout_seconds": 60,
            "workspace_url": str(tmp_path / "workspace"),
            "workspace_cache_dir": tmp_path / "runner-cache",
            **fields,
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalFolderStore:
    (tmp_path / "workspace").mkdir()
    return LocalFolderStore(tmp_path / "workspace")


def hold_lock(lock: Path) -> subprocess.Popen[bytes]:
    """A live runner of another execution: a process holding its checkout's lock until it is killed."""
    holder = textwrap.dedent(
        f"""
        import fcntl, os, sys, time
        descriptor = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"locked\n"
    return process


def checkout_of(execution_id: str, tmp_path: Path) -> Path:
    folder = tmp_path / "runner-cache" / CHECKOUTS_FOLDER / execution_id
    folder.mkdir(parents=True)
    (folder / "left.py").write_text("X = 1\n")
    return folder


async def test_a_checkout_holds_its_revision_and_goes_with_its_run(store: LocalFolderStore, tmp_path: Path) -> None:
    revision = upload_files(store, FILES).revision
    async with checked_out(runner_config(tmp_path, "run-1"), revision) as checkout:
        assert checkout.revision == revision and checkout.sync_seconds is not None
        assert {
            p.relative_to(checkout.folder).as_posix(): p.read_bytes() for p in checkout.folder.rglob("*.*")
        } == FILES
        cached = tmp_path / "runner-cache" / CACHE_FOLDER / "flows" / "report.py"
        assert (checkout.folder / "flows" / "report.py").stat().st_ino == cached.stat().st_ino  # linked, not copied

        # The next revision moves the shared cache on; this run's copy keeps its own.
        upload_files(store, {**FILES, "flows/report.py": b"TITLE = 'v2'\n"})
        async with checked_out(runner_config(tmp_path, "run-2"), store.manifest().revision) as newer:
            assert (newer.folder / "flows" / "report.py").read_bytes() == b"TITLE = 'v2'\n"
            assert cached.read_bytes() == b"TITLE = 'v2'\n"
            assert (checkout.folder / "flows" / "report.py").read_bytes() == b"TITLE = 'v1'\n"
        assert not newer.folder.exists()
    assert not checkout.folder.exists()
    assert list((tmp_path / "runner-cache" / CHECKOUTS_FOLDER).iterdir()) == []


async def test_checkouts_of_killed_runners_are_removed_and_live_ones_kept(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    revision = upload_files(store, FILES).revision
    checkouts = tmp_path / "runner-cache" / CHECKOUTS_FOLDER
    killed = checkout_of("killed-run", tmp_path)
    (checkouts / "killed-run.lock").touch()  # what a runner killed mid-run leaves: its lock is free
    alive = checkout_of("live-run", tmp_path)
    holder = hold_lock(checkouts / "live-run.lock")
    try:
        async with checked_out(runner_config(tmp_path, "run-1"), revision):
            assert not killed.exists() and not (checkouts / "killed-run.lock").exists()
            assert (alive / "left.py").exists()
    finally:
        holder.kill()
        holder.wait()

    async with checked_out(runner_config(tmp_path, "run-2"), revision):
        assert not alive.exists()


async def test_a_revision_that_was_never_recorded_fails_clearly(store: LocalFolderStore, tmp_path: Path) -> None:
    upload_files(store, FILES)
    unknown = "0" * 64
    with pytest.raises(WorkspaceSyncError, match=f"revision {unknown} was never recorded in folder"):
        async with checked_out(runner_config(tmp_path, "run-1"), unknown):
            pytest.fail("an unknown revision must not be checked out")


async def test_without_a_revision_only_a_folder_workspace_runs_in_place(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    async with checked_out(runner_config(tmp_path, "run-1"), None) as checkout:
        assert (checkout.folder, checkout.sync_seconds) == (store.root, None)
    s3 = runner_config(tmp_path, "run-2", workspace_url="s3://flows/ops", s3_endpoint_url="http://127.0.0.1:1")
    with pytest.raises(WorkspaceSyncError, match="names no workspace revision to sync from s3://flows/ops/"):
        async with checked_out(s3, None):
            pytest.fail("an S3 workspace has no folder to run in place")


def test_the_runner_environment_needs_a_workspace() -> None:
    env = {
        "BIFROST_EXECUTION_ID": "run-1",
        "BIFROST_EXECUTION_TOKEN": "token",
        "BIFROST_API_URL": "http://127.0.0.1:1",
        "BIFROST_NATS_URL": "nats://127.0.0.1:1",
        "BIFROST_TIMEOUT_SECONDS": "60",
    }
    with pytest.raises(ValueError, match="set BIFROST_WORKSPACE_URL or BIFROST_WORKSPACE_DIR"):
        RunnerConfig.from_env(env)
    config = RunnerConfig.from_env(env | {"BIFROST_WORKSPACE_URL": "s3://flows/ops", "BIFROST_S3_REGION": "eu-west-1"})
    assert (config.workspace_source_url, config.s3_region) == ("s3://flows/ops", "eu-west-1")
