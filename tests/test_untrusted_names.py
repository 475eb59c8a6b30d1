"""Names from other people on the terminal: paths, tags, origins, host names and local
file names reach the screen only as visible escapes, never as control or format
characters (C0, DEL, C1, bidi controls, zero-width characters); JSON escapes them too.
New paths and tags refuse format characters; names recorded before are still shown,
found and removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import repo
from conftest import CliRun, write_config
from repo.cli.output import echo_json, human_time, shown
from repo.names import check_path_characters

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: Set the window title, ring the bell; a bidi isolate; a C1 control sequence introducer.
PATH = "odd\x1b]0;owned\x07name\u2066\x9b.txt"
ORIGIN = "evil\x1b[2J\u202ehost"
TAG = "team\u202eevil"
HOST = "cache\x1b[31mhost\u200b"
FORMAT_HINT = (
    "Try: leave it out: bidi controls and zero-width characters make a name look like another"
)


def hidden(text: str) -> list[str]:
    """Characters of `text` that act instead of showing (newlines are layout)."""
    return [
        ch
        for ch in text
        if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")
    ]


# ------------------------------------------------------------------ shown, JSON


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("a\x7fb", "a\\x7fb"),
        ("a\x9b31mb", "a\\x9b31mb"),
        ("a\x85b", "a\\x85b"),
        ("line\nbreak\r\ttab", "line\\nbreak\\r\\ttab"),
        ("invoice\u202etxt.exe", "invoice\\u202etxt.exe"),
        ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
        ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),
        ("zero\u200b\u200c\u200d\u200e\u200fwidth", "zero\\u200b\\u200c\\u200d\\u200e\\u200fwidth"),
        ("\ufeffbom", "\\ufeffbom"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("tag\U000e0001", "tag\\U000e0001"),
        ("lone\udc80", "lone\\udc80"),
    ],
    ids=repr,
)
def test_shown_writes_hidden_characters_as_visible_escapes(raw: str, escaped: str) -> None:
    assert shown(raw) == escaped


@pytest.mark.parametrize(
    "text", ["reports/daily.csv", "café/données ß", "日本語/ファイル", "🙂 a\u00a0b", "back\\slash"]
)
def test_shown_leaves_ordinary_text_alone(text: str) -> None:
    assert shown(text) == text


@given(st.text(alphabet=st.characters(exclude_categories=())))
@example("\x1b\u202e\n")
def test_shown_never_lets_a_hidden_character_through(text: str) -> None:
    out = shown(text)
    assert not hidden(out)
    assert "\n" not in out
    if not hidden(text) and "\n" not in text:
        assert out == text


@given(st.text(alphabet=st.characters(exclude_categories=())))
@example(PATH + ORIGIN + TAG + HOST + "\U000e0001")
def test_json_output_escapes_hidden_characters_and_parses_back(text: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()) as captured:
        echo_json({"name": text, "list": [text]})
    out = captured.getvalue()
    assert not hidden(out)
    assert json.loads(out) == {"name": text, "list": [text]}


# ------------------------------------------------- names recorded before the rules


@dataclass
class Hostile:
    cli: CliRun
    repo: repo.Repo
    plain: repo.RepoFile  # published, cached on HOST, tagged TAG
    other: repo.RepoFile  # a later version of plain.txt from ORIGIN
    odd: repo.RepoFile  # at PATH


@pytest.fixture
def hostile(tmp_path: Path, embedded_config: dict[str, str]) -> Iterator[Hostile]:
    """A catalog holding names no version of `repo` accepts today: as an older version,
    another tool or a damaged catalog could have left them."""
    config = embedded_config
    with repo.Repo(config=config) as r:
        plain = r.add("plain.txt", io.BytesIO(b"plain"), publish=True)
        catalog = r.catalog
        odd = catalog.add_file(
            path=PATH,
            bucket=plain.bucket,
            key="odd",
            origin="test-host",
            created_at=plain.created_at,
        )
        other = catalog.add_file(
            path="plain.txt",
            bucket=plain.bucket,
            key="other",
            origin=ORIGIN,
            created_at=plain.created_at,
        )
        catalog.add_tags(plain.file_id, [TAG, "bell\x07tag"])
        catalog.record_copies(HOST, [(plain.file_id, plain.created_at, True)])
        r.commit()
        cli = CliRun(write_config(tmp_path / "repo_cfg.json", config), tmp_path)
        yield Hostile(cli, r, plain, r.file(other.file_id), r.file(odd.file_id))


def test_list_shows_a_hostile_path_escaped(hostile: Hostile) -> None:
    result = hostile.cli("list", "--state", "all")

    assert result.exit_code == 0, result.stderr
    plain, other, odd = hostile.plain, hostile.other, hostile.odd
    assert sorted(result.stdout.splitlines()) == [
        f"{plain.file_id}   published    5 B   {human_time(plain.published_at)}  plain.txt",
        f"{odd.file_id}   unpublished  -     {human_time(odd.created_at)}  "
        "odd\\x1b]0;owned\\x07name\\u2066\\x9b.txt",
        f"{other.file_id}   unpublished  -     {human_time(other.created_at)}  plain.txt",
        "ID  STATE        SIZE  UPDATED (UTC)        PATH",
    ]


def test_list_json_escapes_a_hostile_path_and_keeps_it_exact(hostile: Hostile) -> None:
    result = hostile.cli("list", "--state", "all", "--json")

    assert result.exit_code == 0, result.stderr
    assert not hidden(result.stdout)
    assert '"odd\\u001b]0;owned\\u0007name\\u2066\\u009b.txt"' in result.stdout
    assert '"evil\\u001b[2J\\u202ehost"' in result.stdout
    paths = {f["id"]: (f["path"], f["origin"]) for f in json.loads(result.stdout)["files"]}
    assert paths[hostile.odd.file_id] == (PATH, "test-host")
    assert paths[hostile.other.file_id] == ("plain.txt", ORIGIN)


def test_show_escapes_origins_tags_and_host_names(hostile: Hostile) -> None:
    result = hostile.cli("show", "plain.txt")

    assert result.exit_code == 0, result.stderr
    assert not hidden(result.stdout)
    lines = result.stdout.splitlines()
    assert "  origin     evil\\x1b[2J\\u202ehost" in lines
    assert "  tags       bell\\x07tag, team\\u202eevil" in lines
    assert "  hosts      cache\\x1b[31mhost\\u200b, test-host" in lines


def test_host_list_escapes_a_host_name(hostile: Hostile) -> None:
    result = hostile.cli("host", "list")

    assert result.exit_code == 0, result.stderr
    assert not hidden(result.stdout)
    assert [line.split("  ")[0] for line in result.stdout.splitlines()] == [
        "HOST",
        "cache\\x1b[31mhost\\u200b",
        "test-host",
    ]


def test_a_tag_recorded_with_a_format_character_is_found_and_removed(hostile: Hostile) -> None:
    found = hostile.cli("find", "--all", TAG)
    assert found.exit_code == 0, found.stderr
    assert found.stdout.splitlines()[1].endswith("  plain.txt")

    file_id = hostile.plain.file_id
    removed = hostile.cli("tag", str(file_id), "--remove", TAG)

    assert removed.exit_code == 0, removed.stderr
    assert removed.stdout == f"1 tag(s) removed from plain.txt (file {file_id}): team\\u202eevil\n"
    assert hostile.repo.tags_of([hostile.plain]) == {file_id: ["bell\x07tag"]}


# ------------------------------------------------ new names refuse format characters


def fails(result: Any, *lines: str) -> None:
    """Exit 1 and exactly these stderr lines; nothing on stdout."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == list(lines)
    assert result.stdout == ""


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.txt"
    path.write_bytes(b"content")
    return path


def _nothing_recorded(cli: CliRun) -> bool:
    result = cli("status", "--json")
    return all(s["file_count"] == 0 for s in json.loads(result.stdout)["states"].values())


def test_a_new_tag_with_a_format_character_is_refused(embedded_cli: CliRun, source: Path) -> None:
    fails(
        embedded_cli("add", "a.txt", str(source), "-t", "new\u200btag"),
        "Error: tag 'new\\u200btag' contains format character U+200B (ZERO WIDTH SPACE)",
        FORMAT_HINT,
    )
    assert _nothing_recorded(embedded_cli)
    assert embedded_cli("add", "a.txt", str(source)).exit_code == 0
    fails(
        embedded_cli("tag", "a.txt", "rtl\u202etag"),
        "Error: tag 'rtl\\u202etag' contains format character U+202E (RIGHT-TO-LEFT OVERRIDE)",
        FORMAT_HINT,
    )


def test_a_new_path_with_a_format_character_is_refused(embedded_cli: CliRun, source: Path) -> None:
    fails(
        embedded_cli("add", "invoice\u202etxt.exe", str(source)),
        "Error: path 'invoice\\u202etxt.exe' contains format character U+202E "
        "(RIGHT-TO-LEFT OVERRIDE)",
        FORMAT_HINT,
    )
    assert _nothing_recorded(embedded_cli)


def test_a_tree_holding_a_name_with_a_format_character_adds_nothing(
    embedded_cli: CliRun, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "fine.txt").write_bytes(b"fine")
    (tree / "invoice\u2067txt.exe").write_bytes(b"bad")

    fails(
        embedded_cli("add", str(tree), "--recursive"),
        "Error: path 'invoice\\u2067txt.exe' contains format character U+2067 "
        "(RIGHT-TO-LEFT ISOLATE)",
        FORMAT_HINT,
    )
    assert _nothing_recorded(embedded_cli)


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200b", "\u200d", "\ufeff", "\u00ad"])
def test_check_path_characters_refuses_format_characters(char: str) -> None:
    with pytest.raises(repo.InvalidPathError, match=f"format character U\\+{ord(char):04X}"):
        check_path_characters(f"reports/a{char}b.csv")


@pytest.mark.parametrize("path", ["reports/daily.csv", "café/données.csv", "日本/🙂.txt"])
def test_check_path_characters_accepts_ordinary_paths(path: str) -> None:
    check_path_characters(path)


# ------------------------------------------------- local file names in messages


def test_an_error_naming_a_local_file_shows_it_escaped(
    embedded_cli: CliRun, tmp_path: Path
) -> None:
    gone = tmp_path / "gone\x1b]0;owned\x07"
    fails(
        embedded_cli("add", str(gone), "--recursive"),
        f"Error: no such directory: {tmp_path}/gone\\x1b]0;owned\\x07",
    )


def test_a_warning_naming_a_link_shows_it_escaped(embedded_cli: CliRun, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "own.txt").write_bytes(b"own")
    (tree / "link\x1b[2J\u202e").symlink_to(tree / "own.txt")

    result = embedded_cli("add", str(tree), "--recursive")

    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"Warning: skipped symbolic link {tree}/link\\x1b[2J\\u202e",
        "Try: --follow-symlinks to add what they point to",
    ]


def test_log_lines_show_names_escaped(embedded_cli: CliRun, tmp_path: Path) -> None:
    tree = tmp_path / "out\x1b]0;owned\x07"
    tree.mkdir()
    (tree / "own.txt").write_bytes(b"own")
    (tree / "link").symlink_to(tree / "own.txt")

    result = embedded_cli("-v", "add", str(tree), "--recursive")

    assert result.exit_code == 0, result.stderr
    assert not hidden(result.stderr)
    assert (
        f"INFO repo.ingest: not following 1 symbolic links under {tmp_path}/out\\x1b]0;owned\\x07"
        in result.stderr.splitlines()
    )
