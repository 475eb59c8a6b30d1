"""File permissions: each version records its permission bits when added (`--mode`
overrides), copies written out get them less the reader's umask, cached copies stay
read-only, and a mode read from the catalog or the change journal is checked like input.
"""

from __future__ import annotations

import io
import json
import os
import stat
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.exc import IntegrityError

from repo import Repo, UsageError
from repo.catalog.schema import files
from repo.paths import new_version_token
from repo.permissions import check_mode, mode_of, parse_mode, show_mode, written_mode
from repo.restore import restore_catalog
from test_backup_restore import lose_catalog
from test_hostile_bucket import _forged_entry

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from conftest import CliRun


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _file(directory: Path, name: str, data: bytes, mode: int) -> Path:
    path = directory / name
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _bits(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- pure functions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [("0640", 0o640), ("640", 0o640), ("0o755", 0o755), ("0O600", 0o600), (" 0644 ", 0o644)],
)
def test_parse_mode_reads_octal_permission_bits(given: str, expected: int) -> None:
    assert parse_mode(given) == expected


@pytest.mark.parametrize("given", ["", "rw-r-----", "0648", "99", "12345", "0o", "-644"])
def test_parse_mode_refuses_what_is_no_octal_permission(given: str) -> None:
    with pytest.raises(UsageError, match="not an octal permission") as err:
        parse_mode(given)
    assert err.value.hint


@pytest.mark.parametrize("given", ["4755", "2770", "1777", "7777"])
def test_parse_mode_refuses_setuid_setgid_and_sticky_bits(given: str) -> None:
    with pytest.raises(UsageError, match="setuid, setgid or sticky"):
        parse_mode(given)


@pytest.mark.parametrize("value", [-1, 0o1000, 0o4755, "0640", 6.4, True, None])
def test_check_mode_refuses_anything_but_nine_permission_bits(value: object) -> None:
    with pytest.raises(UsageError):
        check_mode(value)


def test_written_mode_takes_the_umask_off_the_recorded_bits() -> None:
    assert written_mode(0o640, 0o022) == 0o640
    assert written_mode(0o666, 0o022) == 0o644
    assert written_mode(0o755, 0o027) == 0o750
    assert written_mode(0o600, 0o000) == 0o600
    assert written_mode(None, 0o022) == 0o644  # as any new file
    with pytest.raises(UsageError):
        written_mode(0o4755, 0o022)
    assert (show_mode(0o640), show_mode(0o7), show_mode(None)) == ("0640", "0007", "-")


def test_mode_of_drops_special_bits(tmp_path: Path) -> None:
    path = _file(tmp_path, "x", b"", 0o755)
    os.chmod(path, 0o2755)  # noqa: S103 - setgid, as root may
    assert mode_of(path.stat()) == 0o755


# -- through the repository ------------------------------------------------------------


def test_modes_round_trip_through_add_and_get(
    local_config: dict[str, str], tmp_path: Path, umask_022: None
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    private = _file(src, "private.csv", b"a,b\n", 0o640)
    script = _file(src, "run.sh", b"#!/bin/sh\n", 0o755)
    with Repo(local_config) as r:
        assert r.add("private.csv", private, publish=True).mode == 0o640
        assert r.add("run.sh", script, publish=True).mode == 0o755
        assert r.add("secret.csv", private, publish=True, mode=0o600).mode == 0o600
        # A stream has no mode of its own; a cached copy (--cache) keeps the source's.
        assert r.add("stdin.txt", io.BytesIO(b"x"), publish=True).mode is None
        assert r.add("kept.csv", private, publish=True, keep_cached=True).mode == 0o640
        r.commit()
    with Repo(local_config) as r:  # read back from the catalog
        for path, expected in [
            ("private.csv", 0o640),
            ("run.sh", 0o755),
            ("secret.csv", 0o600),
            ("stdin.txt", 0o644),  # a new file's 0666 less the umask
            ("kept.csv", 0o640),
        ]:
            written = r.current(path).save_as(out / path)
            assert _bits(written) == expected, path
        # Cached copies stay read-only whatever the version's mode.
        cached = r.current("run.sh").local_path
        assert _bits(cached) & 0o222 == 0
        assert _bits(r.current("kept.csv").local_path) & 0o222 == 0
    with Repo(local_config) as r:
        with pytest.raises(UsageError):
            r.add("bad.csv", private, mode=0o4755)
        assert r.get_file("bad.csv") is None


def test_the_reader_umask_is_taken_off_and_fetch_applies_modes_too(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    _file(src, "open.txt", b"o", 0o666)
    _file(src, "bin/tool", b"t", 0o775)
    _file(src, "closed.txt", b"c", 0o600)
    with Repo(local_config) as r:
        report = r.add_tree(src, prefix="t", publish=True)
        assert {f.path: f.mode for f in report.files} == {
            "t/open.txt": 0o666,
            "t/bin/tool": 0o775,
            "t/closed.txt": 0o600,
        }
        forced = r.add_tree(src, prefix="u", publish=True, mode=0o640)
        assert {f.mode for f in forced.files} == {0o640}
        r.commit()
    old = os.umask(0o027)
    try:
        with Repo(local_config) as r:
            r.fetch(r.list("t/*"), dest=tmp_path / "out")
    finally:
        os.umask(old)
    out = tmp_path / "out" / "t"
    assert _bits(out / "open.txt") == 0o640
    assert _bits(out / "bin" / "tool") == 0o750
    assert _bits(out / "closed.txt") == 0o600


def test_cli_add_mode_show_and_get(embedded_cli: CliRun, tmp_path: Path, umask_022: None) -> None:
    cli = embedded_cli
    data = _file(tmp_path, "d.csv", b"1,2\n", 0o644)
    result = cli("add", str(data), "--as", "d.csv", "--mode", "0640", "--publish")
    assert result.exit_code == 0, result.output
    show = cli("show", "d.csv", "--json")
    assert json.loads(show.output)["versions"][0]["mode"] == "0640"
    assert "  mode       0640\n" in cli("show", "d.csv").output
    assert cli("get", "d.csv", "-o", str(tmp_path / "got.csv")).exit_code == 0
    assert _bits(tmp_path / "got.csv") == 0o640
    bad = cli("add", str(data), "--as", "e.csv", "--mode", "4755")
    assert bad.exit_code == 2
    assert "Invalid value for '--mode': mode '4755' sets setuid" in bad.output


def test_a_mode_planted_in_the_catalog_is_refused_by_the_database(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    data = _file(tmp_path, "d", b"d", 0o644)
    with Repo(local_config) as r:
        file_id = r.add("d", data, publish=True).file_id
        r.commit()
    engine = create_engine(local_config["database"])
    try:
        for planted in (0o4755, -1, 512):
            with pytest.raises(IntegrityError, match=r"(?i)check"), engine.begin() as conn:
                conn.execute(update(files).where(files.c.file_id == file_id).values(mode=planted))
        with pytest.raises(IntegrityError, match=r"(?i)check"), engine.begin() as conn:
            conn.execute(text("UPDATE files SET storage_class = 'STANDARD'"))
    finally:
        engine.dispose()


def test_modes_survive_a_restore_and_a_forged_mode_is_never_replayed(
    embedded_config: dict[str, Any], tmp_path: Path, umask_022: None
) -> None:
    config = embedded_config
    with Repo(config) as r:
        r.add("in-backup", _file(tmp_path, "a", b"a", 0o600), publish=True)
        r.commit()
        r.backup()
        r.add("in-journal", _file(tmp_path, "b", b"b", 0o750), publish=True)
        r.commit()
        forged = _forged_entry(r, r.session.repository_id, "setuid", b"x", write=False)
        forged["files"][0]["mode"] = 0o4755
        ms = int(datetime.now(UTC).timestamp() * 1000) + 5
        key = f"{r.backups.journal_prefix}{ms:013d}-{new_version_token()}.json"
        r.backups.store.put_bytes(key, json.dumps(forged).encode())
    lose_catalog(config)
    report = restore_catalog(config)
    assert any("mode" in why for _, why in report.skipped_entries), report.skipped_entries
    with Repo(config) as r:
        assert r.current("in-backup").mode == 0o600
        assert r.current("in-journal").mode == 0o750
        assert r.get_file("setuid") is None
        assert _bits(r.current("in-journal").save_as(tmp_path / "out")) == 0o750
