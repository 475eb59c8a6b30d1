"""Garbage collection's overlapping steps: worker threads delete the objects of claimed
batches while the calling thread claims the next batch and forgets the rows of objects
already gone (see `repo.gc._Purger`). Whatever fails, a row goes only after its object,
and what a failed run claimed the next run finishes.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest

from repo import NotFoundError, Repo, RepoFile
from repo.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator

LATER = timedelta(seconds=5)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of a few versions, so a handful of files makes many claims and requests."""
    monkeypatch.setattr("repo.gc.CLAIM_BATCH", 4)
    monkeypatch.setattr("repo.gc.DELETE_BATCH", 2)
    monkeypatch.setattr("repo.gc.FORGET_BATCH", 3)
    monkeypatch.setattr("repo.gc.DELETE_THREADS", 2)


@pytest.fixture
def gc_repo(local_config: dict[str, Any]) -> Iterator[Repo]:
    r = Repo({**local_config, "unpublished_ttl_seconds": 0})
    try:
        yield r
    finally:
        r.close()


def has_object(r: Repo, key: str) -> bool:
    try:
        r.store.head(key)
    except NotFoundError:
        return False
    return True


def has_row(r: Repo, rf: RepoFile) -> bool:
    try:
        r.file(rf.file_id)
    except NotFoundError:
        return False
    finally:
        r.rollback()
    return True


def claimed_ids(r: Repo) -> set[int]:
    ids = {rec.file_id for rec in r.catalog.claimed()}
    r.rollback()
    return ids


def drafts(r: Repo, n: int) -> list[RepoFile]:
    made = [r.add_file(f"drafts/{i:02}.bin").touch(b"d" * (i + 1)).upload() for i in range(n)]
    r.commit()
    return made


@pytest.mark.usefixtures("small_batches")
def test_many_batches_purge_every_version_and_report_them_in_file_id_order(
    gc_repo: Repo,
) -> None:
    r = gc_repo
    gone = drafts(r, 23)
    kept = r.add_file("kept.bin").touch(b"published").publish()
    r.commit()

    report = r.gc(now=datetime.now(UTC) + LATER)

    assert report.unpublished.keys == [rf.key for rf in gone]
    assert report.unpublished.bytes == sum(range(1, 24))
    assert [rf for rf in gone if has_row(r, rf) or has_object(r, rf.key)] == []
    assert claimed_ids(r) == set()
    assert has_object(r, kept.key)
    assert r.current("kept.bin").read_bytes() == b"published"


@pytest.mark.usefixtures("small_batches")
def test_a_failed_deletion_keeps_rows_of_undeleted_objects_claimed_for_the_next_run(
    gc_repo: Repo, local_config: dict[str, Any]
) -> None:
    r = gc_repo
    made = drafts(r, 15)
    stuck = made[6]
    # A directory where the object's file was: unlinking it fails (EISDIR, even as
    # root), as a store refusing a deletion would.
    where = Path(urlparse(local_config["store"]).path) / stuck.key
    where.unlink()
    where.mkdir()
    (where / "inside").write_bytes(b"x")

    with pytest.raises(StoreError):
        r.gc(now=datetime.now(UTC) + LATER)

    claimed = claimed_ids(r)
    assert stuck.file_id in claimed
    assert has_row(r, stuck)
    for rf in (rf for rf in made if rf is not stuck):
        # A row goes only after its object; an object only after its row is claimed.
        assert has_object(r, rf.key) or not has_row(r, rf) or rf.file_id in claimed, rf.key
        assert has_row(r, rf) or not has_object(r, rf.key), rf.key
    left = [rf for rf in made if has_row(r, rf)]

    shutil.rmtree(where)
    report = r.gc(now=datetime.now(UTC) + LATER)

    assert sorted(report.resumed.keys) == sorted(rf.key for rf in left if rf.file_id in claimed)
    assert sorted(report.resumed.keys + report.unpublished.keys) == sorted(rf.key for rf in left)
    assert [rf.key for rf in made if has_row(r, rf) or has_object(r, rf.key)] == []
    assert claimed_ids(r) == set()
