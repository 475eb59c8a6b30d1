"""`repo add FILE...`: local files first, each under a name derived from it, as copy tools
do; never one file's bytes under another file's name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import repo
from conftest import CliRun, write_config
from repo.sources import derived_path

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("source", "prefix", "expected"),
    [
        ("daily.csv", "", "daily.csv"),
        ("./daily.csv", "", "daily.csv"),
        ("out/./a.csv", "", "out/a.csv"),
        ("out/../a.csv", "", "a.csv"),
        ("../elsewhere/a.csv", "", "a.csv"),
        ("/abs/dir/a.csv", "", "a.csv"),
        ("a.csv", "reports", "reports/a.csv"),
        ("./a.csv", "reports/", "reports/a.csv"),
        ("/abs/a.csv", "/reports/2026/", "reports/2026/a.csv"),
    ],
)
def test_a_files_repository_path_is_derived_from_it(
    source: str, prefix: str, expected: str
) -> None:
    assert derived_path(source, prefix) == expected


@pytest.fixture
def here(
    tmp_path: Path, embedded_config: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[CliRun, Path]:
    """The command, run in a directory holding a.txt, b.txt and daily.csv."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_bytes(b"content of a\n")
    (work / "b.txt").write_bytes(b"content of b\n")
    (work / "daily.csv").write_bytes(b"day,1\n")
    (work / "sub").mkdir()
    monkeypatch.chdir(work)  # relative names, and globs, are read here
    run = CliRun(write_config(tmp_path / "cfg.json", embedded_config), work)
    return run, work


def _contents(config: dict[str, str]) -> dict[str, bytes]:
    with repo.Repo(config) as r:
        return {f.path: f.read_bytes() for f in r.list("*", state="unpublished")}


def _out(result: object) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    out: str = result.stdout  # type: ignore[attr-defined]
    return out


def test_several_files_are_each_stored_under_their_own_name(
    here: tuple[CliRun, Path], embedded_config: dict[str, str]
) -> None:
    run, _ = here
    assert _out(run("add", "a.txt", "b.txt")) == (
        "added a.txt (file 1, 13 B, unpublished)\nadded b.txt (file 2, 13 B, unpublished)\n"
    )
    assert _contents(embedded_config) == {"a.txt": b"content of a\n", "b.txt": b"content of b\n"}


def test_dot_slash_and_prefix_and_as(
    here: tuple[CliRun, Path], embedded_config: dict[str, str]
) -> None:
    run, _ = here
    assert _out(run("add", "./daily.csv")) == (
        "added daily.csv from ./daily.csv (file 1, 6 B, unpublished)\n"
    )
    assert _out(run("add", "a.txt", "b.txt", "--prefix", "docs/")) == (
        "added docs/a.txt from a.txt (file 2, 13 B, unpublished)\n"
        "added docs/b.txt from b.txt (file 3, 13 B, unpublished)\n"
    )
    assert _out(run("add", "a.txt", "--as", "notes/first.txt")) == (
        "added notes/first.txt (file 4, 13 B, unpublished)\n"
    )
    assert _out(run("add", "-", "--as", "logs/job.log", input=b"from stdin\n")) == (
        "added logs/job.log (file 5, 11 B, unpublished)\n"
    )
    assert _out(run("add", "a.txt", "--as", "./notes/second.txt")) == (
        "added notes/second.txt (file 6, 13 B, unpublished)\n"
    )
    got = _contents(embedded_config)
    assert got["daily.csv"] == b"day,1\n"
    assert got["docs/b.txt"] == b"content of b\n"
    assert got["notes/first.txt"] == b"content of a\n"
    assert got["logs/job.log"] == b"from stdin\n"


def test_a_dot_slash_path_argument_names_the_repository_path(
    here: tuple[CliRun, Path],
) -> None:
    run, _ = here
    run("add", "./daily.csv", "--publish")
    shown = run("show", "./daily.csv")
    assert (shown.exit_code, shown.stdout.splitlines()[0]) == (0, "daily.csv")
    assert run("cat", "./daily.csv").stdout == "day,1\n"
    # Other '.' segments are still refused, saying what a repository path looks like.
    refused = run("cat", "docs/./daily.csv")
    assert (refused.exit_code, refused.stderr) == (
        1,
        "Error: path 'docs/./daily.csv' has a '.' segment\n"
        "Try: repository paths are plain names from the top, such as 'reports/a.csv'\n",
    )


def test_the_seeds_spelling_still_works_where_it_is_unambiguous(
    here: tuple[CliRun, Path], embedded_config: dict[str, str]
) -> None:
    run, _ = here
    # reports/daily.csv is no local file: the repository path comes first, as in the seed.
    assert _out(run("add", "reports/daily.csv", "daily.csv")) == (
        "added reports/daily.csv (file 1, 6 B, unpublished)\n"
    )
    assert _out(run("add", "logs/x.log", "-", input=b"x")) == (
        "added logs/x.log (file 2, 1 B, unpublished)\n"
    )
    assert _contents(embedded_config)["reports/daily.csv"] == b"day,1\n"


@pytest.mark.parametrize(
    ("argv", "lines"),
    [
        (
            ["-"],
            [
                "Error: - (standard input) needs a name",
                "Try: some-job | repo add - --as logs/job.log",
            ],
        ),
        (
            ["a.txt", "b.txt", "--as", "x"],
            [
                "Error: --as names one file, and 2 were given",
                "Try: drop --as to store each under its own name, or use --prefix",
            ],
        ),
        (
            ["a.txt", "./a.txt"],
            [
                "Error: a.txt and ./a.txt would both be stored as a.txt",
                "Try: add them one at a time with --as NAME, or under different --prefix",
            ],
        ),
        (
            ["sub"],
            ["Error: sub is a directory", "Try: add what it holds with: repo add --recursive sub"],
        ),
        (
            ["a.txt", "reports/nope.txt"],
            [
                "Error: local file not found: reports/nope.txt",
                "Try: to store a.txt as reports/nope.txt: repo add a.txt --as reports/nope.txt",
            ],
        ),
        (
            ["a.txt", "b.txt", "nope.txt"],
            [
                "Error: local file not found: nope.txt",
                "Try: repo add takes local files first: repo add FILE... [--as NAME | --prefix P]",
            ],
        ),
    ],
)
def test_what_could_store_the_wrong_bytes_is_refused_with_a_hint(
    here: tuple[CliRun, Path], embedded_config: dict[str, str], argv: list[str], lines: list[str]
) -> None:
    run, _ = here
    result = run("add", *argv)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == lines
    assert _contents(embedded_config) == {}
