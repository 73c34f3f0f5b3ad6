"""Workspace sync against a real S3 server (SeaweedFS): a 5,000-file workspace into an empty runner cache
(from the revision's archive, target under 0.5 s; and file by file, as when there is no archive), into a warm
cache with nothing changed, with one file changed; the checkout of a revision that executions
import from, when the first execution of the revision builds it and when later ones find it; plus the manifest
listing the control plane polls for re-discovery, on S3 and on a local folder.

An empty cache is what a new Kubernetes runner pod has: its sync from the archive has the target under 0.5 s. It is
taken five times, into five empty caches (none removed before the end), and given as the median with its CPU time,
user and system apart.

Run: `python -m bench.workspace_sync [--files N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench._report import measured
from bifrost._internal.workspace import Manifest, revision_archive_path
from bifrost_devtools.s3 import ADMIN_KEY, ADMIN_SECRET, READER_KEY, READER_SECRET, running_seaweedfs
from bifrost_runner.checkout import CACHE_FOLDER, checked_out
from bifrost_runner.config import RunnerConfig
from bifrost_runner.sync import sync_revision
from bifrost_runner.workspace_source import S3Source
from control_plane.workspace_store import LocalFolderStore, S3Store, upload_files

_T = TypeVar("_T")
COLD_TARGET_SECONDS = 0.5


def module_source(index: int) -> bytes:
    body = "\n".join(f"    total += {n} * count  # step {n}" for n in range(20))
    return (
        f'"""Workflow module {index}."""\n\nfrom bifrost import workflow\n\n\n'
        f"@workflow\ndef flow_{index}(count: int = 1) -> int:\n    total = 0\n{body}\n    return total\n"
    ).encode()


def timed(action: Callable[[], _T]) -> tuple[_T, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


@dataclass(frozen=True)
class ColdSync:
    seconds: float
    user_seconds: float
    system_seconds: float
    """The kernel's share: mostly creating the files, which on some file systems costs far more at times (ext4
    without a journal, for one, passes over every inode freed in the last 30 s for each file it creates)."""
    files: int
    from_archive: bool


def cold_sync(source: S3Source, manifest: Manifest, cache: Path) -> ColdSync:
    """A sync into the empty cache folder `cache`, with the CPU time it took (all threads of this process)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    report = sync_revision(source, manifest, cache)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return ColdSync(
        report.seconds,
        after.ru_utime - before.ru_utime,
        after.ru_stime - before.ru_stime,
        report.downloaded,
        report.from_archive,
    )


async def checkout_seconds(config: RunnerConfig, revision: str) -> float:
    started = time.perf_counter()
    async with checked_out(config, revision):
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=5000, help="size of the workspace (default 5000)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bifrost-bench-") as tmp, running_seaweedfs(Path(tmp) / "s3") as server:
        bucket = server.create_bucket("workspace")
        store = S3Store(
            bucket, "bench", endpoint_url=server.endpoint_url, access_key_id=ADMIN_KEY, secret_access_key=ADMIN_SECRET
        )
        files = {f"team_{i % 50}/flow_{i}.py": module_source(i) for i in range(args.files)}
        size_kb = sum(len(data) for data in files.values()) / 1024
        manifest, upload_seconds = timed(lambda: upload_files(store, files))
        upload = measured(f"{upload_seconds:8.3f} s  (files, manifest and archive)")
        _, listing_seconds = timed(store.manifest)
        listing = measured(f"{listing_seconds:8.3f} s")

        source = S3Source(
            bucket, "bench", endpoint_url=server.endpoint_url, access_key_id=READER_KEY, secret_access_key=READER_SECRET
        )
        runner_cache = Path(tmp) / "runner"
        cache = runner_cache / CACHE_FOLDER
        colds = [cold_sync(source, manifest, cache if run == 0 else Path(tmp) / f"cold-{run}") for run in range(5)]
        median = sorted(colds, key=lambda cold: cold.seconds)[len(colds) // 2]
        all_from_archive = all(cold.from_archive for cold in colds)
        cold_figure = measured(
            f"{median.seconds:8.3f} s  (median of {len(colds)}, best {min(cold.seconds for cold in colds):.3f} s; "
            f"{median.user_seconds:.3f} s user and {median.system_seconds:.3f} s system CPU; {median.files} files"
            f"{'' if all_from_archive else ', NOT all from the archive'}; what a new runner pod syncs)",
            f"< {COLD_TARGET_SECONDS} s",
            all_from_archive and median.seconds < COLD_TARGET_SECONDS,
        )
        server.client().delete_object(Bucket=bucket, Key=f"bench/{revision_archive_path(manifest.revision)}")
        file_by_file = sync_revision(source, manifest, Path(tmp) / "runner-without-archive")
        file_by_file_figure = measured(f"{file_by_file.seconds:8.3f} s  ({file_by_file.downloaded} downloaded)")
        unchanged = sync_revision(source, manifest, cache)
        unchanged_figure = measured(f"{unchanged.seconds:8.3f} s  ({unchanged.reused} reused)")
        changed_path = next(iter(files))
        edited = upload_files(store, {**files, changed_path: files[changed_path] + b"# edited\n"})
        one_changed = sync_revision(source, edited, cache)
        one_changed_figure = measured(
            f"{one_changed.seconds:8.3f} s  ({one_changed.downloaded} downloaded, {one_changed.reused} reused)"
        )
        config = RunnerConfig(
            execution_id="bench",
            token="unused",
            api_url="http://127.0.0.1:1",
            nats_url="nats://127.0.0.1:1",
            timeout_seconds=60,
            workspace_url=f"s3://{bucket}/bench",
            workspace_cache_dir=runner_cache,
            s3_endpoint_url=server.endpoint_url,
            s3_access_key_id=READER_KEY,
            s3_secret_access_key=READER_SECRET,
        )
        first_checkout = measured(
            f"{asyncio.run(checkout_seconds(config, edited.revision)):8.3f} s  "
            "(S3 client, manifest, hard links, read-only)"
        )
        warm_checkouts = [asyncio.run(checkout_seconds(config, edited.revision)) for _ in range(20)]
        warm_checkout = measured(f"{statistics.median(warm_checkouts) * 1000:8.3f} ms (median of 20)")

        (Path(tmp) / "folder").mkdir()
        upload_files(LocalFolderStore(Path(tmp) / "folder"), files)
        folder = LocalFolderStore(Path(tmp) / "folder")
        _, first_folder_listing = timed(folder.manifest)
        first_folder = measured(f"{first_folder_listing:8.3f} s")
        _, folder_listing = timed(folder.manifest)
        next_folder = measured(f"{folder_listing:8.3f} s")

    print(f"workspace sync, SeaweedFS S3, {args.files} files ({size_kb:,.0f} KiB)")
    print(f"  upload as one revision            {upload}")
    print(f"  manifest listing (re-discovery)   {listing}")
    print(f"  empty cache, revision archive     {cold_figure}")
    print(f"  empty cache, file by file         {file_by_file_figure}")
    print(f"  warm cache, nothing changed       {unchanged_figure}")
    print(f"  warm cache, one file changed      {one_changed_figure}")
    print(f"  revision checkout, first run      {first_checkout}")
    print(f"  revision checkout, later runs     {warm_checkout}")
    print(f"local folder, {args.files} files")
    print(f"  manifest, first listing (hashes)  {first_folder}")
    print(f"  manifest, next listings (stats)   {next_folder}")


if __name__ == "__main__":
    main()
