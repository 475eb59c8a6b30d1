"""``repo expire`` by schedule from the shell: exact lines, dry run, JSON, refusals; and the
one-version form beside it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from conftest import CliRun, write_config
from repo import Repo

if TYPE_CHECKING:
    from pathlib import Path

HOURS = ["2026-11-24T22", "2026-11-24T23", "2026-11-25T08", "2026-11-25T09", "2026-11-25T10"]
SCHEDULE = ("--tag", "hourly-report", "--keep-hourly", "2", "--keep-daily", "2")


@pytest.fixture
def config(embedded_config: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """Five hourly reports (ids 1-5, in `HOURS` order) and a note (id 6)."""
    src = tmp_path / "report.csv"
    src.write_text("a,b\n")
    with Repo(embedded_config) as r:
        for hour in HOURS:
            when = datetime.fromisoformat(hour + ":00+00:00")
            r.add(f"reports/{hour}.csv", src, tags=["hourly-report"], when=when, period="hour",
                  publish=True)  # fmt: skip
        r.add("notes.txt", src, publish=True)
    return dict(embedded_config)


@pytest.fixture
def run(tmp_path: Path, config: dict[str, Any]) -> CliRun:
    return CliRun(write_config(tmp_path / "repo_cfg.json", config), tmp_path)


def _states(config: dict[str, Any]) -> dict[int, str]:
    with Repo(config) as r:
        return {f.file_id: f.state for f in r.list(state="all")}


TABLE = [
    "ACTION  ID  TIME                    FROM                PATH                       KEPT BY",
    "keep    5   2026-11-25T10:00+00:00  hour=2026-11-25T10  reports/2026-11-25T10.csv  "
    "hourly 2026-11-25T10+00:00, daily 2026-11-25",
    "keep    4   2026-11-25T09:00+00:00  hour=2026-11-25T09  reports/2026-11-25T09.csv  "
    "hourly 2026-11-25T09+00:00",
    "expire  3   2026-11-25T08:00+00:00  hour=2026-11-25T08  reports/2026-11-25T08.csv  -",
    "keep    2   2026-11-24T23:00+00:00  hour=2026-11-24T23  reports/2026-11-24T23.csv  "
    "daily 2026-11-24",
    "expire  1   2026-11-24T22:00+00:00  hour=2026-11-24T22  reports/2026-11-24T22.csv  -",
]


def test_a_schedule_says_which_rules_kept_each_version(run: CliRun, config: dict[str, Any]) -> None:
    done = run("expire", *SCHEDULE)

    assert (done.exit_code, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        *TABLE,
        "kept 3 and expired 2 of 5 versions (periods in UTC)",
    ]
    assert _states(config) == {
        1: "expired", 2: "published", 3: "expired", 4: "published", 5: "published", 6: "published"
    }  # fmt: skip
    again = run("expire", *SCHEDULE)
    assert again.stdout.splitlines()[-1] == "kept 3 and expired 0 of 3 versions (periods in UTC)"


def test_a_dry_run_prints_the_same_plan_and_changes_nothing(
    run: CliRun, config: dict[str, Any]
) -> None:
    done = run("expire", *SCHEDULE, "--dry-run")

    assert (done.exit_code, done.stderr) == (0, "")
    would = [
        line.replace("expire  ", "would expire  ", 1) if line.startswith("expire") else line
        for line in TABLE
    ]
    assert [" ".join(line.split()) for line in done.stdout.splitlines()] == [
        *(" ".join(line.split()) for line in would),
        "would keep 3 and expire 2 of 5 versions (periods in UTC); nothing changed",
    ]
    assert set(_states(config).values()) == {"published"}


def test_json_names_the_policy_the_zone_and_each_version(
    run: CliRun, config: dict[str, Any]
) -> None:
    done = run("expire", "--match", "reports/*", "--keep-daily", "1", "--keep-within", "1h",
               "--timezone", "Europe/Berlin", "--json")  # fmt: skip

    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {
        "timezone": "Europe/Berlin",
        "dry_run": False,
        "policy": {"hourly": 0, "daily": 1, "weekly": 0, "monthly": 0, "within_seconds": 3600},
        "kept": [
            {"id": 5, "path": "reports/2026-11-25T10.csv", "time": "2026-11-25T11:00:00+01:00",
             "time_from": "hour=2026-11-25T10", "kept_by": ["daily 2026-11-25", "within 1h"]},
            {"id": 4, "path": "reports/2026-11-25T09.csv", "time": "2026-11-25T10:00:00+01:00",
             "time_from": "hour=2026-11-25T09", "kept_by": ["within 1h"]},
        ],
        "expired": [
            {"id": i, "path": f"reports/{HOURS[i - 1]}.csv", "time": t,
             "time_from": f"hour={HOURS[i - 1]}"}
            for i, t in ((3, "2026-11-25T09:00:00+01:00"), (2, "2026-11-25T00:00:00+01:00"),
                         (1, "2026-11-24T23:00:00+01:00"))
        ],
    }  # fmt: skip
    assert _states(config)[6] == "published"


@pytest.mark.parametrize(
    ("argv", "lines"),
    [
        (
            [],
            ["Error: say what to expire: an ID|PATH, or a schedule",
             "Try: e.g. `repo expire reports/daily.csv` or "
             "`repo expire --tag hourly-report --keep-daily 7`"],
        ),
        (
            ["notes.txt", "--keep-daily", "1"],
            ["Error: give an ID|PATH or a schedule, not both",
             "Try: `repo expire ID|PATH` expires one version; --keep-* options expire by schedule"],
        ),
        (
            ["--path", "--tag", "hourly-report", "--keep-daily", "1"],
            ["Error: --path reads an ID|PATH argument as a path, and none was given",
             "Try: `repo expire --path 2026` expires the path named 2026; a schedule takes no "
             "--path"],
        ),
        (
            ["--tag", "hourly-report", "--dry-run"],
            ["Error: a schedule that keeps nothing would expire every version it selects",
             "Try: say what to keep: --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly "
             "or --keep-within"],
        ),
        (
            ["--keep-weekly", "4"],
            ["Error: say which versions the schedule is for",
             "Try: select them with --tag (e.g. --tag hourly-report) or --match GLOB, or give "
             "--all-paths for every published version"],
        ),
        (
            ["--all-paths", "--keep-daily", "1", "--timezone", "Berlin"],
            ["Error: unknown time zone 'Berlin'",
             "Try: use an IANA name such as 'UTC' or 'Europe/Berlin'"],
        ),
    ],
)  # fmt: skip
def test_a_run_that_names_no_versions_or_keeps_nothing_is_refused(
    run: CliRun, config: dict[str, Any], argv: list[str], lines: list[str]
) -> None:
    done = run("expire", *argv)

    assert done.exit_code == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == lines
    assert set(_states(config).values()) == {"published"}


def test_one_version_is_still_expired_by_its_path(run: CliRun, config: dict[str, Any]) -> None:
    done = run("expire", "notes.txt")

    assert (done.exit_code, done.stdout) == (0, "expired notes.txt (file 6)\n")
    assert _states(config)[6] == "expired"
