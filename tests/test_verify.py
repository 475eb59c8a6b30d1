"""Verify (the store against the catalog) and recover (from a host's cache).

Damage is real: objects are deleted from the store, or replaced by different bytes of
the same size (objects cannot be changed in place on S3, and a replacement is exactly
what a shallow check must notice), or, on the directory store, flipped on disk under an
unchanged checksum record (bit rot: only a deep check sees it). A "host" is a `Repo`
with its own ``host_name`` and ``local_root``; hosts share one catalog and one store.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result

import repo.verify as verify_module
from conftest import StoreTarget, write_config
from repo import Repo, RepoFile
from repo.cli.app import App
from repo.cli.recovery import recover, verify
from repo.errors import NotFoundError
from repo.integrity import normalize_etag
from repo.recover import recover_from_cache
from repo.stores.s3 import S3Store
from repo.verify import verify_store

if TYPE_CHECKING:
    from collections.abc import Mapping

WRITER = "test-host"  # the host_name of the `repo_config` and `local_config` fixtures
MiB = 1024 * 1024


# ----------------------------------------------------------------- helpers


def host_config(config: Mapping[str, Any], tmp_path: Path, name: str) -> dict[str, Any]:
    """`config` as seen from another host: its own name and cache directory."""
    return {**config, "host_name": name, "local_root": str(tmp_path / name)}


def publish(r: Repo, path: str, data: bytes) -> RepoFile:
    f = r.add_file(path).touch(data).publish()
    r.commit()
    return f


def object_bytes(r: Repo, f: RepoFile) -> bytes:
    return b"".join(r.session.locate(f.record).iter_bytes(f.key))


def flipped(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0x01
    return bytes(out)


def replace_object(r: Repo, f: RepoFile, tmp_path: Path) -> None:
    """Put different bytes of the same size at `f`'s key (delete, then create)."""
    store = r.session.locate(f.record)
    bad = tmp_path / f"replacement-{f.file_id}"
    bad.write_bytes(flipped(object_bytes(r, f)))
    store.delete_many([f.key])
    store.put_file(f.key, bad)


def flip_on_disk(path: Path) -> None:
    """Flip a byte of a read-only file in place (its inode, and any checksum record, stay)."""
    path.chmod(0o644)
    path.write_bytes(flipped(path.read_bytes()))
    path.chmod(0o444)


def keys(findings: list[Any]) -> list[str]:
    return [f.key for f in findings]


def use_small_parts(r: Repo, target: StoreTarget) -> S3Store:
    """Make `r` upload anything over 5 MiB in 5 MiB parts (the S3 minimum)."""
    store = S3Store(
        target.url,
        endpoint_url=target.endpoint_url,
        region=target.region,
        access_key=target.access_key,
        secret_key=target.secret_key,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
    )
    r.session.use_store(store)
    return store


s3_only = pytest.mark.parametrize("store_url", ["rclone", "moto"], indirect=True)


# ------------------------------------------------------------------ verify


def test_a_healthy_repository_verifies_ok_shallow_and_deep(
    repo_config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "VERIFY_BATCH", 2)  # pages: 2 + 2 + 1 versions
    with Repo(repo_config) as r:
        for name in ("a", "b", "c"):
            publish(r, f"docs/{name}.txt", f"content of {name}\n".encode())
        publish(r, "docs/a.txt", b"newer a\n")  # the first a is expired now
        r.add_file("docs/draft.txt").touch(b"not published").upload()  # not checked
        r.add_file("docs/never.txt").touch(b"never uploaded").expire()  # no object at all
        r.commit()
        for deep in (False, True):
            report = verify_store(r.session, deep=deep)
            assert report.ok
            assert report.deep is deep
            assert (report.published.checked, report.published.ok) == (3, 3)
            assert (report.expired.checked, report.expired.ok) == (1, 1)
            assert report.missing == report.corrupt == report.size_only == []


def test_a_deep_check_reads_objects_without_filling_the_cache(
    repo_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(repo_config) as writer:
        publish(writer, "x.bin", os.urandom(1000))
    with Repo(host_config(repo_config, tmp_path, "checker")) as r:
        assert verify_store(r.session, deep=True).ok
        assert r.cache.entries() == []


def test_a_deleted_object_is_missing(repo_config: dict[str, str]) -> None:
    with Repo(repo_config) as r:
        kept = publish(r, "kept.txt", b"kept")
        gone = publish(r, "gone.txt", b"gone")
        r.store.delete_many([gone.key])
        for deep in (False, True):
            report = verify_store(r.session, deep=deep)
            assert not report.ok
            assert keys(report.published.missing) == [gone.key]
            assert report.published.missing[0].path == "gone.txt"
            assert report.published.missing[0].reason == "not in the store"
            assert report.corrupt == []
            assert (report.published.checked, report.published.ok) == (2, 1)
        assert kept.read_bytes() == b"kept"


def test_a_deleted_expired_version_is_missing_until_gc_claims_it(
    repo_config: dict[str, str],
) -> None:
    with Repo(repo_config) as r:
        old = publish(r, "p.txt", b"old")
        publish(r, "p.txt", b"new")
        r.store.delete_many([old.key])
        report = verify_store(r.session)
        assert keys(report.expired.missing) == [old.key]
        assert report.published.ok == 1
        # Claimed for purging: its object is going anyway, so it is not checked.
        now = datetime.now(UTC)
        r.catalog.claim_for_purge(
            [old.file_id],
            now=now,
            unpublished_before=now,
            expired_before=now + timedelta(days=1),
        )
        r.commit()
        report = verify_store(r.session)
        assert report.ok
        assert report.expired.checked == 0


def test_a_replaced_object_is_corrupt_by_its_etag_and_by_its_content(
    repo_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(repo_config) as r:
        f = publish(r, "data.bin", os.urandom(5000))
        replace_object(r, f, tmp_path)
        shallow = verify_store(r.session)
        assert keys(shallow.published.corrupt) == [f.key]
        assert shallow.missing == []
        assert shallow.published.corrupt[0].reason.startswith("ETag ")
        assert f"is not the catalog's md5 {f.md5}" in shallow.published.corrupt[0].reason
        deep = verify_store(r.session, deep=True)
        assert keys(deep.published.corrupt) == [f.key]
        assert deep.published.corrupt[0].reason.startswith("the content has md5 ")


def test_a_truncated_object_is_corrupt_by_its_size(local_config: dict[str, str]) -> None:
    with Repo(local_config) as r:
        f = publish(r, "t.txt", b"0123456789")
        path = Path(r.store.bucket) / f.key
        path.chmod(0o644)
        path.write_bytes(b"01234")
        report = verify_store(r.session)
        assert [(c.key, c.reason) for c in report.published.corrupt] == [
            (f.key, "5 bytes in the store, the catalog says 10")
        ]


def test_bit_rot_in_the_directory_store_is_found_by_the_deep_check_only(
    local_config: dict[str, str],
) -> None:
    with Repo(local_config) as r:
        f = publish(r, "rot.bin", os.urandom(4096))
        flip_on_disk(Path(r.store.bucket) / f.key)
        # The store's checksum record (its "ETag") still holds the original md5.
        assert verify_store(r.session).ok
        deep = verify_store(r.session, deep=True)
        assert keys(deep.corrupt) == [f.key]


@s3_only
def test_a_multipart_object_is_checked_by_size_unless_its_etag_is_the_md5(
    repo_config: dict[str, str], store_url: StoreTarget, tmp_path: Path
) -> None:
    with Repo(repo_config) as r:
        store = use_small_parts(r, store_url)
        f = publish(r, "big.bin", os.urandom(6 * MiB))
        etag = normalize_etag(store.head(f.key).etag)
        assert etag is not None
        # moto answers md5(part md5s)-N; rclone's HEAD gives the md5 of the whole body.
        multipart_etag = etag != f.md5
        report = verify_store(r.session)
        assert report.ok
        assert report.published.ok == 1
        assert keys(report.size_only) == ([f.key] if multipart_etag else [])
        if multipart_etag:
            assert report.size_only[0].reason == "multipart ETag; size checked only"
        deep = verify_store(r.session, deep=True)
        assert deep.ok
        assert deep.size_only == []

        replace_object(r, f, tmp_path)  # uploaded multipart again, same size
        report = verify_store(r.session)
        assert report.ok is multipart_etag  # a multipart ETag hides the damage
        assert not verify_store(r.session, deep=True).ok


# ----------------------------------------------------------------- recover


def test_recover_repairs_a_deleted_and_a_corrupt_object_from_another_hosts_cache(
    repo_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(repo_config) as writer:
        lost = publish(writer, "lost.txt", b"the deleted one\n")
        bad = publish(writer, "bad.bin", os.urandom(3000))
        good = bad.read_bytes()
    with Repo(host_config(repo_config, tmp_path, "host-b")) as b:
        assert b.current("lost.txt").read_bytes() == b"the deleted one\n"
        assert b.current("bad.bin").read_bytes() == good
        b.store.delete_many([lost.key])
        replace_object(b, bad, tmp_path)

        report = recover_from_cache(b.session)
        assert keys(report.verify.missing) == [lost.key]
        assert keys(report.verify.corrupt) == [bad.key]
        assert sorted(keys(report.recovered)) == sorted([lost.key, bad.key])
        assert report.ok
        assert not report.still_lost
        assert not report.skipped_bad_cache
        assert not report.dry_run
        assert verify_store(b.session, deep=True).ok
        assert object_bytes(b, lost) == b"the deleted one\n"
        assert object_bytes(b, bad) == good
        meta = b.store.head(lost.key).metadata
        assert meta["repo-path"] == "lost.txt"
        assert meta["repo-origin"] == WRITER
    # A host with nothing cached downloads the repaired objects, verified.
    with Repo(host_config(repo_config, tmp_path, "host-c")) as c:
        assert c.current("lost.txt").read_bytes() == b"the deleted one\n"
        assert c.current("bad.bin").read_bytes() == good


def test_recover_repairs_bit_rot_found_by_a_deep_check(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(local_config) as writer:
        f = publish(writer, "rot.bin", os.urandom(2048))
        good = f.read_bytes()
        flip_on_disk(Path(writer.store.bucket) / f.key)
        assert recover_from_cache(writer.session).verify.ok  # shallow sees nothing to do
        report = recover_from_cache(writer.session, deep=True)
        assert keys(report.recovered) == [f.key]
        assert report.ok
        assert object_bytes(writer, f) == good


def test_recover_without_a_cached_copy_names_the_hosts_that_hold_one(
    repo_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(repo_config) as writer:  # its upload leaves a cached copy here
        f = publish(writer, "only.txt", b"only copy")
    with Repo(host_config(repo_config, tmp_path, "host-b")) as b:
        assert b.current("only.txt").read_bytes() == b"only copy"
    with Repo(host_config(repo_config, tmp_path, "host-c")) as c:
        c.store.delete_many([f.key])
        report = recover_from_cache(c.session)
        assert not report.ok
        assert report.recovered == []
        assert [(x.key, x.path, x.hosts) for x in report.still_lost] == [
            (f.key, "only.txt", ("host-b", WRITER))
        ]
        assert report.still_lost[0].reason == "no copy in this host's cache"
        with pytest.raises(NotFoundError):
            c.store.head(f.key)


def test_a_damaged_cached_copy_is_never_uploaded_and_is_evicted(
    repo_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(repo_config) as writer:
        f = publish(writer, "f.bin", os.urandom(1500))
        writer.clear_cache()
    with Repo(host_config(repo_config, tmp_path, "host-b")) as b:
        b.current("f.bin").read_bytes()
        cached = b.cache.cache_path(f.key)
        flip_on_disk(cached)
        b.store.delete_many([f.key])

        report = recover_from_cache(b.session)
        assert keys(report.skipped_bad_cache) == [f.key]
        assert report.skipped_bad_cache[0].reason.startswith("the cached copy has md5 ")
        assert [(x.key, x.reason, x.hosts) for x in report.still_lost] == [
            (f.key, "this host's cached copy is damaged too", ())
        ]
        assert report.recovered == []
        assert not report.ok
        with pytest.raises(NotFoundError):
            b.store.head(f.key)
        assert not cached.exists()
        assert [h.host for h in b.file(f.file_id).hosts] == []


def test_recover_never_deletes_an_object_whose_content_is_right(
    local_config: dict[str, str],
) -> None:
    """A store whose ETag is not the body's md5 (S3 with SSE-KMS does that) looks corrupt
    to the shallow check; recover reads the content before deleting anything."""
    with Repo(local_config) as r:
        f = publish(r, "fine.bin", os.urandom(700))
        sidecar = Path(r.store.bucket) / ".repo-meta" / f"{f.key}.json"
        doc = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**doc, "md5": "0" * 32}))
        before = os.stat(Path(r.store.bucket) / f.key).st_ino
        report = recover_from_cache(r.session)
        assert keys(report.verify.corrupt) == [f.key]
        assert keys(report.intact) == [f.key]
        assert report.recovered == []
        assert report.ok
        assert os.stat(Path(r.store.bucket) / f.key).st_ino == before  # untouched


def test_recover_dry_run_changes_nothing(repo_config: dict[str, str], tmp_path: Path) -> None:
    with Repo(repo_config) as r:
        lost = publish(r, "lost.txt", b"lost")
        bad = publish(r, "bad.txt", b"bad content")
        r.store.delete_many([lost.key])
        replace_object(r, bad, tmp_path)
        report = recover_from_cache(r.session, dry_run=True)
        assert report.dry_run
        assert report.ok
        assert sorted(keys(report.recovered)) == sorted([lost.key, bad.key])
        after = verify_store(r.session)
        assert keys(after.missing) == [lost.key]
        assert keys(after.corrupt) == [bad.key]


def test_recover_with_nothing_damaged_does_nothing(local_config: dict[str, str]) -> None:
    with Repo(local_config) as r:
        publish(r, "fine.txt", b"fine")
        report = recover_from_cache(r.session)
        assert report.ok
        assert report.verify.ok
        assert not (report.recovered)
        assert not (report.still_lost)
        assert not (report.intact)


# --------------------------------------------------------------------- CLI


def run(command: Any, config_path: Path, *args: str) -> Result:
    """One of this module's commands on its own, as `repo` would run it."""
    return CliRunner().invoke(
        command, list(args), obj=App(config_path=str(config_path)), catch_exceptions=False
    )


@pytest.fixture
def config_file(tmp_path: Path, local_config: dict[str, str]) -> Path:
    return write_config(tmp_path / "repo_cfg.json", local_config)


def test_cli_commands_have_help_with_an_example(config_file: Path) -> None:
    for name, command in (("verify", verify), ("recover", recover)):
        result = run(command, config_file, "--help")
        assert result.exit_code == 0
        assert f"repo {name}" in result.stdout.split("Example", 1)[1]


def test_cli_verify_on_a_healthy_repository(
    config_file: Path, local_config: dict[str, str]
) -> None:
    with Repo(local_config) as r:
        publish(r, "a.txt", b"a")
        publish(r, "a.txt", b"a2")
    result = run(verify, config_file)
    assert result.exit_code == 0
    assert result.stdout == (
        "checked 2 files in the store (shallow: size and ETag)\n"
        "STATE      CHECKED  OK  MISSING  CORRUPT\n"
        "published  1        1   0        0\n"
        "expired    1        1   0        0\n"
    )
    doc = json.loads(run(verify, config_file, "--deep", "--json").stdout)
    assert doc == {
        "deep": True,
        "include_archived": False,
        "archived_bytes": 0,
        "ok": True,
        "published": {
            "checked": 1, "ok": 1, "missing": [], "corrupt": [], "size_only": [], "archived": []
        },
        "expired": {
            "checked": 1, "ok": 1, "missing": [], "corrupt": [], "size_only": [], "archived": []
        },
    }  # fmt: skip


def test_cli_verify_reports_damage_and_exits_1(
    config_file: Path, local_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(local_config) as r:
        gone = publish(r, "gone.txt", b"gone")
        bad = publish(r, "bad.txt", b"bad!")
        r.store.delete_many([gone.key])
        replace_object(r, bad, tmp_path)
        bad_etag = r.store.head(bad.key).etag
    reason = f"ETag {bad_etag} is not the catalog's md5 {bad.md5}"
    result = run(verify, config_file)
    assert result.exit_code == 1
    assert result.stdout == (
        "checked 2 files in the store (shallow: size and ETag)\n"
        "STATE      CHECKED  OK  MISSING  CORRUPT\n"
        "published  2        0   1        1\n"
        "expired    0        0   0        0\n"
        "\n"
        "PROBLEM  ID  PATH      REASON\n"
        f"missing  {gone.file_id}   gone.txt  not in the store\n"
        f"corrupt  {bad.file_id}   bad.txt   {reason}\n"
    )
    assert result.stderr == (
        "Error: 1 missing and 1 corrupt files\n"
        "Try: `repo recover` on a host that has them cached (`repo show PATH` lists the hosts)\n"
    )
    result = run(verify, config_file, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["published"] == {
        "checked": 2,
        "ok": 0,
        "missing": [
            {"id": gone.file_id, "path": "gone.txt", "key": gone.key, "reason": "not in the store"}
        ],
        "corrupt": [{"id": bad.file_id, "path": "bad.txt", "key": bad.key, "reason": reason}],
        "size_only": [],
        "archived": [],
    }


def test_cli_recover_repairs_and_exits_0(config_file: Path, local_config: dict[str, str]) -> None:
    with Repo(local_config) as r:
        f = publish(r, "f.txt", b"content")
        r.store.delete_many([f.key])
    result = run(recover, config_file, "--dry-run")
    assert result.exit_code == 0
    assert result.stdout == (
        "checked 1 files in the store (shallow): 1 missing, 0 corrupt\n"
        "would recover from this host's cache:\n"
        "ID  PATH   WAS\n"
        f"{f.file_id}   f.txt  not in the store\n"
    )
    result = run(recover, config_file, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert list(doc) == [
        "dry_run", "ok", "verify", "recovered", "still_lost", "skipped_bad_cache", "intact",
    ]  # fmt: skip
    assert doc["dry_run"] is False
    assert doc["ok"] is True
    assert doc["recovered"] == [
        {"id": f.file_id, "path": "f.txt", "key": f.key, "reason": "not in the store"}
    ]
    assert doc["verify"]["ok"] is False
    assert len(doc["verify"]["published"]["missing"]) == 1
    assert doc["still_lost"] == doc["skipped_bad_cache"] == doc["intact"] == []
    assert run(verify, config_file).exit_code == 0
    assert run(recover, config_file).stdout.endswith("nothing to recover\n")


def test_cli_recover_exits_1_when_something_is_still_lost(
    tmp_path: Path, local_config: dict[str, str]
) -> None:
    with Repo(local_config) as r:
        f = publish(r, "f.txt", b"content")
        r.store.delete_many([f.key])
    other = write_config(tmp_path / "b.json", host_config(local_config, tmp_path, "host-b"))
    result = run(recover, other)
    assert result.exit_code == 1
    assert result.stdout == (
        "checked 1 files in the store (shallow): 1 missing, 0 corrupt\n"
        "still lost:\n"
        "ID  PATH   HOSTS      REASON\n"
        f"{f.file_id}   f.txt  {WRITER}  no copy in this host's cache\n"
    )
    assert result.stderr.startswith("Error: 1 files are still lost\nTry: `repo recover` on ")
    doc = json.loads(run(recover, other, "--json").stdout)
    assert doc["ok"] is False
    assert doc["still_lost"] == [
        {
            "id": f.file_id,
            "path": "f.txt",
            "key": f.key,
            "reason": "no copy in this host's cache",
            "hosts": [WRITER],
        }
    ]
