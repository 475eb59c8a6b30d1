"""The catalog's record of copies in other stores (src/repo/catalog/replicas.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from repo import Repo
from repo.errors import UntrustedDataError
from repo.journal import entry_problem
from repo.restore import restore_catalog

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _published(r: Repo, path: str, data: bytes) -> Any:
    f = r.add_file(path).touch(data).publish()
    r.commit()
    return f


def test_a_copy_is_claimed_then_verified_then_lost(local_config: dict[str, str]) -> None:
    with Repo(local_config) as r:
        f = _published(r, "a.txt", b"a")
        assert r.catalog.replicas_of([f.file_id]) == {}  # one store: no rows at all
        assert r.catalog.claim_replica(f.file_id, "second", f.key, when=NOW)
        r.commit()
        (writing,) = r.catalog.replicas_of([f.file_id])[f.file_id]
        assert (writing.store, writing.state, writing.md5, writing.verified) == (
            "second",
            "writing",
            None,
            False,
        )
        later = NOW + timedelta(seconds=5)
        assert r.catalog.replica_verified(
            f.file_id, "second", f.key, md5=f.md5, size=f.size, verified_with="etag", when=later
        )
        r.commit()
        (copy,) = r.catalog.replicas_of([f.file_id])[f.file_id]
        assert (copy.state, copy.md5, copy.size, copy.verified_at) == ("verified", f.md5, 1, later)
        r.catalog.replica_lost(f.file_id, "second", f.key, when=later)
        r.commit()
        (lost,) = r.catalog.replicas_of([f.file_id])[f.file_id]
        assert (lost.state, lost.lost_at, lost.verified) == ("lost", later, False)
        # A copy with another key than the claimed one is never recorded as verified.
        assert not r.catalog.replica_verified(
            f.file_id, "second", f.key + "x", md5=f.md5, size=1, verified_with="etag", when=later
        )
        r.catalog.forget_replica(f.file_id, "second", f.key)
        r.commit()
        assert r.catalog.replicas_of([f.file_id]) == {}


def test_no_copy_is_claimed_of_a_version_not_uploaded_or_claimed_by_gc(
    local_config: dict[str, str],
) -> None:
    with Repo(local_config) as r:
        draft = r.add_file("draft.txt").touch(b"d")
        doomed = r.add_file("doomed.txt").touch(b"e").upload()
        r.commit()
        claimed = r.catalog.claim_for_purge(
            [doomed.file_id],
            now=datetime.now(UTC),
            unpublished_before=datetime.now(UTC) + timedelta(days=1),
            expired_before=None,
        )
        assert [c.file_id for c in claimed] == [doomed.file_id]
        r.commit()
        assert not r.catalog.claim_replica(draft.file_id, "second", draft.key, when=NOW)
        assert not r.catalog.claim_replica(doomed.file_id, "second", doomed.key, when=NOW)
        r.commit()
        assert r.catalog.replicas_of([draft.file_id, doomed.file_id]) == {}


def test_versions_to_copy_walks_uploaded_live_versions_in_id_order(
    local_config: dict[str, str],
) -> None:
    with Repo(local_config) as r:
        a = _published(r, "a.txt", b"a")
        b = _published(r, "b.txt", b"b")
        r.add_file("draft.txt").touch(b"d")
        old = _published(r, "c.txt", b"c1")
        new = _published(r, "c.txt", b"c2")  # `old` is expired now: backups may need it
        pages = [r.catalog.versions_to_copy(after_id=0, limit=2)]
        pages.append(r.catalog.versions_to_copy(after_id=pages[0][-1].file_id, limit=2))
        assert [[v.file_id for v in page] for page in pages] == [
            [a.file_id, b.file_id],
            [old.file_id, new.file_id],
        ]


def test_a_row_naming_no_store_or_holding_a_bad_md5_is_refused(
    local_config: dict[str, str], catalog_url: str
) -> None:
    with Repo(local_config) as r:
        f = _published(r, "a.txt", b"a")
        assert r.catalog.claim_replica(f.file_id, "second", f.key, when=NOW)
        r.commit()
    engine = create_engine(catalog_url)
    for change in (
        "store = '../etc'",
        "state = 'verified', md5 = 'zz', size = 1, verified_at = written_at",
    ):
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE replicas SET {change}"))  # noqa: S608 - fixed text
        with Repo(local_config) as r, pytest.raises(UntrustedDataError, match="it was not used"):
            r.catalog.replicas_of([f.file_id])
    engine.dispose()


def test_the_journal_brings_copies_back_after_the_last_backup(
    local_config: dict[str, str],
) -> None:
    with Repo(local_config) as r:
        f = _published(r, "a.txt", b"a")
        g = _published(r, "b.txt", b"b")
        r.backup()
        assert r.catalog.claim_replica(f.file_id, "second", f.key, when=NOW)
        r.commit()
        assert r.catalog.replica_verified(
            f.file_id, "second", f.key, md5=f.md5, size=f.size, verified_with="read-back", when=NOW
        )
        r.catalog.replica_lost(g.file_id, "main", g.key, when=NOW)
        r.commit()
        before = r.catalog.replicas_of([f.file_id, g.file_id])
    assert [c.state for c in before[f.file_id]] == ["verified"]
    assert [c.state for c in before[g.file_id]] == ["lost"]
    _drop_catalog(local_config)
    restore_catalog(local_config)
    with Repo(local_config) as r:
        assert r.catalog.replicas_of([f.file_id, g.file_id]) == before


def _drop_catalog(config: dict[str, str]) -> None:
    from repo.admin import destroy_catalog

    destroy_catalog(config)


def _entry(copy: dict[str, Any]) -> dict[str, Any]:
    doc = {
        "file_id": 1,
        "path": "a.txt",
        "bucket": "b",
        "key": "data/a.txt~x",
        "state": "published",
        "md5": "0" * 32,
        "size": 1,
        "origin": "h",
        "tags": [],
        "replicas": [copy],
        **dict.fromkeys(("created_at", "uploaded_at", "published_at"), NOW.isoformat()),
        **dict.fromkeys(("expired_at", "purge_started_at", "archived_at"), None),
    }
    return {"repository_id": "r", "committed_at": NOW.isoformat(), "files": [doc]}


GOOD_COPY = {
    "store": "second",
    "key": "data/a.txt~x",
    "state": "verified",
    "size": 1,
    "md5": "0" * 32,
    "verified_with": "etag",
    "written_at": NOW.isoformat(),
    "verified_at": NOW.isoformat(),
    "lost_at": None,
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"store": "Bad/Name"}, "is no store name"),
        ({"state": "gone"}, "state 'gone'"),
        ({"md5": None}, "verified without md5"),
        ({"size": -1}, "a size that is no count of bytes"),
        ({"written_at": "2026-01-02T03:04:05"}, "a copy's written_at is not a time with its zone"),
        ({"extra": 1}, "not an object with the fields of a copy"),
    ],
)
def test_a_journal_entry_with_a_malformed_copy_is_not_replayed(
    change: dict[str, Any], problem: str | None
) -> None:
    found = entry_problem(_entry({**GOOD_COPY, **change}), repository_id="r", key=None)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"file_id": 0}, "a copy is not an object with a valid file_id"),
        ({"file_id": None}, "a copy is not an object with a valid file_id"),
        ({"state": "gone"}, "state 'gone'"),
        ({"lost_at": "yesterday"}, "Invalid isoformat"),
        ({"extra": 1}, "not an object with the fields of a copy"),
    ],
)
def test_an_entry_of_lost_marks_is_checked_like_any_copy(
    change: dict[str, Any], problem: str | None
) -> None:
    lost = {**GOOD_COPY, "state": "lost", "lost_at": NOW.isoformat(), "file_id": 1, **change}
    entry = {"repository_id": "r", "committed_at": NOW.isoformat(), "copies": [lost]}
    found = entry_problem(entry, repository_id="r", key=None)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
