"""``repo purge`` from the shell: exact lines, confirmation, dry run, JSON, refusals."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config
from repo import NotFoundError, Repo
from repo.cli.output import file_doc

if TYPE_CHECKING:
    from pathlib import Path

    from repo import RepoFile

SECRET = b"password=hunter2\n"  # 17 bytes


@pytest.fixture
def config(embedded_config: dict[str, str]) -> dict[str, Any]:
    return dict(embedded_config)


@pytest.fixture
def run(tmp_path: Path, config: dict[str, Any]) -> CliRun:
    return CliRun(write_config(tmp_path / "repo_cfg.json", config), tmp_path)


def two_versions(config: dict[str, Any], path: str = "leaked/secret.txt") -> list[RepoFile]:
    """An expired version holding the secret and the published one after it (oldest first)."""
    with Repo(config) as r:
        old = r.add_file(path).touch(SECRET).publish()
        new = r.add_file(path).touch(b"clean\n").publish()
        r.commit()
        return [old.refresh(), new.refresh()]


def ids(config: dict[str, Any], path: str = "leaked/secret.txt") -> list[int]:
    with Repo(config) as r:
        return [f.file_id for f in r.history(path)]


def test_purge_by_id_says_what_went_then_how_much(run: CliRun, config: dict[str, Any]) -> None:
    old, new = two_versions(config)

    done = run("purge", str(old.file_id), "--yes")

    assert (done.exit_code, done.stderr) == (0, "")
    assert done.stdout == (
        f"purged leaked/secret.txt (file {old.file_id}, expired, 17 B)\npurged 1 version (17 B)\n"
    )
    assert ids(config) == [new.file_id]
    with Repo(config) as r, pytest.raises(NotFoundError):
        r.store.head(old.key)


def test_dry_run_lists_every_version_and_changes_nothing(
    run: CliRun, config: dict[str, Any]
) -> None:
    old, new = two_versions(config)

    dry = run("purge", "leaked/secret.txt", "--all-versions", "--dry-run")

    assert (dry.exit_code, dry.stderr) == (0, "")
    assert dry.stdout == (
        f"would purge leaked/secret.txt (file {old.file_id}, expired, 17 B)\n"
        f"would purge leaked/secret.txt (file {new.file_id}, published, 6 B)\n"
        "would purge 2 versions (23 B)\n"
    )
    assert ids(config) == [new.file_id, old.file_id]

    done = run("purge", "leaked/secret.txt", "--all-versions", "--yes")

    assert done.stdout.splitlines()[-1] == "purged 2 versions (23 B)"
    assert ids(config) == []


def test_json_is_one_object_with_each_version_as_it_was(
    run: CliRun, config: dict[str, Any]
) -> None:
    _old, new = two_versions(config)

    done = run("purge", str(new.file_id), "--yes", "--json")

    assert (done.exit_code, done.stderr) == (0, "")
    doc = json.loads(done.stdout)
    assert doc == {"dry_run": False, "purged": [file_doc(new)], "bytes": 6, "early_deletion": []}
    assert doc["purged"][0]["state"] == "published"


def test_off_a_terminal_purge_needs_yes_and_changes_nothing(
    run: CliRun, config: dict[str, Any]
) -> None:
    old, new = two_versions(config)

    refused = run("purge", str(old.file_id), input="y\n")

    assert refused.exit_code == 1
    assert refused.stdout == ""
    assert refused.stderr == (
        "Error: not on a terminal, so nothing can confirm the purge: pass --yes\n"
    )
    assert ids(config) == [new.file_id, old.file_id]


def test_on_a_terminal_purge_lists_what_goes_and_asks(
    run: CliRun, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("repo.cli.prompts.on_terminal", lambda: True)
    old, new = two_versions(config)
    listed = f"will purge leaked/secret.txt (file {old.file_id}, expired, 17 B)"
    question = "Purge 1 version for good? Backups taken before keep their catalog rows [y/N]: "

    declined = run("purge", str(old.file_id), input="n\n")

    assert declined.exit_code == 1
    assert declined.stderr == f"{listed}\n{question}n\nAborted!\n"
    assert ids(config) == [new.file_id, old.file_id]

    accepted = run("purge", str(old.file_id), input="y\n")

    assert accepted.exit_code == 0
    assert accepted.stderr == f"{listed}\n{question}y\n"
    assert accepted.stdout.splitlines()[-1] == "purged 1 version (17 B)"
    assert ids(config) == [new.file_id]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (
            ["99"],
            "Error: no file with id 99\nTry: see the IDs with `repo list --state all`\n",
        ),
        (
            ["nothing/here"],
            "Error: no file at path 'nothing/here'\nTry: see `repo list --state all`\n",
        ),
        (
            ["leaked/secret.txt"],
            "Error: 'leaked/secret.txt' has 2 versions; purge all of them or one by its id\n"
            "Try: pass --all-versions, or an id that `repo history leaked/secret.txt` lists\n",
        ),
    ],
    ids=["unknown-id", "unknown-path", "several-versions"],
)
def test_refusals_are_one_error_and_a_hint_and_change_nothing(
    run: CliRun, config: dict[str, Any], argv: list[str], error: str
) -> None:
    before = [f.file_id for f in two_versions(config)]

    refused = run("purge", *argv, "--yes")

    assert (refused.exit_code, refused.stdout, refused.stderr) == (1, "", error)
    assert sorted(ids(config)) == before


def test_an_all_digit_argument_is_an_id_unless_path_is_given(
    run: CliRun, config: dict[str, Any]
) -> None:
    two_versions(config, "2024")

    as_id = run("purge", "2024", "--all-versions", "--yes")
    as_path = run("purge", "2024", "--path", "--all-versions", "--yes")

    assert as_id.stderr == (
        "Error: --all-versions goes with a path, and 2024 reads as a file id\n"
        "Try: repo purge 2024 --path --all-versions\n"
    )
    assert as_path.stdout.splitlines()[-1] == "purged 2 versions (23 B)"
    assert ids(config, "2024") == []
