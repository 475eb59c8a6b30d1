"""`repo replicate`: copies in other stores, verified, resumable (src/repo/replicate.py),
over three stores (`replica_stores`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config
from replica_stores import three_store_config
from repo import Repo
from repo.cli.output import human_size

if TYPE_CHECKING:
    from pathlib import Path

    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3


@pytest.fixture
def three_stores(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, rclone_server: S3Server
) -> dict[str, Any]:
    return three_store_config(tmp_path, sqlite_url, moto_server, rclone_server)


def _objects(server: S3Server, url: str, under: str = "data/") -> dict[str, bytes]:
    """The objects under the store's prefix and `under`, with their bytes."""
    bucket, _, prefix = url[len("s3://") :].partition("/")
    client = server.client()
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{under}").get(
            "Contents", []
        )
        return {
            o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed
        }
    finally:
        client.close()


def _states(r: Repo, *files: Any) -> list[list[tuple[str, str]]]:
    found = r.catalog.replicas_of([f.file_id for f in files])
    return [[(c.store, c.state) for c in found.get(f.file_id, [])] for f in files]


def test_replicate_copies_every_live_version_once_verified_and_is_idempotent(
    three_stores: dict[str, Any], rclone_server: S3Server
) -> None:
    with Repo(three_stores) as r:
        old = r.add_file("a.txt").touch(b"first a").publish()
        new = r.add_file("a.txt").touch(b"second a").publish()  # `old` expired: still kept
        b = r.add_file("dir/b.bin").touch(bytes(range(256)) * 40).publish()
        draft = r.add_file("draft.txt").touch(b"never uploaded")
        r.commit()
        planned = r.replicate(dry_run=True)
        assert (planned.checked, planned.under, planned.copied, planned.bytes) == (3, 3, 3, 10255)
        assert _states(r, old, new, b) == [[], [], []]  # a dry run claims nothing
        done = r.replicate()
        assert (done.checked, done.under, done.copied, done.bytes, done.ok) == (
            3,
            3,
            3,
            10255,
            True,
        )
        assert _states(r, old, new, b, draft) == [[("second", "verified")]] * 3 + [[]]
        again = r.replicate()
        assert (again.checked, again.under, again.copied) == (3, 0, 0)
        keys = {
            f.file_id: r.session.stores.copy_key(r.catalog.get(f.file_id), "second")
            for f in (old, new, b)
        }
    stored = _objects(rclone_server, three_stores["stores"]["second"]["url"])
    assert stored == {
        keys[old.file_id]: b"first a",
        keys[new.file_id]: b"second a",
        keys[b.file_id]: bytes(range(256)) * 40,
    }
    assert all(k.startswith(("copies/data/a.txt~", "copies/data/dir/b.bin~")) for k in stored)


def test_a_corrupt_source_is_recorded_lost_and_the_copy_is_read_from_another(
    three_stores: dict[str, Any], moto_server: S3Server, tmp_path: Path
) -> None:
    with Repo(three_stores) as r:
        f = r.add_file("a.txt").touch(b"good bytes").publish()
        r.commit()
        assert r.replicate().copied == 1  # into `second`
        rec = r.catalog.get(f.file_id)
        nas_key = r.session.stores.copy_key(rec, "nas")
    # The default store's object is damaged (same size), and a third copy is wanted.
    bucket = three_stores["store"][len("s3://") :].split("/")[0]
    client = moto_server.client()
    client.put_object(Bucket=bucket, Key=rec.key, Body=b"BAD! bytes")
    client.close()
    with Repo({**three_stores, "numcopies": 3}) as r:
        first = r.replicate()
        assert (first.copied, first.ok) == (1, True)  # into `nas`, read from `second`
        assert _states(r, f) == [[("main", "lost"), ("nas", "verified"), ("second", "verified")]]
        assert (tmp_path / "nas" / nas_key).read_bytes() == b"good bytes"
        # The next run writes the default store's copy again, over the damaged object.
        second = r.replicate()
        assert (second.copied, second.ok) == (1, True)
        assert _states(r, f) == [
            [("main", "verified"), ("nas", "verified"), ("second", "verified")]
        ]
    client = moto_server.client()
    assert client.get_object(Bucket=bucket, Key=rec.key)["Body"].read() == b"good bytes"
    client.close()


def test_a_run_killed_after_its_claim_is_finished_by_the_next(
    three_stores: dict[str, Any], tmp_path: Path
) -> None:
    config = {**three_stores, "numcopies": 3}
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(b"content").publish()
        r.commit()
        rec = r.catalog.get(f.file_id)
        key = r.session.stores.copy_key(rec, "nas")
        # What a run killed mid-copy leaves: a committed claim and a partial object.
        assert r.catalog.claim_replica(f.file_id, "nas", key, when=datetime.now(UTC))
        r.commit()
        (tmp_path / "nas" / key).parent.mkdir(parents=True)
        (tmp_path / "nas" / key).write_bytes(b"cont")
        assert _states(r, f) == [[("nas", "writing")]]
        report = r.replicate()
        assert (report.copied, report.ok) == (2, True)
        assert _states(r, f) == [[("nas", "verified"), ("second", "verified")]]
    assert (tmp_path / "nas" / key).read_bytes() == b"content"


def test_a_version_with_no_readable_copy_is_reported_still_under(
    three_stores: dict[str, Any], tmp_path: Path
) -> None:
    config = {**three_stores, "numcopies": 2}
    with Repo(config) as r:
        f = r.add_file("a.txt").touch(b"content").publish()
        r.commit()
        rec = r.catalog.get(f.file_id)
        r.session.store.delete_many([rec.key])  # its only copy is gone
        report = r.replicate()
        assert (report.copied, report.ok) == (0, False)
        assert list(report.still_under) == [f.file_id]
        assert "could be read" in report.still_under[f.file_id]
        assert _states(r, f) == [[("main", "lost"), ("second", "writing")]]


def test_replicate_command_says_what_it_copied_and_what_is_still_under(
    three_stores: dict[str, Any], tmp_path: Path, moto_server: S3Server
) -> None:
    run = CliRun(write_config(tmp_path / "cfg.json", three_stores), tmp_path)
    with Repo(three_stores) as r:
        r.add_file("a.txt").touch(b"12345").publish()
        r.commit()
    journal = _objects(moto_server, three_stores["store"], "journal/")
    count, size = len(journal), sum(map(len, journal.values()))
    # Into `second` and `nas`, each.
    catalog_line = f"catalog backup or journal objects ({human_size(2 * size)})"
    dry = run("replicate", "--dry-run")
    assert (dry.exit_code, dry.stdout) == (
        0,
        "checked 1 version against numcopies 2: 1 under-replicated\nwould copy 1 copy (5 B)\n"
        f"would copy {2 * count} {catalog_line}\n",
    )
    done = run("replicate", "--json")
    assert done.exit_code == 0, done.output
    # The run's own commits (the copy's claim and verification) are journaled first.
    journal = _objects(moto_server, three_stores["store"], "journal/")
    count, size = len(journal), sum(map(len, journal.values()))
    assert json.loads(done.stdout) == {
        "dry_run": False,
        "numcopies": 2,
        "checked": 1,
        "under": 1,
        "copied": 1,
        "bytes": 5,
        "still_under": [],
        "backup_objects": 2 * count,
        "backup_bytes": 2 * size,
        "backup_failed": [],
        "ok": True,
    }
    again = run("replicate")  # nothing left: the backups and journal were copied too
    assert (again.exit_code, again.stdout) == (
        0,
        "checked 1 version against numcopies 2: 0 under-replicated\ncopied 0 copies (0 B)\n",
    )


def test_with_replicate_on_publish_now_a_commit_returns_with_every_copy_made(
    three_stores: dict[str, Any],
) -> None:
    now = {**three_stores, "numcopies": 3, "replicate_on_publish": "now"}
    with Repo(now) as r:
        f = r.add_file("a.txt").touch(b"now").publish()
        draft = r.add_file("b.txt").touch(b"not published")
        assert _states(r, f) == [[]]  # nothing before the publish is committed
        r.commit()
        assert _states(r, f, draft) == [[("nas", "verified"), ("second", "verified")], []]
        rolled = r.add_file("c.txt").touch(b"rolled back").publish()
        r.rollback()
        r.commit()
        assert r.catalog.replicas_of([rolled.file_id]) == {}
    with Repo(three_stores) as r:  # `later`, the default: publish copies nothing
        g = r.add_file("d.txt").touch(b"later").publish()
        r.commit()
        assert _states(r, g) == [[]]


def test_a_run_claims_and_records_its_copies_in_batches_one_journal_object_each(
    three_stores: dict[str, Any], moto_server: S3Server
) -> None:
    with Repo(three_stores) as r:
        for i in range(10):
            r.add_file(f"f/{i}.txt").touch(f"file {i}".encode()).publish()
        r.commit()
        before = len(_objects(moto_server, three_stores["store"], "journal/"))
        report = r.replicate()
        assert (report.copied, report.ok) == (10, True)
    # One commit claims the ten copies, one records them verified: two journal objects,
    # not two per copy.
    assert len(_objects(moto_server, three_stores["store"], "journal/")) - before == 2


class _Heard:
    """A progress listener that keeps what it hears."""

    def __init__(self) -> None:
        self.totals: list[tuple[int, int]] = []
        self.bytes = 0
        self.files = 0

    def begin(self, total_bytes: int, total_files: int) -> None:
        self.totals.append((total_bytes, total_files))

    def advance(self, nbytes: int) -> None:
        self.bytes += nbytes

    def file_done(self) -> None:
        self.files += 1


def test_replicate_tells_a_progress_listener_of_each_copy(three_stores: dict[str, Any]) -> None:
    contents = {"a.txt": b"12345", "b.txt": b"1234567890", "c.txt": b"x" * 3000}
    with Repo(three_stores) as r:
        for path, data in contents.items():
            r.add_file(path).touch(data).publish()
        r.commit()
        heard = _Heard()
        assert r.replicate(progress=heard).copied == 3
        again = _Heard()
        assert r.replicate(progress=again).copied == 0
    total = sum(map(len, contents.values()))
    assert (heard.totals, heard.bytes, heard.files) == ([(total, 3)], total, 3)
    assert (again.totals, again.bytes, again.files) == ([], 0, 0)
