"""A workspace in an S3 bucket under a key prefix: AWS S3, SeaweedFS, MinIO, any S3-compatible store."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from bifrost._internal.s3 import connect_s3
from bifrost._internal.workspace import (
    Manifest,
    WorkspaceFileNotFoundError,
    WorkspaceStoreError,
    content_etag,
    is_workspace_path,
    normalize_workspace_path,
    parse_recorded_manifest,
    revision_archive_path,
    revision_manifest_path,
)
from control_plane.workspace_store.base import StoredFile, manifest_of

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CREDENTIAL_ERRORS = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
)
_MISSING_KEY_ERRORS = frozenset({"NoSuchKey", "404", "NotFound"})
_ARCHIVE_READERS = 16
_ARCHIVED_AT = (1980, 1, 1, 0, 0, 0)  # one timestamp for every entry: the same files make the same archive

logger = logging.getLogger(__name__)


class S3Store:
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
    ) -> None:
        """Credentials left out come from the usual boto3 chain (see `connect_s3`)."""
        if not bucket:
            raise WorkspaceStoreError("an S3 workspace needs a bucket name")
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self._client: S3Client = connect_s3(
            endpoint_url=endpoint_url,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            region=region,
            path_style=path_style,
            max_attempts=3,
            max_pool_connections=32,
        ).client
        # ETag -> content, of the files of the last archived revision and of those read since: the next archive
        # reads only what neither holds
        self._archived: dict[str, bytes] = {}
        self._read_since: dict[str, bytes] = {}
        self._archiving = threading.Lock()

    @property
    def description(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def list(self) -> list[StoredFile]:
        files: list[StoredFile] = []
        with self._errors("list"):
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    path = obj["Key"][len(self.prefix) :]
                    if is_workspace_path(path):
                        files.append(StoredFile(path=path, etag=obj["ETag"].strip('"'), size=obj["Size"]))
        return sorted(files, key=lambda f: f.path)

    def read(self, path: str) -> bytes:
        canonical = normalize_workspace_path(path)
        with self._errors("read", canonical):
            response = self._client.get_object(Bucket=self.bucket, Key=self.prefix + canonical)
            data = response["Body"].read()
        self._read_since[response["ETag"].strip('"')] = data
        return data

    def write(self, path: str, data: bytes) -> StoredFile:
        canonical = normalize_workspace_path(path)
        response = self._put(canonical, self.prefix + canonical, data)
        return StoredFile(path=canonical, etag=response["ETag"].strip('"'), size=len(data))

    def delete(self, path: str) -> None:
        canonical = normalize_workspace_path(path)
        key = self.prefix + canonical
        with self._errors("delete", canonical):
            self._client.head_object(Bucket=self.bucket, Key=key)
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def manifest(self) -> Manifest:
        return manifest_of(self.list())

    def record_revision(self, manifest: Manifest) -> str:
        """Record the manifest, and the revision's files as one archive for runners with an empty cache."""
        relative = revision_manifest_path(manifest.revision)
        self._put(relative, self.prefix + relative, manifest.model_dump_json().encode())
        with self._archiving:
            self._archive(manifest)
        return manifest.revision

    def _archive(self, manifest: Manifest) -> None:
        """Write the revision's archive unless it exists (its name is the revision: it never changes). Only the
        files the previous archive did not hold are read. A file changed or removed since the listing leaves the
        revision without an archive; its runners fetch the files one by one."""
        relative = revision_archive_path(manifest.revision)
        known = {**self._archived, **self._read_since}
        if self._exists(relative):  # written before, by this replica or another
            self._archived = {etag: known[etag] for etag in manifest.files.values() if etag in known}
            self._read_since = {}
            return
        wanted = {etag: path for path, etag in manifest.files.items() if etag not in known}
        with ThreadPoolExecutor(_ARCHIVE_READERS, thread_name_prefix="bifrost-archive-read") as readers:
            read = dict(zip(wanted, readers.map(self.read_version, wanted.values(), wanted), strict=True))
        contents = {**known, **{etag: data for etag, data in read.items() if data is not None}}
        self._archived = {etag: contents[etag] for etag in manifest.files.values() if etag in contents}
        self._read_since = {}
        if len(self._archived) < len(set(manifest.files.values())):
            logger.warning(
                "files of revision %s changed while it was recorded; its runners fetch them one by one",
                manifest.revision[:12],
            )
            return
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path, etag in sorted(manifest.files.items()):
                archive.writestr(zipfile.ZipInfo(path, _ARCHIVED_AT), contents[etag], zipfile.ZIP_DEFLATED)
        self._put(relative, self.prefix + relative, buffer.getvalue())

    def read_version(self, path: str, etag: str) -> bytes | None:
        try:
            data = self.read(path)
        except WorkspaceFileNotFoundError:
            return None
        return data if content_etag(data) == etag else None

    def _exists(self, relative: str) -> bool:
        try:
            with self._errors("read", relative):
                self._client.head_object(Bucket=self.bucket, Key=self.prefix + relative)
        except WorkspaceFileNotFoundError:
            return False
        return True

    def load_revision(self, revision: str) -> Manifest:
        relative = revision_manifest_path(revision)
        return parse_recorded_manifest(self._get(relative, self.prefix + relative), revision)

    def check_writable(self) -> None:
        """Fail early, before a multi-file upload writes anything, when the bucket is missing or the
        credentials are refused."""
        with self._errors("access"):
            self._client.head_bucket(Bucket=self.bucket)

    def _get(self, path: str, key: str) -> bytes:
        with self._errors("read", path):
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def _put(self, path: str, key: str, data: bytes) -> Any:
        # Content-MD5 makes S3 refuse a body damaged on the way instead of storing it.
        checksum = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        with self._errors("write", path):
            return self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentMD5=checksum)

    @contextmanager
    def _errors(self, action: str, path: str | None = None) -> Iterator[None]:
        """S3 and network failures as WorkspaceStoreError, with a message an operator can act on."""
        subject = f"{action} {path!r} in" if path else f"{action}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if path is not None and (code in _MISSING_KEY_ERRORS or status == 404) and code != "NoSuchBucket":
                raise WorkspaceFileNotFoundError(path, self.description) from None
            if code == "NoSuchBucket" or (path is None and status == 404):
                raise WorkspaceStoreError(f"the bucket {self.bucket!r} does not exist ({self.description})") from None
            if code in _CREDENTIAL_ERRORS or status == 403:
                raise WorkspaceStoreError(
                    f"S3 refused the credentials for bucket {self.bucket!r} ({self.description}) on {action}: "
                    f"{code or status} {error.get('Message', '')}".rstrip()
                ) from None
            raise WorkspaceStoreError(f"cannot {subject} {self.description}: {code or status} {error}") from exc
        except NoCredentialsError:
            raise WorkspaceStoreError(
                f"no S3 credentials for {self.description}: set BIFROST_S3_ACCESS_KEY_ID and "
                "BIFROST_S3_SECRET_ACCESS_KEY, or configure the usual AWS credential chain"
            ) from None
        except BotoCoreError as exc:
            raise WorkspaceStoreError(f"cannot {subject} {self.description}: {exc}") from exc
