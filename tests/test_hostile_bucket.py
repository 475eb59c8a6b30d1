"""Whoever may put objects under the backup prefix must not change what a restore brings
back, nor make retention delete genuine backups; one malformed object must not block
disaster recovery.

Forged, malformed and future-dated objects are written into the bucket next to what
the repository wrote (`data/`, `journal/`, `backups/`), on a directory store and on
moto. With ``backup_key`` configured, manifests and journal entries are sealed and only
sealed ones count; without it, entries of another or no repository are still ignored,
future-dated manifests never drive retention, and malformed objects are skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

import repo
from conftest import CliRun, write_config
from repo import Repo
from repo.paths import new_version_token
from repo.restore import restore_catalog
from test_backup_restore import dir_config, lose_catalog, publish, s3_config

if TYPE_CHECKING:
    from pathlib import Path

KEY = "k" * 16 + "0123456789abcdef0123"  # 36 printable characters


@pytest.fixture(params=["file", pytest.param("moto", marks=pytest.mark.s3)])
def config(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str) -> dict[str, Any]:
    if request.param == "moto":
        return s3_config(request.getfixturevalue("moto_server"), sqlite_url, tmp_path)
    return dir_config(tmp_path, sqlite_url)


def _put(r: Repo, key: str, doc: object) -> None:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    r.backups.store.put_bytes(key, data)


def _forged_entry(
    r: Repo, repository_id: str | None, path: str, data: bytes, *, write: bool = True
) -> dict[str, Any]:
    """A journal entry that would publish `data` at `path` (its object planted too; the
    entry too, unless `write` is false)."""
    store = r.store
    key = f"{store.key_prefix}data/{path}~{new_version_token()}"
    store.put_bytes(key, data)
    now = datetime.now(UTC).isoformat()
    doc = {
        "file_id": 900,
        "path": path,
        "bucket": store.bucket,
        "key": key,
        "state": "published",
        "md5": hashlib.md5(data).hexdigest(),
        "size": len(data),
        "origin": "attacker",
        "verified_with": "etag",
        "tags": [],
        **dict.fromkeys(("created_at", "uploaded_at", "published_at"), now),
        **dict.fromkeys(("expired_at", "purge_started_at")),
    }
    entry: dict[str, Any] = {"format": 1, "committed_at": now, "files": [doc], "paths": []}
    if repository_id is not None:
        entry["repository_id"] = repository_id
    if write:
        ms = int(datetime.now(UTC).timestamp() * 1000) + 5
        _put(r, f"{r.backups.journal_prefix}{ms:013d}-{new_version_token()}.json", entry)
    return entry


def test_forged_journal_entries_are_skipped_and_reported(config: dict[str, Any]) -> None:
    config = {**config, "backup_key": KEY}
    with Repo(config) as r:
        publish(r, "reports/daily.csv", b"genuine")
        r.backup()
        genuine_id = r.session.repository_id
        _forged_entry(r, None, "reports/daily.csv", b"forged, no repository")
        _forged_entry(r, "another-repository", "reports/daily.csv", b"forged, another")
        # A copy of the genuine id, but without the key no valid seal.
        _forged_entry(r, genuine_id, "reports/daily.csv", b"forged, unsigned")
        _put(r, f"{r.backups.journal_prefix}{1:013d}-x.json", b"{}")  # malformed, ancient
        _put(r, f"{r.backups.journal_prefix}9999999999999-y.json", b"{}")  # malformed
        _put(r, f"{r.backups.journal_prefix}9999999999998-z.json", b"\xff not json")
    lose_catalog(config)

    report = restore_catalog(config)

    reasons = [why for _, why in report.skipped_entries]
    assert len(reasons) == 5
    assert sum("another repository, or for none" in w for w in reasons) == 3
    assert sum("seal is missing" in w for w in reasons) == 1
    assert sum("not a JSON object" in w for w in reasons) == 1
    with Repo(config) as r:
        assert r.current("reports/daily.csv").read_bytes() == b"genuine"
    # Unsigned entries from before the key was set are taken only when asked for.
    lose_catalog(config)
    report = restore_catalog(config, accept_unsigned=True)
    with Repo(config) as r:
        assert r.current("reports/daily.csv").read_bytes() == b"forged, unsigned"


def test_a_journal_entry_with_a_wrong_seal_is_never_replayed(config: dict[str, Any]) -> None:
    config = {**config, "backup_key": KEY}
    with Repo(config) as r:
        publish(r, "p.txt", b"genuine")
        r.backup()
        entry = _forged_entry(r, r.session.repository_id, "p.txt", b"forged", write=False)
        entry["mac"] = "0" * 64
        ms = int(datetime.now(UTC).timestamp() * 1000) + 10
        _put(r, f"{r.backups.journal_prefix}{ms:013d}-{new_version_token()}.json", entry)
        publish(r, "q.txt", b"a genuine later commit")  # sealed: replayed
    lose_catalog(config)
    report = restore_catalog(config, accept_unsigned=True)
    assert any("seal is bad" in why for _, why in report.skipped_entries)
    with Repo(config) as r:
        assert r.current("p.txt").read_bytes() == b"genuine"
        assert r.current("q.txt").read_bytes() == b"a genuine later commit"


def _manifest(r: Repo, name: str) -> dict[str, Any]:
    place = r.backups
    data = b"".join(place.store.iter_bytes(f"{place.backups_prefix}{name}/manifest.json"))
    doc: dict[str, Any] = json.loads(data)
    return doc


def _copy_backup(r: Repo, genuine: str, when: datetime, tag: str, data: bytes = b"") -> str:
    """A copy of backup `genuine` dated `when`, with no seal, every checksum recomputed
    (what anyone who may write the prefix can do); with `data`, its files table points
    every version at a new object holding `data`. Returns its name."""
    place = r.backups
    manifest = _manifest(r, genuine)
    name = f"{when:%Y%m%dT%H%M%S%fZ}-{tag}"
    forged_key = f"{r.store.key_prefix}data/p.txt~{new_version_token()}"
    if data:
        r.store.put_bytes(forged_key, data)
    tables = {}
    for table, spec in manifest["tables"].items():
        raw = gzip.decompress(b"".join(place.store.iter_bytes(spec["key"])))
        if data and table == "files" and spec["format"] == "jsonl":
            rows = [json.loads(line) for line in raw.splitlines()]
            for row in rows:
                row |= {"key": forged_key, "md5": hashlib.md5(data).hexdigest(), "size": len(data)}
            raw = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
        key = f"{place.backups_prefix}{name}/{spec['key'].rsplit('/', 1)[1]}"
        place.store.put_bytes(key, gzip.compress(raw))
        tables[table] = {**spec, "key": key, "sha256": hashlib.sha256(raw).hexdigest()}
    forged = {**manifest, "name": name, "tables": tables}
    forged["taken_at"] = forged["completed_at"] = when.isoformat()
    forged.pop("mac", None)
    _put(r, f"{place.backups_prefix}{name}/manifest.json", forged)
    return name


def test_a_forged_newer_backup_is_refused_even_by_a_deep_verify(config: dict[str, Any]) -> None:
    config = {**config, "backup_key": KEY}
    with Repo(config) as r:
        publish(r, "p.txt", b"genuine")
        genuine = r.backup().name
        later = datetime.now(UTC) + timedelta(seconds=1)
        forged = _copy_backup(r, genuine, later, "forgedxx", b"forged!")
    lose_catalog(config)
    report = restore_catalog(config, verify=True, deep=True)
    assert report.backup == genuine
    assert [name for name, _ in report.rejected] == [forged]
    assert "not signed with the backup key" in report.rejected[0][1]
    with Repo(config) as r:
        assert r.current("p.txt").read_bytes() == b"genuine"


def test_malformed_objects_never_block_a_restore(config: dict[str, Any], tmp_path: Path) -> None:
    with Repo(config) as r:
        publish(r, "p.txt", b"genuine")
        genuine = r.backup().name
        place = r.backups
        bad = f"{place.backups_prefix}20990101T000000000000Z-badbadba/manifest.json"
        _put(r, bad, {"format": 1, "name": "20990101T000000000000Z-badbadba", "taken_at": "x"})
        _put(r, f"{place.backups_prefix}20990102T000000000000Z-notjsonx/manifest.json", b"{[")
        _put(r, f"{place.journal_prefix}9999999999999-x.json", b"{}")
        # An object under data/ whose metadata is not ours: no path, bad creation time.
        r.store.put_bytes(
            f"{r.store.key_prefix}data/q.txt~{new_version_token()}",
            b"stray",
            metadata={"repo-path": "q.txt", "repo-created": "not a time"},
        )
        r.store.put_bytes(
            f"{r.store.key_prefix}data/z~{new_version_token()}",
            b"x",
            metadata={"repo-path": "../z"},
        )
    lose_catalog(config)
    cli = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)
    listed = cli("restore", "--list")
    assert listed.exit_code == 0, listed.output
    assert genuine in listed.output

    report = restore_catalog(config)

    assert report.backup == genuine
    assert len(report.skipped_entries) == 1
    assert len(report.adopted) == 1  # q.txt: its path and key agree; ../z does not
    with Repo(config) as r:
        assert r.current("p.txt").read_bytes() == b"genuine"
        (q,) = r.history("q.txt")
        assert q.read_bytes() == b"stray"


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "backup-key"])
def test_forged_manifests_never_make_retention_delete_genuine_backups(
    config: dict[str, Any], key: str | None
) -> None:
    config = {**config, "backup_keep": 1, "backups_before_purge": 0}
    if key is not None:
        config["backup_key"] = key
    with Repo(config) as r:
        publish(r, "p.txt", b"one")
        first = r.backup().name
        for years in (5, 6):  # far-future manifests copying the genuine one (its id too)
            _copy_backup(
                r, first, datetime.now(UTC) + timedelta(days=365 * years), f"future{years:02d}"
            )
        publish(r, "p.txt", b"two")
        journal_before = len(list(r.backups.store.list(r.backups.journal_prefix)))
        taken = r.backup()
        names = {m["name"] for m in r.list_backups()}
        assert taken.name in names  # the backup just taken is never deleted
        # Retention counted genuine backups only: `first` went (backup_keep is 1), the
        # forged ones are not its to judge, and the journal since `first` stays.
        assert taken.deleted_backups == [first]
        journal_after = len(list(r.backups.store.list(r.backups.journal_prefix)))
        assert journal_after >= journal_before
    lose_catalog(config)
    report = restore_catalog(config)
    assert report.backup == taken.name
    with Repo(config) as r:
        assert r.current("p.txt").read_bytes() == b"two"


def test_a_short_backup_key_is_refused_in_one_line(config: dict[str, Any]) -> None:
    with pytest.raises(repo.ConfigError, match="backup_key") as err:
        repo.load_config({**config, "backup_key": "short"})
    assert "short" not in str(err.value)
