"""A catalog writer must not choose what another host reads, writes or deletes.

Rows are written straight into the catalog, as anyone who may write it could: into the
SQLite file, or on PostgreSQL by a login in the documented read-write role. Each row
names a location that is not this repository's (another directory or bucket, a key
outside the store's prefix, a key of another path, a key whose tail is a path). Then
the victim host runs `gc`, `verify`, `recover`, reads and publishes, and nothing outside
the store is deleted, read, overwritten or moved; each refusal says why in one line.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, insert
from sqlalchemy.pool import NullPool

import repo
from conftest import CliRun, write_config
from repo import gc
from repo.catalog.schema import files, paths
from repo.paths import new_version_token

if TYPE_CHECKING:
    from conftest import StoreTarget
    from harness.roles import NewUser

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
LATER = datetime.now(UTC) + timedelta(days=400)
SECRET = b"root-only: the victim's secret\n"


@pytest.fixture
def victim_config(tmp_path: Path, catalog_url: str, store_url: StoreTarget) -> dict[str, Any]:
    config: dict[str, Any] = {
        "store": store_url.url,
        "database": catalog_url,
        "local_root": str(tmp_path / "victim-local"),
        "host_name": "victim",
        "backups_before_purge": 0,  # expired versions are due at once, backups or not
    }
    if store_url.is_s3:
        config |= {
            "s3_endpoint_url": store_url.endpoint_url,
            "s3_access_key": store_url.access_key,
            "s3_secret_key": store_url.secret_key,
            "s3_region": store_url.region,
        }
    repo.create_repository(config)
    return config


@pytest.fixture
def writer_url(
    request: pytest.FixtureRequest, catalog_url: str, victim_config: dict[str, Any]
) -> str:
    """A URL that writes the catalog as an attacker may: the SQLite file itself, or a
    PostgreSQL login in the read-write role."""
    if catalog_url.startswith("sqlite"):
        return catalog_url
    roles = repo.create_roles(victim_config, name=f"h{uuid.uuid4().hex[:8]}")
    request.getfixturevalue("db_roles").extend([roles.read_write, roles.read_only])
    new_user: NewUser = request.getfixturevalue("new_user")
    return new_user(f"w{uuid.uuid4().hex[:8]}", roles.read_write)


def plant(
    url: str,
    *,
    path: str,
    bucket: str,
    key: str,
    state: str,
    data: bytes | None = SECRET,
) -> int:
    """One hostile row (a new path), as a catalog writer would insert it; its file id."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            path_id = conn.execute(
                insert(paths).values(path=path).returning(paths.c.path_id)
            ).scalar_one()
            row: dict[str, Any] = {
                "path_id": path_id,
                "bucket": bucket,
                "key": key,
                "state": state,
                "origin": "attacker",
                "created_at": LONG_AGO,
            }
            if data is not None:
                row |= {
                    "md5": hashlib.md5(data).hexdigest(),
                    "size": len(data),
                    "uploaded_at": LONG_AGO,
                }
            if state != "unpublished":
                row["published_at"] = LONG_AGO
            if state == "expired":
                row["expired_at"] = LONG_AGO
            return int(
                conn.execute(insert(files).values(row).returning(files.c.file_id)).scalar_one()
            )
    finally:
        engine.dispose()


def _one_line(err: repo.RepoError) -> None:
    assert "\n" not in err.message
    assert err.hint


# ------------------------------------------------------------ a directory store


@pytest.fixture
def victim_dir(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    d.mkdir()
    (d / "important.txt").write_bytes(SECRET)
    return d


def _dir_cases(config: dict[str, Any], victim_dir: Path) -> list[tuple[str, str]]:
    """(bucket, key) pairs a row may name, none of them this repository's object."""
    own = repo.Repo(config)
    try:
        bucket, prefix = own.store.bucket, own.store.key_prefix
    finally:
        own.close()
    token = new_version_token()
    return [
        (str(victim_dir), "important.txt"),  # another directory as the "bucket"
        (bucket, f"{prefix}data/x/other~{token}"),  # a key of another path
        (bucket, f"{prefix}backups/important.txt"),  # outside data/
        (bucket, f"{prefix}data/x/p~" + "/../../../etc/important.txt"[-26:]),  # a path tail
    ]


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_gc_deletes_nothing_a_hostile_row_points_at(
    victim_config: dict[str, Any], writer_url: str, victim_dir: Path
) -> None:
    ids = [
        plant(writer_url, path=f"gc/{i}", bucket=b, key=k, state="expired")
        for i, (b, k) in enumerate(_dir_cases(victim_config, victim_dir))
    ]
    (victim_dir / "other.txt").write_bytes(SECRET)
    ids.append(
        plant(writer_url, path="gc/u", bucket=str(victim_dir), key="other.txt", state="unpublished")
    )
    with repo.Repo(victim_config) as r:
        report = r.gc(now=LATER, orphans=True)
        assert report.expired.count == report.unpublished.count == 0
        (line,) = report.not_done
        assert f"{len(ids)} versions whose catalog rows name a location outside" in line
        for file_id in ids:  # left alone, rows too, for a person to look at
            assert r.file(file_id).state in ("expired", "unpublished")
    cli = CliRun(write_config(victim_dir.parent / "cfg.json", victim_config), victim_dir.parent)
    result = cli("gc")
    assert "location outside this repository's store" in result.output
    assert (victim_dir / "important.txt").read_bytes() == SECRET
    assert (victim_dir / "other.txt").read_bytes() == SECRET


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_reading_a_hostile_row_reads_nothing(
    victim_config: dict[str, Any], writer_url: str, victim_dir: Path, tmp_path: Path
) -> None:
    for i, (bucket, key) in enumerate(_dir_cases(victim_config, victim_dir)):
        plant(writer_url, path=f"read/{i}", bucket=bucket, key=key, state="published")
    cli = CliRun(write_config(tmp_path / "cfg.json", victim_config), tmp_path)
    with repo.Repo(victim_config) as r:
        for i in range(4):
            f = r.current(f"read/{i}")
            with pytest.raises(repo.UntrustedDataError) as err:
                f.read_bytes()
            _one_line(err.value)
            with pytest.raises(repo.UntrustedDataError):
                r.fetch([f], dest=tmp_path / f"out{i}")
            result = cli("cat", f"read/{i}")
            assert result.exit_code != 0
            assert SECRET.decode() not in result.output
    assert not any((tmp_path / f"out{i}").exists() for i in range(4))


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_verify_and_recover_never_touch_a_hostile_location(
    victim_config: dict[str, Any], writer_url: str, victim_dir: Path
) -> None:
    # recover would write the cached copy to where the row says, if it believed it.
    (victim_dir / "important.txt").unlink()
    ids = [
        plant(writer_url, path=f"rec/{i}", bucket=b, key=k, state="published")
        for i, (b, k) in enumerate(_dir_cases(victim_config, victim_dir))
    ]
    with repo.Repo(victim_config) as r:
        cached = r.cache.cache_path("important.txt")
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(SECRET)  # a copy the attacker hopes is uploaded
        report = r.verify()
        assert sorted(f.file_id for f in report.published.corrupt) == ids
        for f in report.corrupt:
            assert "was not touched" in f.reason or "is not this repository's key" in f.reason
        recovered = r.recover()
        assert recovered.recovered == []
        assert sorted(f.file_id for f in recovered.still_lost) == ids
    assert not (victim_dir / "important.txt").exists()
    assert sorted(p.name for p in victim_dir.iterdir()) == []


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
def test_publishing_a_hostile_row_moves_no_local_file(
    victim_config: dict[str, Any], writer_url: str, tmp_path: Path
) -> None:
    with repo.Repo(victim_config) as r:
        staging = r.session.staging.directory
        bucket, prefix = r.store.bucket, r.store.key_prefix
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "file").write_bytes(SECRET)
    # The key's last 26 characters, taken as a version token, lead to `outside/file`.
    tail = os.path.relpath(outside / "file", staging)
    need = 26 - len(tail)
    assert need >= 0
    if need % 2:
        tail, need = tail.replace("/", "//", 1), need - 1
    tail = "./" * (need // 2) + tail
    assert (staging / tail).resolve() == (outside / "file").resolve()
    file_id = plant(
        writer_url,
        path="pub/x",
        bucket=bucket,
        key=f"{prefix}data/pub/x~{tail}",
        state="unpublished",
        data=None,
    )
    with repo.Repo(victim_config) as r:
        with pytest.raises(repo.UntrustedDataError) as err:
            r.file(file_id).publish()
        _one_line(err.value)
        r.rollback()
    assert (outside / "file").read_bytes() == SECRET


# ------------------------------------------------------------------- S3


@pytest.mark.parametrize("store_url", ["moto"], indirect=True)
@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_gc_on_s3_deletes_nothing_in_other_buckets_or_outside_the_prefix(
    victim_config: dict[str, Any], writer_url: str, store_url: StoreTarget
) -> None:
    server = store_url.server
    assert server is not None
    other = server.create_bucket(f"other-{uuid.uuid4().hex[:12]}")
    client = server.client()
    bucket = store_url.bucket
    assert bucket is not None
    client.put_object(Bucket=other, Key="payroll.csv", Body=SECRET)
    client.put_object(Bucket=bucket, Key="outside-prefix.csv", Body=SECRET)
    plant(writer_url, path="s3/a", bucket=other, key="payroll.csv", state="expired")
    plant(writer_url, path="s3/b", bucket=bucket, key="outside-prefix.csv", state="expired")
    with repo.Repo(victim_config) as r:
        report = r.gc(now=LATER, orphans=True)
    assert "2 versions whose catalog rows name a location outside" in report.not_done[0]
    for b, k in ((other, "payroll.csv"), (bucket, "outside-prefix.csv")):
        assert client.get_object(Bucket=b, Key=k)["Body"].read() == SECRET
    client.close()


@pytest.mark.parametrize("store_url", ["file"], indirect=True)
@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_a_row_changed_between_choosing_and_claiming_is_still_not_deleted(
    victim_config: dict[str, Any], victim_dir: Path
) -> None:
    # The row a gc claims is read again at the claim: a writer may have changed it since
    # it was chosen. What is deleted is checked as claimed.
    with repo.Repo(victim_config) as r:
        own = r.add_file("gc/own").touch(b"ours").upload()
        r.commit()
        store = r.store
        changed = own.record._replace(key=f"{store.key_prefix}backups/important.txt")
        (Path(store.bucket) / "backups").mkdir(parents=True, exist_ok=True)
        (Path(store.bucket) / "backups" / "important.txt").write_bytes(SECRET)
        purger = gc._Purger(r.session)
        try:
            purger.delete([changed])
            purger.finish()
        finally:
            purger.close()
        assert (Path(store.bucket) / "backups" / "important.txt").read_bytes() == SECRET
        assert r.file(own.file_id).uploaded  # its row stays, for the next run to name
