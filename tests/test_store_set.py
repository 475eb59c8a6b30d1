"""Named stores in a session, and the checks between a catalog row and a store
(src/repo/store_set.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from repo import Repo
from repo.catalog import Replica
from repo.errors import UntrustedDataError

if TYPE_CHECKING:
    from pathlib import Path

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def _config(tmp_path: Path, sqlite_url: str, **extra: Any) -> dict[str, Any]:
    for name in ("main", "second"):
        (tmp_path / name).mkdir(exist_ok=True)
    return {
        "store": (tmp_path / "main").as_uri(),
        "database": sqlite_url,
        "local_root": str(tmp_path / "local"),
        "stores": {
            "second": (tmp_path / "second").as_uri(),
            "far": {  # never reached: opening a store sends nothing
                "url": "s3://far-bucket/some/prefix",
                "s3_endpoint_url": "http://127.0.0.1:9",
                "s3_access_key": "far-key",
                "s3_secret_key": "far-secret",
            },
        },
        **extra,
    }


def _copy(rec: Any, store: str, key: str) -> Replica:
    return Replica(rec.file_id, store, key, "verified", rec.size, rec.md5, "etag", NOW, NOW, None)


def test_a_copy_is_named_after_its_store_prefix_and_the_versions_token(
    tmp_path: Path, sqlite_url: str
) -> None:
    with Repo(_config(tmp_path, sqlite_url)) as r:
        f = r.add_file("dir/a.txt").touch(b"a").publish()
        r.commit()
        rec = r.catalog.get(f.file_id)
        stores = r.session.stores
        token = rec.key.rpartition("~")[2]
        assert rec.key == f"data/dir/a.txt~{token}"
        assert stores.copy_key(rec, "second") == rec.key
        assert stores.copy_key(rec, "far") == f"some/prefix/data/dir/a.txt~{token}"
        assert stores.home_name(rec) == "main"
        assert r.session.locate(rec) is r.session.store
        second = r.session.locate_copy(rec, _copy(rec, "second", rec.key))
        assert second is stores.named("second")
        assert second.bucket == str(tmp_path / "second")


@pytest.mark.parametrize(
    ("store", "key", "message"),
    [
        ("elsewhere", None, "store 'elsewhere' is not configured"),
        ("second", "data/other.txt~{token}", "not at this repository's key for it"),
        ("second", "data/dir/a.txt~0000", "not at this repository's key for it"),
        ("second", "../main/data/dir/a.txt~{token}", "not at this repository's key for it"),
        ("far", "data/dir/a.txt~{token}", "not at this repository's key for it"),
    ],
)
def test_a_copy_in_an_unknown_store_or_at_a_foreign_key_is_never_touched(
    tmp_path: Path, sqlite_url: str, store: str, key: str | None, message: str
) -> None:
    with Repo(_config(tmp_path, sqlite_url)) as r:
        f = r.add_file("dir/a.txt").touch(b"a").publish()
        r.commit()
        rec = r.catalog.get(f.file_id)
        token = rec.key.rpartition("~")[2]
        copy = _copy(rec, store, (key or rec.key).format(token=token))
        with pytest.raises(UntrustedDataError, match=message):
            r.session.locate_copy(rec, copy)
        with pytest.raises(UntrustedDataError, match="was handed out as one of file"):
            r.session.locate_copy(rec, copy._replace(file_id=rec.file_id + 1))


def test_a_version_of_a_replaced_default_store_is_in_no_configured_store(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = _config(tmp_path, sqlite_url)
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(b"a").publish()
        r.commit()
    (tmp_path / "new-main").mkdir()
    config["store"] = (tmp_path / "new-main").as_uri()
    # The same local_root: its marker names the old URL, but the same catalog.
    with Repo(config) as r:
        rec = r.catalog.get(f.file_id)
        assert r.session.stores.home_name(rec) is None
        with pytest.raises(UntrustedDataError, match="it was not touched"):
            r.session.locate(rec)
        # Its copy in the store that survived is still reachable, by name.
        copy = _copy(rec, "second", r.session.stores.copy_key(rec, "second"))
        assert r.session.locate_copy(rec, copy).bucket == str(tmp_path / "second")


def test_placement_sends_new_versions_under_a_prefix_to_their_store(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = _config(tmp_path, sqlite_url, placement={"raw/": "second"}, numcopies=2)
    del config["stores"]["far"]  # replicate writes into every store: only reachable ones
    source = tmp_path / "big.bin"
    source.write_bytes(b"raw data")
    (tmp_path / "tree" / "raw").mkdir(parents=True)
    (tmp_path / "tree" / "raw" / "x").write_bytes(b"x")
    with Repo(config) as r:
        placed = r.add("raw/big.bin", source, publish=True)
        made = r.add_file("raw/made.txt").touch(b"made here").publish()
        plain = r.add_file("cooked/c.txt").touch(b"cooked").publish()
        r.commit()
        for f in (placed, made):
            assert f.record.bucket == str(tmp_path / "second")
            assert (tmp_path / "second" / f.key).exists()
        assert plain.record.bucket == str(tmp_path / "main")
        assert r.replicate().copied == 3  # each into the store it is not in
        assert r.current("raw/big.bin").read_bytes() == b"raw data"
        (tree,) = r.add_tree(tmp_path / "tree").files  # a tree follows placement too
        assert tree.record.bucket == str(tmp_path / "second")
        assert (tmp_path / "second" / tree.key).read_bytes() == b"x"


def test_a_store_that_cannot_be_reached_fails_only_its_own_part_of_replicate(
    tmp_path: Path, sqlite_url: str
) -> None:
    with Repo(_config(tmp_path, sqlite_url, numcopies=2)) as r:
        f = r.add_file("a.txt").touch(b"a").publish()
        r.commit()
        report = r.replicate()  # `far` answers nothing
        assert (report.copied, list(report.backup_failed), report.ok) == (1, ["far"], False)
        assert [c.store for c in r.catalog.replicas_of([f.file_id])[f.file_id]] == ["second"]
        assert report.backup_objects > 0  # into `second`


def test_gc_orphans_looks_in_every_store_and_keeps_every_recorded_copy(
    tmp_path: Path, sqlite_url: str
) -> None:
    from datetime import timedelta

    from repo.paths import make_key, new_version_token

    config = _config(tmp_path, sqlite_url, numcopies=2, orphan_grace_seconds=0)
    del config["stores"]["far"]
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(b"a").publish()
        r.commit()
        assert r.replicate().copied == 1
        copy = r.session.stores.copy_key(f.record, "second")
        orphan = make_key("", "a.txt", new_version_token())  # what a killed upload leaves
        (tmp_path / "second" / orphan).write_bytes(b"nobody's")
        report = r.gc(orphans=True, now=datetime.now(UTC) + timedelta(hours=1))
        assert report.orphans.keys == [orphan]
    assert not (tmp_path / "second" / orphan).exists()
    assert (tmp_path / "second" / copy).read_bytes() == b"a"
    assert (tmp_path / "main" / f.key).read_bytes() == b"a"


def test_a_rolled_back_upload_is_deleted_from_the_store_placement_sent_it_to(
    tmp_path: Path, sqlite_url: str
) -> None:
    source = tmp_path / "x.bin"
    source.write_bytes(b"rolled back")
    with Repo(_config(tmp_path, sqlite_url, placement={"raw/": "second"})) as r:
        f = r.add("raw/x.bin", source)
        assert (tmp_path / "second" / f.key).exists()
        r.rollback()
        assert not (tmp_path / "second" / f.key).exists()
