"""Bring one exact workspace revision into the runner's local cache folder before the workflow is imported.

Only what the cache lacks is downloaded (in parallel, with retries), every file is checked against the ETag
its revision recorded, and files the revision does not have are removed: the workflow runs exactly the
revision it was dispatched with, or the sync fails with a message saying why.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import boto3
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.httpsession import get_cert_path
from pydantic import BaseModel

from bifrost.workspace import (
    Manifest,
    RevisionChangedError,
    WorkspacePathError,
    WorkspaceStoreError,
    confined_path,
    content_etag,
    normalize_workspace_path,
    parse_recorded_manifest,
    parse_workspace_url,
    revision_manifest_path,
    write_atomically,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

INDEX_FILE = ".bifrost-sync.json"
LOCK_FILE = ".bifrost-sync.lock"
_OWN_FILES = frozenset({INDEX_FILE, LOCK_FILE})
_TRANSIENT_S3_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "503"})
_CREDENTIAL_S3_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"})


class SourceUnavailableError(WorkspaceStoreError):
    """The storage could not be reached or answered with a passing failure; trying again may succeed."""


class WorkspaceSyncError(WorkspaceStoreError):
    """The cache could not be brought to the revision; the workflow must not run."""


class RevisionSource(Protocol):
    """Read access to a workspace, enough to sync a recorded revision of it."""

    @property
    def description(self) -> str: ...

    def fetch(self, path: str, etag: str) -> bytes:
        """The content of `path` whose ETag is `etag`, or RevisionChangedError when it no longer exists;
        SourceUnavailableError for failures worth retrying."""

    def load_manifest(self, revision: str) -> Manifest:
        """The manifest the control plane recorded for `revision`."""


class LocalFolderSource:
    """A workspace folder the runner can see (the embedded mode, a mounted volume). A folder keeps no earlier
    versions, so a file changed since its revision was recorded fails the sync."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def description(self) -> str:
        return f"folder {self.root}"

    def fetch(self, path: str, etag: str) -> bytes:
        target = confined_path(self.root, normalize_workspace_path(path))
        try:
            data = target.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise RevisionChangedError(f"{path!r} was removed from {self.description} after the revision") from None
        except OSError as exc:
            raise SourceUnavailableError(f"cannot read {path!r} from {self.description}: {exc.strerror}") from exc
        if content_etag(data) != etag:
            raise RevisionChangedError(
                f"{path!r} changed in {self.description} after the revision was recorded, and a folder keeps "
                "no earlier versions"
            )
        return data

    def load_manifest(self, revision: str) -> Manifest:
        relative = revision_manifest_path(revision)
        try:
            data = (self.root / relative).read_bytes()
        except FileNotFoundError:
            raise WorkspaceStoreError(f"revision {revision} was never recorded in {self.description}") from None
        except OSError as exc:
            raise SourceUnavailableError(f"cannot read {relative} from {self.description}: {exc.strerror}") from exc
        return parse_recorded_manifest(data, revision)


class S3Source:
    """A workspace in an S3 bucket. Each file is fetched on the condition that its ETag is still the one the
    revision recorded; when it changed since, the recorded version is fetched instead, if the bucket keeps
    versions.

    Files are fetched with plain GETs signed by botocore's SigV4 signer, on a urllib3 connection pool: a full
    botocore call costs about three times the CPU, which dominated the sync of a workspace of many small
    files. Listing versions, which is rare, goes through the boto3 client."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        region: str | None = None,
        path_style: bool | None = None,
        max_connections: int = 32,
    ) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        use_path_style = endpoint_url is not None if path_style is None else path_style
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            region_name=region or ("us-east-1" if endpoint_url else None),
        )
        # botocore's own retries are off: `sync_revision` retries, with a policy the caller controls.
        self._client: S3Client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                s3={"addressing_style": "path" if use_path_style else "auto"},
                retries={"mode": "standard", "max_attempts": 1},
                connect_timeout=5,
                read_timeout=30,
            ),
        )
        self._credentials = session.get_credentials()
        self._region = self._client.meta.region_name
        self._bucket_url = _bucket_url(self._client.meta.endpoint_url, bucket, use_path_style)
        self._http = urllib3.PoolManager(
            maxsize=max_connections,
            retries=False,
            timeout=urllib3.Timeout(connect=5, read=30),
            ca_certs=os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True),
        )

    @property
    def description(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def fetch(self, path: str, etag: str) -> bytes:
        key = self.prefix + normalize_workspace_path(path)
        current = self._get(path, key, if_match=etag)
        if current is not None and current[0] == etag:
            return current[1]
        with self._errors(path):
            version_id = self._recorded_version(key, etag)
        if version_id is not None:
            recorded = self._get(path, key, version_id=version_id)
            if recorded is not None and recorded[0] == etag:
                return recorded[1]
        raise RevisionChangedError(
            f"{path!r} changed in {self.description} after the revision was recorded, and the bucket keeps no "
            f"version with ETag {etag} (enable bucket versioning to run pinned revisions after a change)"
        )

    def load_manifest(self, revision: str) -> Manifest:
        relative = revision_manifest_path(revision)
        found = self._get(relative, self.prefix + relative)
        if found is None:
            raise WorkspaceStoreError(f"revision {revision} was never recorded in {self.description}")
        return parse_recorded_manifest(found[1], revision)

    def _get(
        self, path: str, key: str, *, if_match: str | None = None, version_id: str | None = None
    ) -> tuple[str, bytes] | None:
        """(ETag, content) of the object, or None when it does not exist or no longer matches `if_match`."""
        if self._credentials is None:
            raise WorkspaceStoreError(f"the runner has no S3 credentials for {self.description}")
        url = f"{self._bucket_url}/{quote(key, safe='/~')}"
        if version_id:
            url += f"?versionId={quote(version_id, safe='')}"
        request = AWSRequest(method="GET", url=url, headers={"If-Match": f'"{if_match}"'} if if_match else {})
        S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
        try:
            response = self._http.request("GET", url, headers=dict(request.headers.items()))
        except urllib3.exceptions.HTTPError as exc:
            raise SourceUnavailableError(f"cannot reach {self.description} for {path!r}: {exc}") from exc
        if response.status == 200:
            return str(response.headers.get("ETag", "")).strip('"'), response.data
        if response.status in (404, 412) and _s3_error_code(response.data) != "NoSuchBucket":
            return None
        raise self._refusal(path, response.status, _s3_error_code(response.data))

    def _recorded_version(self, key: str, etag: str) -> str | None:
        pages = self._client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key)
        for page in pages:
            for version in page.get("Versions", []):
                if version["Key"] == key and version["ETag"].strip('"') == etag:
                    return version["VersionId"]
        return None

    def _refusal(self, path: str, status: int, code: str) -> WorkspaceStoreError:
        if code in _CREDENTIAL_S3_CODES or status == 403:
            return WorkspaceStoreError(
                f"S3 refused the runner's credentials for bucket {self.bucket!r} ({self.description}): {code}"
            )
        if code == "NoSuchBucket":
            return WorkspaceStoreError(f"the bucket {self.bucket!r} does not exist ({self.description})")
        if code in _TRANSIENT_S3_CODES or status >= 500 or status == 429:
            return SourceUnavailableError(f"{self.description} failed to serve {path!r}: {code or status}")
        return WorkspaceStoreError(f"{self.description} refused {path!r}: {code or status}")

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            raise self._refusal(path, status, code) from exc
        except NoCredentialsError:
            raise WorkspaceStoreError(f"the runner has no S3 credentials for {self.description}") from None
        except BotoCoreError as exc:
            raise SourceUnavailableError(f"cannot reach {self.description} for {path!r}: {exc}") from exc


def _bucket_url(endpoint_url: str, bucket: str, path_style: bool) -> str:
    """Where the bucket's objects are: `https://host/bucket`, or `https://bucket.host` (virtual-hosted), which
    AWS prefers but cannot serve over TLS for bucket names with dots."""
    endpoint = urlsplit(endpoint_url)
    if path_style or "." in bucket:
        return f"{endpoint.scheme}://{endpoint.netloc}/{bucket}"
    return f"{endpoint.scheme}://{bucket}.{endpoint.netloc}"


def _s3_error_code(body: bytes) -> str:
    """The `<Code>` of an S3 error document; empty when the body is none."""
    try:
        return ElementTree.fromstring(body).findtext("Code") or ""
    except ElementTree.ParseError:
        return ""


def open_source(
    workspace_url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_region: str | None = None,
) -> RevisionSource:
    """The source a workspace URL names: a folder path, `file:///…` or `s3://bucket/prefix`."""
    location = parse_workspace_url(workspace_url)
    if isinstance(location, Path):
        return LocalFolderSource(location)
    return S3Source(
        location.bucket,
        location.prefix,
        endpoint_url=s3_endpoint_url,
        access_key_id=s3_access_key_id,
        secret_access_key=s3_secret_access_key,
        region=s3_region,
    )


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    first_delay: float = 0.25
    max_delay: float = 4.0

    def delay_after(self, attempt: int) -> float:
        return float(min(self.first_delay * 2 ** (attempt - 1), self.max_delay))


@dataclass(frozen=True)
class SyncReport:
    revision: str
    downloaded: int
    reused: int
    removed: int
    seconds: float


class _CachedFile(BaseModel):
    etag: str
    size: int
    mtime_ns: int


class _CacheIndex(BaseModel):
    """What the cache holds, so a warm sync needs one `stat` per file instead of a download."""

    revision: str | None = None
    files: dict[str, _CachedFile] = {}


def sync_workspace(
    source: RevisionSource,
    revision: str,
    cache_dir: Path,
    *,
    workers: int = 16,
    retry: RetryPolicy = RetryPolicy(),
) -> SyncReport:
    """Load the manifest recorded for `revision`, then `sync_revision` it."""
    try:
        manifest = _with_retries(lambda: source.load_manifest(revision), f"manifest of {revision}", source, retry)
    except WorkspaceSyncError:
        raise
    except WorkspaceStoreError as exc:
        raise WorkspaceSyncError(str(exc)) from exc
    return sync_revision(source, manifest, cache_dir, workers=workers, retry=retry)


def sync_revision(
    source: RevisionSource,
    manifest: Manifest,
    cache_dir: Path,
    *,
    workers: int = 16,
    retry: RetryPolicy = RetryPolicy(),
) -> SyncReport:
    """Make `cache_dir` hold exactly the files of `manifest`, downloading only those the cache lacks."""
    started = time.monotonic()
    for path in manifest.files:
        if normalize_workspace_path(path) != path:
            raise WorkspacePathError(path, "the manifest holds a path that is not canonical")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir):
        removed = _remove_strays(cache_dir, set(manifest.files))
        fresh = {
            path: cached
            for path, cached in _read_index(cache_dir).files.items()
            if manifest.files.get(path) == cached.etag and _unchanged(os.path.join(cache_dir, path), cached)
        }
        missing = sorted(manifest.files.keys() - fresh.keys())
        fetched, failures = _download(source, manifest, missing, cache_dir, workers, retry)
        complete = not failures
        _write_index(cache_dir, _CacheIndex(revision=manifest.revision if complete else None, files=fresh | fetched))
    if failures:
        first = failures[0]
        raise WorkspaceSyncError(
            f"workspace revision {manifest.revision} could not be synced from {source.description}: "
            f"{len(missing) - len(fetched)} of {len(manifest.files)} files missing; first failure: {first}"
        ) from first
    report = SyncReport(
        revision=manifest.revision,
        downloaded=len(fetched),
        reused=len(fresh),
        removed=removed,
        seconds=time.monotonic() - started,
    )
    logger.info(
        "workspace revision %s synced in %.3fs: %d downloaded, %d reused, %d removed",
        report.revision[:12],
        report.seconds,
        report.downloaded,
        report.reused,
        report.removed,
    )
    return report


def _download(
    source: RevisionSource,
    manifest: Manifest,
    paths: list[str],
    cache_dir: Path,
    workers: int,
    retry: RetryPolicy,
) -> tuple[dict[str, _CachedFile], list[WorkspaceStoreError]]:
    """Fetch and write `paths` in parallel. The first failure that retries cannot fix stops the rest: a sync
    that will fail anyway should not keep a broken storage busy."""
    abandon = threading.Event()

    def fetch_and_store(path: str) -> _CachedFile | None:
        if abandon.is_set():
            return None
        etag = manifest.files[path]
        data = _with_retries(lambda: source.fetch(path, etag), repr(path), source, retry, abandon)
        target = cache_dir / path
        write_atomically(target, data)
        written = target.stat()
        return _CachedFile(etag=etag, size=written.st_size, mtime_ns=written.st_mtime_ns)

    fetched: dict[str, _CachedFile] = {}
    failures: list[WorkspaceStoreError] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="workspace-sync") as pool:
        futures: dict[Future[_CachedFile | None], str] = {pool.submit(fetch_and_store, p): p for p in paths}
        for future in as_completed(futures):
            try:
                cached = future.result()
            except WorkspaceStoreError as exc:
                failures.append(exc)
                abandon.set()
                continue
            except OSError as exc:
                failures.append(WorkspaceSyncError(f"cannot write {futures[future]!r} into {cache_dir}: {exc}"))
                abandon.set()
                continue
            if cached is not None:
                fetched[futures[future]] = cached
    return fetched, failures


def _with_retries(
    action: Callable[[], _T],
    what: str,
    source: RevisionSource,
    retry: RetryPolicy,
    abandon: threading.Event | None = None,
) -> _T:
    attempt = 1
    while True:
        try:
            return action()
        except SourceUnavailableError as exc:
            if attempt >= retry.attempts or (abandon is not None and abandon.is_set()):
                raise SourceUnavailableError(f"{exc} (gave up after {attempt} attempts)") from exc
            delay = retry.delay_after(attempt)
            logger.warning(
                "fetching %s from %s failed (attempt %d of %d): %s; retrying in %.2fs",
                what,
                source.description,
                attempt,
                retry.attempts,
                exc,
                delay,
            )
            time.sleep(delay)
            attempt += 1


def _unchanged(target: str, cached: _CachedFile) -> bool:
    """Whether the cached file is still what was written (not replaced, edited or swapped for a symlink by
    an earlier run that shared this cache)."""
    try:
        found = os.lstat(target)
    except OSError:
        return False
    return stat.S_ISREG(found.st_mode) and found.st_size == cached.size and found.st_mtime_ns == cached.mtime_ns


def _folders_of(paths: set[str]) -> set[str]:
    """Every folder that holds one of `paths`, at any depth ("a/b/c.py" -> {"a", "a/b"})."""
    folders: set[str] = set()
    for path in paths:
        cut = path.rfind("/")
        while cut > 0 and path[:cut] not in folders:
            folders.add(path[:cut])
            cut = path.rfind("/", 0, cut)
    return folders


def _remove_strays(cache_dir: Path, wanted: set[str]) -> int:
    """Delete everything in the cache the revision does not have (old files, what an earlier run wrote,
    symlinks); `__pycache__` folders stay, so warm imports stay warm. Returns how many entries went.
    Plain strings, not Path objects: this runs over every cached file on every sync."""
    wanted_folders = _folders_of(wanted)
    root = str(cache_dir)
    removed = 0
    for folder, subfolders, names in os.walk(root):
        relative_folder = folder[len(root) + 1 :]
        prefix = f"{relative_folder}/" if relative_folder else ""
        kept: list[str] = []
        for name in subfolders:
            full = os.path.join(folder, name)
            is_link = os.path.islink(full)
            if not is_link and (prefix + name in wanted_folders or name == "__pycache__"):
                if name != "__pycache__":
                    kept.append(name)
                continue
            if is_link:
                os.unlink(full)
            else:
                shutil.rmtree(full)
            removed += 1
        subfolders[:] = kept
        for name in names:
            if prefix + name in wanted or (not prefix and name in _OWN_FILES):
                continue
            os.unlink(os.path.join(folder, name))
            removed += 1
    return removed


def _read_index(cache_dir: Path) -> _CacheIndex:
    try:
        return _CacheIndex.model_validate_json((cache_dir / INDEX_FILE).read_bytes())
    except FileNotFoundError:
        return _CacheIndex()
    except ValueError:
        logger.warning("the sync index in %s is unreadable; every file will be fetched again", cache_dir)
        return _CacheIndex()


def _write_index(cache_dir: Path, index: _CacheIndex) -> None:
    write_atomically(cache_dir / INDEX_FILE, index.model_dump_json().encode())


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """One sync at a time per cache folder (a node cache can be shared by several runners)."""
    with open(cache_dir / LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
