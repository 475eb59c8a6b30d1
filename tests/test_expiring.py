"""`Repo.expire_by_schedule`: retention by date on a real catalog (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from conftest import dir_store_config
from repo import InvalidTagError, Repo, UsageError
from repo.journal import read_entries

if TYPE_CHECKING:
    from pathlib import Path

HOURS = ["2026-11-24T22", "2026-11-24T23", "2026-11-25T08", "2026-11-25T09", "2026-11-25T10"]


def _hourly_reports(r: Repo, tmp_path: Path) -> dict[str, int]:
    """One published report per hour of `HOURS`, tagged and date-tagged; ids by hour."""
    src = tmp_path / "report.csv"
    src.write_text("a,b\n")
    ids = {}
    for hour in HOURS:
        when = datetime.fromisoformat(hour + ":00+00:00")
        f = r.add(f"reports/{hour}.csv", src, tags=["hourly-report"], when=when, period="hour",
                  publish=True)  # fmt: skip
        ids[hour] = f.file_id
    r.commit()
    return ids


def _journal(r: Repo) -> list[dict[str, Any]]:
    return [e for _, e in read_entries(r.backups, datetime(2000, 1, 1, tzinfo=UTC)) if e]


def test_a_schedule_keeps_the_newest_per_period_and_expires_the_rest_in_one_commit(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(local_config) as r:
        ids = _hourly_reports(r, tmp_path)
        other = r.add("notes.txt", tmp_path / "report.csv", publish=True)
        r.commit()
        entries = len(_journal(r))

        report = r.expire_by_schedule(keep_hourly=2, keep_daily=2, tags=["hourly-report"])
        r.commit()

        assert report.timezone == "UTC"
        assert not report.dry_run
        assert [(s.file.file_id, s.reasons) for s in report.kept] == [
            (ids["2026-11-25T10"], ("hourly 2026-11-25T10+00:00", "daily 2026-11-25")),
            (ids["2026-11-25T09"], ("hourly 2026-11-25T09+00:00",)),
            (ids["2026-11-24T23"], ("daily 2026-11-24",)),
        ]
        gone = [ids["2026-11-25T08"], ids["2026-11-24T22"]]
        assert [s.file.file_id for s in report.expired] == gone
        assert [s.file.state for s in report.expired] == ["expired", "expired"]
        assert report.kept[0].time_from == "hour=2026-11-25T10"
        assert report.kept[0].time == datetime(2026, 11, 25, 10, tzinfo=UTC)
        # One commit, one journal entry, which records the expiry.
        new = _journal(r)[entries:]
        assert len(new) == 1
        assert {d["file_id"]: d["state"] for d in new[0]["files"]} == dict.fromkeys(gone, "expired")

    with Repo(local_config) as r:
        states = {f.file_id: f.state for f in r.list(state="all")}
        assert sorted(i for i, s in states.items() if s == "expired") == sorted(gone)
        assert states[other.file_id] == "published"
        again = r.expire_by_schedule(keep_hourly=2, keep_daily=2, tags=["hourly-report"])
        assert again.expired == []
        assert [s.reasons for s in again.kept] == [s.reasons for s in report.kept]


def test_a_dry_run_reports_the_same_plan_and_changes_nothing(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(local_config) as r:
        _hourly_reports(r, tmp_path)
        entries = len(_journal(r))
        dry = r.expire_by_schedule(keep_daily=1, keep_within="1h", tags=["hourly-report"],
                                   dry_run=True)  # fmt: skip
        r.commit()
        assert dry.dry_run
        assert len(_journal(r)) == entries
        assert r.count(all=["hourly-report"]) == len(HOURS)
        assert all(s.file.state == "published" for s in dry.expired)
        real = r.expire_by_schedule(keep_daily=1, keep_within="1h", tags=["hourly-report"])
        assert [(s.file.file_id, s.reasons) for s in real.kept] == [
            (s.file.file_id, s.reasons) for s in dry.kept
        ]
        assert [s.file.file_id for s in real.expired] == [s.file.file_id for s in dry.expired]
        assert [s.reasons for s in real.kept] == [("daily 2026-11-25", "within 1h"), ("within 1h",)]


def test_without_a_date_tag_the_publish_time_places_a_version(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    src = tmp_path / "dump.sql"
    src.write_text("--\n")
    with Repo(local_config) as r:
        tagged = r.add("dumps/old.sql", src, tags=["dump"], when=date(2026, 11, 20),
                       publish=True)  # fmt: skip
        first = r.add("dumps/a.sql", src, tags=["dump"], publish=True)
        second = r.add("dumps/b.sql", src, tags=["dump"], publish=True)
        r.commit()
        report = r.expire_by_schedule(keep_daily=2, tags=["dump"])

        assert [s.file.file_id for s in report.kept] == [second.file_id, tagged.file_id]
        assert [s.file.file_id for s in report.expired] == [first.file_id]
        assert report.kept[0].time_from == "published"
        assert report.kept[0].time == second.published_at
        assert report.kept[1].time_from == "day=2026-11-20"
        assert report.kept[1].reasons == ("daily 2026-11-20",)


def test_periods_count_in_the_configured_time_zone(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo({**local_config, "retention_timezone": "Europe/Berlin"}) as r:
        ids = _hourly_reports(r, tmp_path)
        report = r.expire_by_schedule(keep_daily=3, pattern="reports/*", dry_run=True)
        # 23:00 UTC on the 24th is midnight in Berlin: the 25th.
        assert report.timezone == "Europe/Berlin"
        assert [(s.file.file_id, s.reasons) for s in report.kept] == [
            (ids["2026-11-25T10"], ("daily 2026-11-25",)),
            (ids["2026-11-24T22"], ("daily 2026-11-24",)),
        ]
        assert report.kept[0].time.utcoffset() == timedelta(hours=1)
        in_utc = r.expire_by_schedule(keep_daily=3, all_paths=True, timezone="UTC", dry_run=True)
        assert [s.reasons for s in in_utc.kept] == [("daily 2026-11-25",), ("daily 2026-11-24",)]
        assert in_utc.kept[1].file.file_id == ids["2026-11-24T23"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tags": ["t"]}, "a schedule that keeps nothing"),
        ({"keep_daily": 0, "keep_hourly": 0, "all_paths": True}, "a schedule that keeps nothing"),
        ({"keep_daily": 1}, "say which versions the schedule is for"),
        ({"keep_daily": 1, "all_paths": True, "tags": ["t"]}, "takes no --tag or --match"),
        ({"keep_daily": 1, "all_paths": True, "timezone": "Mars/Base"}, "unknown time zone"),
        ({"keep_daily": -1, "all_paths": True}, "keep daily must be a count of zero or more"),
        ({"keep_within": "a week", "all_paths": True}, "not an age"),
    ],
)
def test_schedules_that_would_expire_everything_or_nothing_named_are_refused(
    embedded_config: dict[str, str], kwargs: dict[str, Any], message: str
) -> None:
    with Repo(embedded_config) as r:
        f = r.add_file("keep.txt")
        f.touch("x")
        f.publish()
        r.commit()
        with pytest.raises(UsageError, match=message) as caught:
            r.expire_by_schedule(**kwargs)
        assert caught.value.hint
        with pytest.raises(InvalidTagError, match="got a single string"):
            r.expire_by_schedule(keep_daily=1, tags="keep")  # type: ignore[arg-type]
        assert r.current("keep.txt").state == "published"


def test_expiring_many_skips_versions_expired_already_and_journals_the_rest(
    local_config: dict[str, str], tmp_path: Path
) -> None:
    with Repo(local_config) as r:
        ids = _hourly_reports(r, tmp_path)
        first, second = ids["2026-11-24T22"], ids["2026-11-24T23"]
        r.file(first).expire()
        r.commit()
        entries = len(_journal(r))
        when = datetime(2026, 12, 1, tzinfo=UTC)

        gone = r.catalog.expire_many([second, first, second], when=when)
        r.commit()

        assert [(g.file_id, g.state, g.expired_at) for g in gone] == [(second, "expired", when)]
        assert r.file(first).expired_at != when
        assert [[d["file_id"] for d in e["files"]] for e in _journal(r)[entries:]] == [[second]]
        assert r.find(all=["hourly-report"], pattern="reports/2026-11-24*") == []


def test_a_publisher_of_a_path_being_expired_waits_for_the_schedule_then_publishes(
    pg_url: str, tmp_path: Path
) -> None:
    config = dir_store_config(tmp_path, pg_url)
    with Repo(config) as r:
        ids = _hourly_reports(r, tmp_path)
        (tmp_path / "again.csv").write_text("again\n")
        newer = r.add("reports/2026-11-24T22.csv", tmp_path / "again.csv").file_id
    published = threading.Event()
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            with Repo(config) as other:
                other.file(newer).publish()
            published.set()
        except BaseException as exc:  # reported to the test
            errors.append(exc)

    with Repo(config) as r:
        report = r.expire_by_schedule(keep_daily=1, tags=["hourly-report"])
        assert ids["2026-11-24T22"] in [s.file.file_id for s in report.expired]
        worker = threading.Thread(target=publish)
        worker.start()
        assert not published.wait(0.5)  # the schedule holds the path until it commits
    worker.join(timeout=60)

    assert errors == []
    assert published.is_set()
    with Repo(config) as r:
        history = [(v.file_id, v.state) for v in r.history("reports/2026-11-24T22.csv")]
        assert history == [(newer, "published"), (ids["2026-11-24T22"], "expired")]
