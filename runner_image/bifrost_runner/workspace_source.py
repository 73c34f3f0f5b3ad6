"""Where a runner reads a workspace revision from: a folder it can see, or an S3 bucket."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.httpsession import get_cert_path

from bifrost._internal.s3 import connect_s3
from bifrost._internal.workspace import (
    Manifest,
    RevisionChangedError,
    WorkspaceStoreError,
    confined_path,
    content_etag,
    kept_file_path,
    normalize_workspace_path,
    parse_recorded_manifest,
    parse_workspace_url,
    revision_archive_path,
    revision_manifest_path,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_TRANSIENT_S3_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "503"})
_CREDENTIAL_S3_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"})


class SourceUnavailableError(WorkspaceStoreError):
    """The storage could not be reached or answered with a passing failure; trying again may succeed."""


class RevisionSource(Protocol):
    """Read access to a workspace, enough to sync a recorded revision of it."""

    @property
    def description(self) -> str: ...

    def fetch(self, path: str, etag: str) -> bytes:
        """The content of `path` whose ETag is `etag`, or RevisionChangedError when it no longer exists;
        SourceUnavailableError for failures worth retrying."""

    def load_manifest(self, revision: str) -> Manifest:
        """The manifest the control plane recorded for `revision`."""

    @property
    def keeps_archives(self) -> bool:
        """Whether the control plane keeps each revision as one archive here (see `fetch_archive`)."""

    def fetch_archive(self, revision: str) -> bytes | None:
        """The archive of `revision`'s files (zip), or None when there is none; SourceUnavailableError for
        failures worth retrying."""


class LocalFolderSource:
    """A workspace folder the runner can see (the embedded mode, a mounted volume). A file changed since its
    revision was recorded is read from the copy the control plane kept when it recorded the revision."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def description(self) -> str:
        return f"folder {self.root}"

    @property
    def keeps_archives(self) -> bool:
        return False  # the files are at hand: an archive would be one more copy of them

    def fetch_archive(self, revision: str) -> bytes | None:
        return None

    def fetch(self, path: str, etag: str) -> bytes:
        live = self._read(confined_path(self.root, normalize_workspace_path(path)), path)
        if live is not None and content_etag(live) == etag:
            return live
        kept = self._read(self.root / kept_file_path(etag), path)
        if kept is not None and content_etag(kept) == etag:
            return kept
        change = "was removed from" if live is None else "changed in"
        raise RevisionChangedError(
            f"{path!r} {change} {self.description} after the revision was recorded, and the folder no longer "
            f"keeps its version {etag} (only the files of the most recent revisions are kept)"
        )

    def _read(self, target: Path, path: str) -> bytes | None:
        try:
            return target.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SourceUnavailableError(f"cannot read {path!r} from {self.description}: {exc.strerror}") from exc

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
        # botocore's own retries are off: `sync_revision` retries, with a policy the caller controls.
        connection = connect_s3(
            endpoint_url=endpoint_url,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            region=region,
            path_style=path_style,
            max_attempts=1,
        )
        self._client: S3Client = connection.client
        self._credentials = connection.credentials
        self._region = self._client.meta.region_name
        self._bucket_url = _bucket_url(self._client.meta.endpoint_url, bucket, connection.path_style)
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

    @property
    def keeps_archives(self) -> bool:
        return True

    def fetch_archive(self, revision: str) -> bytes | None:
        relative = revision_archive_path(revision)
        found = self._get(relative, self.prefix + relative)
        return None if found is None else found[1]

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
