"""One read-only checkout per workspace revision: made once from the shared cache, shared by every run of that
revision, and cleaned up when no live runner uses it."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bifrost_runner.checkout import BUILD_SUFFIX, CACHE_FOLDER, KEPT_CHECKOUTS, REVISIONS_FOLDER, checked_out
from bifrost_runner.config import RunnerConfig
from bifrost_runner.sync import LOCK_FILE, WorkspaceSyncError, lock_file
from control_plane.workspace_store import LocalFolderStore, upload_files
from tests.api.conftest import eventually

FILES = {
    "flows/report.py": b"TITLE = 'v1'\n",
    "flows/rates.csv": b"eur,1.0\n",
}


def runner_config(tmp_path: Path, execution_id: str = "run-1", **fields: object) -> RunnerConfig:
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


def revisions_folder(tmp_path: Path) -> Path:
    return tmp_path / "runner-cache" / REVISIONS_FOLDER


def checkouts_in(tmp_path: Path) -> set[str]:
    return {entry.name for entry in revisions_folder(tmp_path).iterdir() if entry.is_dir() and entry.name[0] != "."}


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def hold_shared_lock(lock: Path) -> subprocess.Popen[bytes]:
    """A live run of another revision: a process holding that checkout's lock shared until it is killed."""
    holder = textwrap.dedent(
        f"""
        import fcntl, os, time
        from bifrost_runner.sync import lock_file
        descriptor = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)
        lock_file(descriptor, fcntl.F_RDLCK, wait=True)
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"locked\n"
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


async def check_out(tmp_path: Path, revision: str) -> Path:
    """One run of `revision`, start to end; the folder it imported from."""
    async with checked_out(runner_config(tmp_path), revision) as checkout:
        return checkout.folder


async def test_runs_of_one_revision_share_one_read_only_checkout(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    revision = upload_files(store, FILES).revision
    async with checked_out(runner_config(tmp_path, "run-1"), revision) as first:
        assert (first.folder, first.revision) == (revisions_folder(tmp_path) / revision, revision)
        assert first.sync_seconds is not None
        assert files_in(first.folder) == FILES
        cached = tmp_path / "runner-cache" / CACHE_FOLDER / "flows" / "report.py"
        assert (first.folder / "flows" / "report.py").stat().st_ino == cached.stat().st_ino  # linked, not copied

        # The storage is gone: a second run can only work from the checkout the first one made.
        shutil.rmtree(store.root)
        async with checked_out(runner_config(tmp_path, "run-2"), revision) as second:
            assert second.folder == first.folder
            assert files_in(second.folder) == FILES

    for path in first.folder.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o555 if path.is_dir() else 0o444), path
    assert stat.S_IMODE(first.folder.stat().st_mode) == 0o555


async def test_a_new_revision_gets_its_own_checkout_while_a_run_of_the_old_keeps_its_files(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    revision = upload_files(store, FILES).revision
    async with checked_out(runner_config(tmp_path, "run-1"), revision) as old:
        newer_files = {**FILES, "flows/report.py": b"TITLE = 'v2'\n"}
        async with checked_out(runner_config(tmp_path, "run-2"), upload_files(store, newer_files).revision) as new:
            assert new.folder != old.folder
            assert files_in(new.folder) == newer_files
            cached = tmp_path / "runner-cache" / CACHE_FOLDER / "flows" / "report.py"
            assert cached.read_bytes() == b"TITLE = 'v2'\n"  # the shared cache moved on
            assert files_in(old.folder) == FILES
    assert checkouts_in(tmp_path) == {old.folder.name, new.folder.name}


async def test_unused_checkouts_beyond_the_most_recently_used_are_removed_and_live_ones_kept(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    assert KEPT_CHECKOUTS == 3
    revisions = [upload_files(store, {"flows/report.py": f"TITLE = {n}\n".encode()}).revision for n in range(6)]
    for revision in revisions[:3]:
        await check_out(tmp_path, revision)
    locks = [revisions_folder(tmp_path) / f"{revision}.lock" for revision in revisions]
    an_hour_ago = time.time_ns() - 3600 * 10**9
    for age, lock in enumerate(locks[:3]):  # used in this order, long ago
        os.utime(lock, ns=(an_hour_ago + age, an_hour_ago + age))

    await check_out(tmp_path, revisions[0])  # used again: now the most recent of the three
    assert locks[0].stat().st_mtime_ns > an_hour_ago + 2
    holder = hold_shared_lock(locks[1])  # the least recently used one, but a run is still using it
    try:
        await check_out(tmp_path, revisions[3])
        await check_out(tmp_path, revisions[4])
        assert checkouts_in(tmp_path) == {revisions[0], revisions[1], revisions[3], revisions[4]}
        assert not locks[2].exists()
    finally:
        stop(holder)

    await check_out(tmp_path, revisions[5])  # released, it is the least recently used: it goes now
    assert revisions[1] not in checkouts_in(tmp_path) and not locks[1].exists()
    assert len(checkouts_in(tmp_path)) == KEPT_CHECKOUTS and {revisions[4], revisions[5]} <= checkouts_in(tmp_path)


async def test_leftovers_of_killed_runners_are_removed_and_builds_in_progress_kept(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    first, second = (upload_files(store, {"flows/report.py": f"TITLE = {n}\n".encode()}).revision for n in range(2))
    await check_out(tmp_path, first)
    revisions = revisions_folder(tmp_path)
    killed, live = "1" * 64, "2" * 64
    killed_build = revisions / f".{killed}.0badc0de{BUILD_SUFFIX}"  # a runner died while building `killed`
    (killed_build / "flows").mkdir(parents=True)
    (killed_build / "flows" / "report.py").write_bytes(b"TITLE = 'half'\n")
    for path, mode in ((killed_build / "flows" / "report.py", 0o444), (killed_build / "flows", 0o555)):
        path.chmod(mode)
    building = revisions / f".{live}.c0ffee00{BUILD_SUFFIX}"  # a live runner is building `live` right now
    building.mkdir()
    legacy_run = tmp_path / "runner-cache" / "runs" / "run-0"  # a per-run checkout of an earlier runner version
    legacy_run.mkdir(parents=True)
    holder = hold_shared_lock(revisions / f"{live}.lock")
    try:
        await check_out(tmp_path, second)
        assert not killed_build.exists()
        assert building.is_dir()
        assert not legacy_run.parent.exists()
        assert not (revisions / f"{killed}.lock").exists()
    finally:
        stop(holder)
    assert checkouts_in(tmp_path) == {first, second}


@pytest.mark.parametrize("revision", ["../../etc", "0" * 63, "A" * 64, "g" * 64, ""])
async def test_a_malformed_revision_id_fails_clearly(store: LocalFolderStore, tmp_path: Path, revision: str) -> None:
    with pytest.raises(WorkspaceSyncError, match=re.escape(f"{revision!r} is not a workspace revision")):
        await check_out(tmp_path, revision)
    assert not (tmp_path / "runner-cache").exists()


async def test_a_revision_that_was_never_recorded_fails_clearly_and_leaves_no_checkout(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    upload_files(store, FILES)
    unknown = "0" * 64
    with pytest.raises(WorkspaceSyncError, match=f"revision {unknown} was never recorded in folder"):
        await check_out(tmp_path, unknown)
    assert [entry.name for entry in revisions_folder(tmp_path).iterdir()] == [f"{unknown}.lock"]


RACER = textwrap.dedent(
    """
    import asyncio, json, sys
    from bifrost_runner.checkout import checked_out
    from bifrost_runner.config import RunnerConfig

    async def main() -> None:
        config = RunnerConfig.model_validate_json(sys.argv[1])
        async with checked_out(config, sys.argv[2]) as checkout:
            print(json.dumps({"folder": str(checkout.folder), "report": (checkout.folder / sys.argv[3]).read_text()}))

    asyncio.run(main())
    """
)


def shared_holders(lock: Path) -> int:
    """How many processes hold `lock` shared (an open file description lock), as the kernel lists them."""
    if not lock.exists():
        return 0
    inode = lock.stat().st_ino
    held = [line.split() for line in Path("/proc/locks").read_text().splitlines() if "->" not in line]
    shared = ["OFDLCK", "ADVISORY", "READ"]
    return sum(1 for fields in held if fields[1:4] == shared and fields[5].endswith(f":{inode}"))


def test_runners_racing_for_one_cold_revision_both_get_the_same_complete_checkout(
    store: LocalFolderStore, tmp_path: Path
) -> None:
    files = {f"flows/step_{n}.py": f"STEP = {n}\n".encode() for n in range(50)}
    revision = upload_files(store, files).revision
    cache = tmp_path / "runner-cache" / CACHE_FOLDER
    cache.mkdir(parents=True)
    config = runner_config(tmp_path).model_dump_json()
    # Both runners find no checkout, then queue on the cache's sync lock: both build, and both rename.
    with open(cache / LOCK_FILE, "a+b") as sync_lock:
        lock_file(sync_lock.fileno(), fcntl.F_WRLCK, wait=True)
        racers = [
            subprocess.Popen([sys.executable, "-c", RACER, config, revision, "flows/step_7.py"], stdout=subprocess.PIPE)
            for _ in range(2)
        ]
        eventually(
            lambda: shared_holders(revisions_folder(tmp_path) / f"{revision}.lock") == 2,
            within=60,
            what="both runners to lock the revision",
        )
    outputs = [racer.communicate(timeout=60)[0] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0]
    folder = revisions_folder(tmp_path) / revision
    assert [json.loads(output) for output in outputs] == [{"folder": str(folder), "report": "STEP = 7\n"}] * 2
    assert files_in(folder) == files
    assert sorted(entry.name for entry in revisions_folder(tmp_path).iterdir()) == [revision, f"{revision}.lock"]


async def test_a_run_holds_its_checkout_in_use_until_it_ends(store: LocalFolderStore, tmp_path: Path) -> None:
    revision = upload_files(store, FILES).revision
    lock = revisions_folder(tmp_path) / f"{revision}.lock"
    async with checked_out(runner_config(tmp_path), revision):
        assert shared_holders(lock) == 1
    assert shared_holders(lock) == 0
    async with checked_out(runner_config(tmp_path), revision):  # the warm path takes it just the same
        assert shared_holders(lock) == 1
    assert shared_holders(lock) == 0


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
