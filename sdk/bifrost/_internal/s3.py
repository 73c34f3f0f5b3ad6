"""The S3 client of both sides of a workspace in a bucket (AWS S3, SeaweedFS, MinIO, any S3-compatible store): the
control plane's store, which lists and writes it, and the runner's source, which reads revisions of it.

boto3 is imported when a client is made, not with this module: the SDK installs without it (the `s3` extra of
bifrost-sdk brings it), and a process that never opens a bucket never pays for the import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.credentials import Credentials
    from mypy_boto3_s3 import S3Client


@dataclass(frozen=True)
class S3Connection:
    """A client and what it was made with: the `credentials` it signs with (None when neither the arguments nor
    boto3's chain gave any), and whether objects are addressed path-style (`endpoint/bucket/key`) rather than
    virtual-hosted (`bucket.endpoint/key`)."""

    client: S3Client
    credentials: Credentials | None
    path_style: bool


def connect_s3(
    *,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
    region: str | None = None,
    path_style: bool | None = None,
    max_attempts: int = 3,
    max_pool_connections: int = 10,
    connect_timeout: float = 5,
    read_timeout: float = 30,
) -> S3Connection:
    """A client for `endpoint_url` (AWS when None). Credentials left out come from the usual boto3 chain
    (environment, config files, instance role). Path-style addressing is the default with a custom
    `endpoint_url`, as S3-compatible servers expect, and so is the region `us-east-1`, which they ignore.
    `max_attempts` counts the first try: 1 leaves retrying to the caller."""
    import boto3
    import botocore.session
    from botocore.config import Config

    use_path_style = endpoint_url is not None if path_style is None else path_style
    botocore_session = botocore.session.get_session()
    # Listings are read for keys, ETags and sizes; parsing every LastModified would be most of their client CPU.
    botocore_session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    session = boto3.session.Session(
        botocore_session=botocore_session,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        region_name=region or ("us-east-1" if endpoint_url else None),
    )
    client: S3Client = session.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(
            s3={"addressing_style": "path" if use_path_style else "auto"},
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
        ),
    )
    return S3Connection(client=client, credentials=session.get_credentials(), path_style=use_path_style)
