"""Publishing: exactly one current version per path, superseding, never deleting."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest

import repo


def test_publish_supersedes_previous_version(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        old = r.add_file("p.txt").touch("old").publish()
        new = r.add_file("p.txt").touch("new").publish()
        assert old.refresh().state == "expired"
        assert old.expired_at is not None
        assert new.state == "published"
        current = r.get_file("p.txt")
        assert current is not None
        assert current.file_id == new.file_id


def test_publish_never_deletes_the_superseded_object(repo: repo.Repo) -> None:
    old = repo.add_file("keep.bin").touch(b"v1").publish()
    repo.add_file("keep.bin").touch(b"v2").publish()
    repo.commit()
    info = repo.store.head(old.key)
    assert info.size == 2
    # And the expired version is still readable from the store on a cold cache.
    import shutil

    shutil.rmtree(repo.cache.cache_dir)
    assert old.read_bytes() == b"v1"


def test_publish_uploads_first_when_needed(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        rf = r.add_file("auto.txt").touch("x")
        rf.publish()
        assert rf.md5 is not None
        assert rf.uploaded_at is not None


def test_publishing_twice_is_a_noop(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        rf = r.add_file("twice.txt").touch("x").publish()
        when = rf.published_at
        rf.publish()
        assert rf.published_at == when
        assert rf.state == "published"


def test_expired_file_cannot_be_published_again(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        rf = r.add_file("gone.txt").touch("x").publish()
        rf.expire()
        assert rf.state == "expired"
        assert r.get_file("gone.txt") is None
        with pytest.raises(repo.StateError) as err:
            rf.publish()
        assert err.value.hint


def test_unpublished_file_can_be_expired(local_config: dict[str, str]) -> None:
    with repo.Repo(config=local_config) as r:
        rf = r.add_file("never.txt").touch("x")
        rf.expire()
        assert rf.state == "expired"
        assert r.history("never.txt")[0].state == "expired"


def _publisher(config: dict[str, str], path: str, index: int, barrier: Any, out: Any) -> None:
    try:
        r = repo.Repo(config=dict(config, host_name=f"host-{index}"))
        rf = r.add_file(path).touch(f"writer {index}")
        rf.upload()
        # Commit the new version first: an open SQLite write transaction would hold the
        # only write lock and keep the other writers from reaching the barrier.
        r.commit()
        barrier.wait(timeout=60)
        rf.publish()
        r.commit()
        r.close()
        out.put((index, rf.file_id, None))
    except BaseException as exc:  # reported to the parent
        out.put((index, None, repr(exc)))


@pytest.mark.parametrize("writers", [6])
def test_concurrent_publishers_leave_exactly_one_current_version(
    local_config: dict[str, str], writers: int
) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(writers)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_publisher, args=(local_config, "race/x.txt", i, barrier, out))
        for i in range(writers)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [e for _, _, e in results if e]
    assert errors == []
    with repo.Repo(config=local_config) as r:
        versions = r.history("race/x.txt")
        assert len(versions) == writers
        states = sorted(v.state for v in versions)
        assert states == ["expired"] * (writers - 1) + ["published"]
        current = r.get_file("race/x.txt")
        assert current is not None
        # The last one to commit wins: it has the latest publish time.
        latest = max(versions, key=lambda v: v.published_at or v.created_at)
        assert current.file_id == latest.file_id
        assert current.read_text().startswith("writer ")


def test_catalog_refuses_two_current_versions_even_without_the_lock(
    local_config: dict[str, str],
) -> None:
    # The partial unique index is the last line of defence behind the path lock.
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from repo.catalog.schema import files

    with repo.Repo(config=local_config) as r:
        a = r.add_file("idx.txt").touch("a").publish()
        b = r.add_file("idx.txt").touch("b").upload()
        conn = r.catalog.db.begin_write()
        with pytest.raises(IntegrityError, match=r"(?i)unique"):
            conn.execute(
                update(files).where(files.c.file_id == b.file_id).values(state="published")
            )
        r.rollback()
        assert a.file_id
