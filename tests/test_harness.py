"""Checks that the test harness really starts working servers."""

from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from harness.postgres import PostgresServer
    from harness.s3servers import S3Server


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


# --------------------------------------------------------------- postgres


def test_postgres_accepts_connections(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.conninfo()) as conn:
        row = conn.execute("SELECT current_user, inet_server_port()").fetchone()
    assert row == ("postgres", postgres_server.port)
    assert postgres_server.admin_url == (
        f"postgresql+psycopg://postgres@127.0.0.1:{postgres_server.port}/postgres"
    )


def test_postgres_databases_are_independent(postgres_server: PostgresServer) -> None:
    names = [f"t_harness_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    urls = [postgres_server.create_database(name) for name in names]
    try:
        assert urls[0] != urls[1]
        engines = [sa.create_engine(url) for url in urls]
        try:
            with engines[0].begin() as conn:
                conn.execute(sa.text("CREATE TABLE only_here (x int)"))
                conn.execute(sa.text("INSERT INTO only_here VALUES (42)"))
            with engines[0].connect() as conn:
                assert conn.execute(sa.text("SELECT current_database()")).scalar() == names[0]
                assert conn.execute(sa.text("SELECT x FROM only_here")).scalar() == 42
            with engines[1].connect() as conn:
                assert conn.execute(sa.text("SELECT current_database()")).scalar() == names[1]
                exists = conn.execute(sa.text("SELECT to_regclass('only_here')")).scalar()
                assert exists is None
        finally:
            for engine in engines:
                engine.dispose()
    finally:
        for name in names:
            postgres_server.drop_database(name)
    with psycopg.connect(postgres_server.conninfo()) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = ANY(%s)", (names,)
        ).fetchone()
    assert left == (0,)


def test_pg_url_fixture_is_usable(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


# --------------------------------------------------------------------- s3


def test_s3_put_get_roundtrip(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    try:
        body = b"hello harness \x00\xff" * 100
        put = client.put_object(Bucket=s3_bucket, Key="dir/obj.bin", Body=body)
        assert put["ETag"].strip('"') == hashlib.md5(body).hexdigest()
        got = client.get_object(Bucket=s3_bucket, Key="dir/obj.bin")
        assert got["Body"].read() == body
        listing = client.list_objects_v2(Bucket=s3_bucket, Prefix="dir/")
        assert [obj["Key"] for obj in listing["Contents"]] == ["dir/obj.bin"]
    finally:
        client.close()


def test_s3_buckets_are_fresh(s3_server: S3Server, s3_bucket: str) -> None:
    client = s3_server.client()
    try:
        # (rclone omits KeyCount from ListObjectsV2 responses, so look at Contents.)
        assert client.list_objects_v2(Bucket=s3_bucket).get("Contents", []) == []
    finally:
        client.close()


def test_moto_rejects_overwrite_with_if_none_match(moto_server: S3Server) -> None:
    bucket = moto_server.create_bucket(f"t-{uuid.uuid4().hex[:16]}")
    client = moto_server.client()
    try:
        client.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
        with pytest.raises(ClientError) as err:
            client.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"
    finally:
        client.close()


def test_rclone_rejects_wrong_content_md5(rclone_server: S3Server) -> None:
    bucket = rclone_server.create_bucket(f"t-{uuid.uuid4().hex[:16]}")
    client = rclone_server.client()
    try:
        client.put_object(Bucket=bucket, Key="good", Body=b"data", ContentMD5=_md5_b64(b"data"))
        with pytest.raises(ClientError) as err:
            client.put_object(Bucket=bucket, Key="bad", Body=b"data", ContentMD5=_md5_b64(b"x"))
        assert err.value.response["Error"]["Code"] == "BadDigest"
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert keys == ["good"]
    finally:
        client.close()


def test_rclone_buckets_are_directories(rclone_server: S3Server) -> None:
    bucket = rclone_server.create_bucket(f"t-{uuid.uuid4().hex[:16]}")
    client = rclone_server.client()
    try:
        client.put_object(Bucket=bucket, Key="a/b.txt", Body=b"on disk")
    finally:
        client.close()
    root = getattr(rclone_server, "root", None)
    assert isinstance(root, Path)
    assert (root / bucket / "a" / "b.txt").read_bytes() == b"on disk"


# --------------------------------------------------------------- fixtures


def test_sqlite_url(sqlite_url: str, tmp_path: Path) -> None:
    assert sqlite_url == f"sqlite:///{tmp_path}/catalog.db"
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
    assert (tmp_path / "catalog.db").exists()


def test_repo_config_shape(repo_config: dict[str, str], tmp_path: Path) -> None:
    assert repo_config["local_root"] == str(tmp_path / "local")
    assert repo_config["host_name"] == "test-host"
    assert repo_config["database"].startswith(("sqlite:///", "postgresql+psycopg://"))
    s3_keys = {"s3_endpoint_url", "s3_access_key", "s3_secret_key", "s3_region"}
    if repo_config["store"].startswith("s3://"):
        assert s3_keys <= repo_config.keys()
        assert repo_config["s3_region"] == "us-east-1"
    else:
        assert repo_config["store"] == f"file://{tmp_path}/store"
        assert not s3_keys & repo_config.keys()


def test_environment_is_isolated(tmp_path: Path) -> None:
    import os

    assert os.environ["REPO_HOME"] == str(tmp_path / "home")
    assert "REPO_CFG" not in os.environ
    assert Path.home() == tmp_path / "userhome"
