"""An S3 API on loopback for the object-storage URL tests: moto's server, reached through real HTTP.

No bucket is reachable from these machines, so the tests talk to moto's S3 server with the same
pyarrow client and the same environment variables (`AWS_ENDPOINT_URL`, keys, region) a team sets
for MinIO or any S3-compatible store. Use the `bucket` fixture (registered in conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "tierwise-tests"


@dataclass(frozen=True)
class Bucket:
    """A bucket on the loopback S3 server."""

    name: str

    def url(self, key: str) -> str:
        """`s3://bucket/key`."""
        return f"s3://{self.name}/{key}"

    def upload(self, folder: Path, prefix: str) -> str:
        """Copy a folder's tables under a prefix; returns the prefix's URL."""
        import pyarrow.fs as pafs

        for path in sorted(folder.iterdir()):
            if path.is_file():
                pafs.copy_files(str(path), self.url(f"{prefix}/{path.name}"))
        return self.url(prefix)

    def keys(self, prefix: str) -> list[str]:
        """Every object key under a prefix (temporary uploads included), sorted."""
        import pyarrow.fs as pafs

        fs, path = pafs.FileSystem.from_uri(self.url(prefix))
        found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
        return sorted(f.path.split("/", 1)[1] for f in found if f.type == pafs.FileType.File)


@pytest.fixture(scope="session")
def bucket() -> Iterator[Bucket]:
    """moto's S3 server on a free loopback port, with one empty bucket; the AWS variables set for the session."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "tierwise-test",
        "AWS_SECRET_ACCESS_KEY": "tierwise-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield Bucket(BUCKET)
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
