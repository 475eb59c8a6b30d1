"""Three stores for the replica tests: the default one on moto, `second` on rclone (its
own endpoint and keys), and `nas`, a directory (docs/replicas.md)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from harness.s3servers import S3Server


def new_bucket(server: S3Server) -> str:
    return server.create_bucket(f"t-{uuid.uuid4().hex[:16]}")


def three_store_config(
    tmp_path: Path, database: str, moto: S3Server, rclone: S3Server
) -> dict[str, Any]:
    (tmp_path / "nas").mkdir(exist_ok=True)
    return {
        "local_root": str(tmp_path / "local"),
        "database": database,
        "host_name": "test-host",
        "store": f"s3://{new_bucket(moto)}/repo",
        "s3_endpoint_url": moto.endpoint_url,
        "s3_access_key": moto.access_key,
        "s3_secret_key": moto.secret_key,
        "s3_region": moto.region,
        "stores": {
            "second": {
                "url": f"s3://{new_bucket(rclone)}/copies",
                "s3_endpoint_url": rclone.endpoint_url,
                "s3_access_key": rclone.access_key,
                "s3_secret_key": rclone.secret_key,
            },
            "nas": (tmp_path / "nas").as_uri(),
        },
        "numcopies": 2,
    }


def three_directories(tmp_path: Path, database: str, **extra: Any) -> dict[str, Any]:
    """Three directory stores (`main`, `second`, `nas`), numcopies 3 unless `extra` says."""
    for name in ("main", "second", "nas"):
        (tmp_path / name).mkdir(exist_ok=True)
    return {
        "store": (tmp_path / "main").as_uri(),
        "database": database,
        "local_root": str(tmp_path / "local"),
        "stores": {
            "second": (tmp_path / "second").as_uri(),
            "nas": (tmp_path / "nas").as_uri(),
        },
        "numcopies": 3,
        **extra,
    }


def directory_and_far(
    tmp_path: Path, database: str, server: S3Server, endpoint: str, **extra: Any
) -> dict[str, Any]:
    """A directory as the default store and `far`, a new bucket on `server` reached at
    `endpoint` (a fault proxy in front of it, say); numcopies 2 unless `extra` says."""
    (tmp_path / "main").mkdir(exist_ok=True)
    return {
        "store": (tmp_path / "main").as_uri(),
        "database": database,
        "local_root": str(tmp_path / "local"),
        "stores": {
            "far": {
                "url": f"s3://{new_bucket(server)}/copies",
                "s3_endpoint_url": endpoint,
                "s3_access_key": server.access_key,
                "s3_secret_key": server.secret_key,
                "s3_region": server.region,
            }
        },
        "numcopies": 2,
        **extra,
    }


def bucket_of(url: str) -> str:
    return url[len("s3://") :].split("/", 1)[0]


def delete_bucket(server: S3Server, bucket: str) -> None:
    """The whole bucket is gone: every object, then the bucket itself."""
    client = server.client()
    try:
        while listed := client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]}
            )
        client.delete_bucket(Bucket=bucket)
    finally:
        client.close()
