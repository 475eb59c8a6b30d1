"""Archival to Glacier storage classes, and thawing, on moto's S3 server (and rclone's).

moto models storage classes, CopyObject into a class, ``InvalidObjectState`` on reading
an archived object, RestoreObject (202 new, 200 restored already) and ``x-amz-restore``;
its state manager holds a restore "in progress" (progression ``manual``). It does not
model restore tiers (any tier restores alike), ``409 RestoreAlreadyInProgress`` (it
answers 200), ``503`` for Expedited capacity, or billing: those answers are handled as
AWS documents them (stores/s3_archive.py) and are not faked here. Minimum storage
durations are the catalog's own arithmetic (archived_at), tested through gc and archive.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from harness.moto_restores import restores_held
from repo import ArchivedError, Repo, StateError, StoreError, UsageError, restore_catalog
from repo.storage_classes import early_deletion_days, needs_restore
from repo.stores.s3_archive import parse_restore
from repo.units import parse_age
from test_backup_restore import s3_config

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.s3


@pytest.fixture
def moto_config(moto_server: Any, sqlite_url: str, tmp_path: Path) -> dict[str, Any]:
    return s3_config(moto_server, sqlite_url, tmp_path)


def add(r: Repo, path: str, data: bytes) -> Any:
    """A published version whose copy is not in this host's cache."""
    f = r.add(path, io.BytesIO(data), publish=True, keep_cached=False)
    r.commit()
    return f


def head(server: Any, config: dict[str, Any], key: str) -> dict[str, Any]:
    client = server.client()
    try:
        bucket = config["store"].removeprefix("s3://").split("/")[0]
        answer: dict[str, Any] = client.head_object(Bucket=bucket, Key=key)
        return answer
    finally:
        client.close()


def test_archive_refuses_reads_until_thawed_then_reads(
    moto_server: Any, moto_config: dict[str, Any]
) -> None:
    with Repo(moto_config) as r, restores_held(moto_server) as restore:
        f = add(r, "cold/a.bin", b"frozen bytes")
        before = head(moto_server, moto_config, f.key)

        report = r.archive([f])
        assert [a.file_id for a in report.archived] == [f.file_id]
        assert report.storage_class == "GLACIER"
        after = head(moto_server, moto_config, f.key)
        assert after["StorageClass"] == "GLACIER"
        # Same key, content identity and metadata: immutability holds.
        assert after["ETag"] == before["ETag"]
        assert after["ContentLength"] == before["ContentLength"]
        assert after["Metadata"] == before["Metadata"]
        archived = r.file(f.file_id)
        assert archived.storage_class == "GLACIER"
        assert archived.archived_at is not None

        with pytest.raises(ArchivedError) as refused:
            archived.read_bytes()
        assert str(refused.value) == (
            f"cold/a.bin (file {f.file_id}) is archived in GLACIER and has no restored copy to read"
        )
        assert refused.value.hint == "repo thaw cold/a.bin"
        assert [s.status for s in r.thaw_status([archived])] == ["archived"]

        restore.begin()
        thawed = r.thaw([archived], days=2)
        assert [x.file_id for x in thawed.started] == [f.file_id]
        (status,) = r.thaw_status([archived])  # this read moves moto's restore on...
        assert (status.status, status.storage_class) == ("restoring", "GLACIER")
        restore.hold()  # ...and there it stays
        (status,) = r.thaw_status([archived])
        assert (status.status, status.storage_class) == ("restoring", "GLACIER")
        with pytest.raises(ArchivedError):
            archived.read_bytes()
        with pytest.raises(StateError, match=r"1 of 1 version\(s\) still not readable"):
            r.thaw([archived], wait=0.2)

        restore.finish()
        (status,) = r.thaw_status([archived])
        assert status.status == "restored"
        assert status.restored_until is not None
        assert status.restored_until > datetime.now(UTC)
        assert archived.read_bytes() == b"frozen bytes"
        # The class stays archival after a restore; a second thaw extends the copy.
        assert head(moto_server, moto_config, f.key)["StorageClass"] == "GLACIER"
        again = r.thaw([archived], days=5, wait=5)
        assert [x.file_id for x in again.extended] == [f.file_id]
        assert [s.status for s in again.statuses] == ["restored"]


def test_a_cached_copy_reads_without_touching_the_archived_object(
    moto_config: dict[str, Any],
) -> None:
    with Repo(moto_config) as r:
        f = r.add("hot/b.txt", io.BytesIO(b"kept here"), publish=True)  # kept in the cache
        r.commit()
        r.archive([f], storage_class="DEEP_ARCHIVE")
        archived = r.file(f.file_id)
        assert archived.storage_class == "DEEP_ARCHIVE"
        assert archived.read_bytes() == b"kept here"
        r.clear_cache()
        with pytest.raises(ArchivedError, match="archived in DEEP_ARCHIVE"):
            r.file(f.file_id).read_bytes()
        with pytest.raises(ArchivedError, match=r"^hot/b.txt \(file \d+\) is archived"):
            r.fetch([r.file(f.file_id)])
        with pytest.raises(UsageError, match="no Expedited"):
            r.thaw([archived], tier="Expedited")


def test_glacier_ir_reads_without_a_restore_and_needs_no_thaw(
    moto_config: dict[str, Any],
) -> None:
    with Repo(moto_config) as r:
        f = add(r, "warm/c.txt", b"instant")
        r.archive([f], storage_class="GLACIER_IR")
        archived = r.file(f.file_id)
        assert archived.read_bytes() == b"instant"
        report = r.thaw([archived])
        assert [x.file_id for x in report.not_needed] == [f.file_id]
        assert [s.status for s in r.thaw_status([archived])] == ["readable"]


def test_archive_chooses_by_state_and_age_and_skips_what_it_must(
    moto_config: dict[str, Any],
) -> None:
    with Repo(moto_config) as r:
        old = add(r, "sel/old.txt", b"old")
        new = add(r, "sel/new.txt", b"new")
        draft = r.add("sel/draft.txt", io.BytesIO(b"draft"))
        r.commit()
        later = datetime.now(UTC) + timedelta(days=91)
        # Seen from 91 days on, both are old enough; from now, neither is.
        assert r.archive([old, new], older_than=timedelta(days=90), dry_run=True).archived == []
        report = r.archive(
            [old, draft], older_than=timedelta(days=90), now=later, storage_class="GLACIER"
        )
        assert [a.file_id for a in report.archived] == [old.file_id]
        assert [(s.file_id, why) for s, why in report.skipped] == [
            (draft.file_id, "unpublished: only published or expired versions")
        ]
        again = r.archive([r.file(old.file_id), new], dry_run=True)
        assert [a.file_id for a in again.already] == [old.file_id]
        assert [a.file_id for a in again.archived] == [new.file_id]
        assert r.file(new.file_id).storage_class is None  # a dry run records nothing


@pytest.mark.parametrize("policy", ["warn", "refuse"])
def test_leaving_glacier_ir_early_warns_or_refuses(
    moto_server: Any, sqlite_url: str, tmp_path: Path, policy: str
) -> None:
    config = s3_config(moto_server, sqlite_url, tmp_path, archive_early_deletion=policy)
    with Repo(config) as r:
        f = add(r, "ir/d.txt", b"d")
        r.archive([f], storage_class="GLACIER_IR")
        moved = r.file(f.file_id)
        if policy == "refuse":
            with pytest.raises(StateError, match="early-deletion charges for 1 version"):
                r.archive([moved], storage_class="DEEP_ARCHIVE")
            assert r.file(f.file_id).storage_class == "GLACIER_IR"
            return
        report = r.archive([moved], storage_class="DEEP_ARCHIVE")
        assert [a.storage_class for a in report.archived] == ["DEEP_ARCHIVE"]
        (warning,) = report.warnings
        assert "bills 90 more days of GLACIER_IR storage" in warning


def test_deep_verify_reads_archived_versions_only_when_asked(
    moto_config: dict[str, Any],
) -> None:
    with Repo(moto_config) as r:
        cold = add(r, "v/cold.txt", b"cold")
        warm = add(r, "v/warm.txt", b"warm!")
        r.archive([cold])
        shallow = r.verify()
        assert (shallow.ok, shallow.checked, shallow.archived) == (True, 2, [])
        deep = r.verify(deep=True)
        assert (deep.ok, deep.published.ok, deep.archived_bytes) == (True, 2, 4)
        assert [(f.file_id, f.reason) for f in deep.archived] == [
            (
                cold.file_id,
                "in GLACIER: reading it is a billed retrieval after a `repo thaw`; "
                "checked by HEAD only",
            )
        ]
        asked = r.verify(deep=True, include_archived=True)
        assert [(f.file_id, f.reason) for f in asked.archived] == [
            (
                cold.file_id,
                f"in GLACIER with no restored copy: `repo thaw {cold.file_id}` first; "
                "checked by HEAD only",
            )
        ]
        # No check asked for a restore, nor read the archived object.
        assert [s.status for s in r.thaw_status([r.file(cold.file_id)])] == ["archived"]
        r.archive([warm], storage_class="GLACIER_IR")
        read = r.verify(deep=True, include_archived=True)
        assert [f.file_id for f in read.archived] == [cold.file_id]  # warm was read


@pytest.mark.parametrize("policy", ["warn", "refuse"])
def test_gc_never_purges_an_archived_version_early_without_saying_what_it_costs(
    moto_server: Any, sqlite_url: str, tmp_path: Path, policy: str
) -> None:
    config = s3_config(
        moto_server,
        sqlite_url,
        tmp_path,
        archive_early_deletion=policy,
        expired_ttl_seconds=0,
        backups_before_purge=0,
    )
    with Repo(config) as r:
        old = add(r, "g/x.txt", b"old")
        add(r, "g/x.txt", b"new")  # expires the old one
        r.archive([r.file(old.file_id)], storage_class="DEEP_ARCHIVE")
        soon = datetime.now(UTC) + timedelta(days=10)
        report = r.gc(now=soon)
        if policy == "refuse":
            assert (report.expired.count, report.kept_for_minimum_duration) == (0, 1)
            assert report.early_deletion == []
            assert r.file(old.file_id).storage_class == "DEEP_ARCHIVE"
            later = r.gc(now=datetime.now(UTC) + timedelta(days=181))
            assert (later.expired.count, later.kept_for_minimum_duration) == (1, 0)
            return
        assert (report.expired.count, report.kept_for_minimum_duration) == (1, 0)
        assert report.early_deletion == [
            f"g/x.txt (file {old.file_id}, 3 B in DEEP_ARCHIVE): an early-deletion charge "
            "of 170 more days of DEEP_ARCHIVE storage"
        ]


def test_recover_puts_a_lost_archived_version_back_in_its_class(
    moto_server: Any, moto_config: dict[str, Any]
) -> None:
    with Repo(moto_config) as r:
        f = r.add("rec/y.txt", io.BytesIO(b"cached copy"), publish=True)  # kept in the cache
        r.commit()
        r.archive([f])
        client = moto_server.client()
        try:
            client.delete_object(Bucket=r.store.bucket, Key=f.key)
        finally:
            client.close()
        report = r.recover()
        assert [x.file_id for x in report.recovered] == [f.file_id]
        assert head(moto_server, moto_config, f.key)["StorageClass"] == "GLACIER"
        assert r.verify().ok


@pytest.mark.parametrize("backup", ["after archiving", "before archiving"])
def test_a_deep_restore_check_does_not_read_archived_versions_and_keeps_their_class(
    moto_config: dict[str, Any], backup: str
) -> None:
    """Archived after the backup, a version's class comes back from the journal, and
    its row in the backup names none: the check learns it from the store's refusal."""
    with Repo(moto_config) as r:
        f = add(r, "b/z.txt", b"zzz")
        name = r.backup().name if backup == "before archiving" else None
        r.archive([f])
        archived_at = r.file(f.file_id).archived_at
        name = name or r.backup().name
    report = restore_catalog(moto_config, verify=True, deep=True, force=True)
    assert (report.backup, report.rejected) == (name, [])
    with Repo(moto_config) as r:
        restored = r.file(f.file_id)
        assert (restored.storage_class, restored.archived_at) == ("GLACIER", archived_at)


def test_purging_an_archived_version_early_says_what_it_pays(
    moto_config: dict[str, Any],
) -> None:
    with Repo(moto_config) as r:
        f = add(r, "p/leak.txt", b"secret")
        r.archive([f], storage_class="GLACIER_IR")
        report = r.purge(f.file_id)
        assert [p.file_id for p in report.purged] == [f.file_id]
        assert report.early_deletion == [
            f"p/leak.txt (file {f.file_id}, in GLACIER_IR): an early-deletion charge of "
            "90 more days of GLACIER_IR storage"
        ]


def test_a_server_that_ignores_the_class_is_never_recorded_as_archived(
    rclone_server: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """rclone's S3 server takes the copy, shows the class it was asked for in a HEAD,
    drops the object's metadata and goes on serving the bytes: the check catches it,
    and the object gets its metadata back."""
    config = s3_config(rclone_server, sqlite_url, tmp_path)
    with Repo(config) as r:
        f = add(r, "r/e.txt", b"not archived")
        before = head(rclone_server, config, f.key)
        with pytest.raises(StoreError, match="failed its check") as failed:
            r.archive([f])
        assert "Nothing was recorded; the object was put back as it was" in str(failed.value)
        assert r.file(f.file_id).storage_class is None
        assert head(rclone_server, config, f.key)["Metadata"] == before["Metadata"]
        r.clear_cache()
        assert r.file(f.file_id).read_bytes() == b"not archived"


def test_a_local_store_has_no_archival_classes(embedded_config: dict[str, str]) -> None:
    with Repo(embedded_config) as r:
        f = r.add("l/f.txt", io.BytesIO(b"x"), publish=True)
        r.commit()
        with pytest.raises(UsageError, match="has no archival storage classes") as refused:
            r.archive([f])
        assert refused.value.hint == "archival needs an S3 store (s3://...)"
        with pytest.raises(UsageError, match="has no archival storage classes"):
            r.thaw_status([f])


# -- rules and parsing (no server) ---------------------------------------------------------


def test_early_deletion_days_count_what_is_left_of_the_minimum() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert early_deletion_days("GLACIER", at, at + timedelta(days=10)) == 80
    assert early_deletion_days("DEEP_ARCHIVE", at, at + timedelta(days=10, hours=1)) == 170
    assert early_deletion_days("GLACIER_IR", at, at + timedelta(days=90)) == 0
    assert early_deletion_days(None, at, at) == 0
    assert needs_restore("GLACIER")
    assert needs_restore("DEEP_ARCHIVE")
    assert not needs_restore("GLACIER_IR")
    assert not needs_restore(None)


def test_the_restore_header_is_read_strictly() -> None:
    assert parse_restore(None) == (None, None)
    assert parse_restore('ongoing-request="true"') == (True, None)
    ongoing, until = parse_restore(
        'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"'
    )
    assert (ongoing, until) == (False, datetime(2012, 12, 21, tzinfo=UTC))
    for bad in ('ongoing-request="maybe"', 'ongoing-request="false"', "x; rm -rf /"):
        with pytest.raises(StoreError, match="x-amz-restore"):
            parse_restore(bad)


def test_ages_are_a_number_and_a_unit() -> None:
    assert parse_age("90d") == timedelta(days=90)
    assert parse_age("2w") == timedelta(days=14)
    assert parse_age("36h") == timedelta(hours=36)
    for bad in ("90", "d", "-1d", "1y", "9999999d"):
        with pytest.raises(UsageError, match="not an age"):
            parse_age(bad)
