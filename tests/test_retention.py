"""The retention rules (`repo.retention`), against a small model written another way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repo.errors import UsageError
from repo.retention import RULES, Dated, KeepPolicy, Plan, period_label, plan, version_time

BERLIN = ZoneInfo("Europe/Berlin")
ZONES = [UTC, BERLIN, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]
START = datetime(2026, 1, 1, tzinfo=UTC)


def _model_label(rule: str, when: datetime, zone: tzinfo) -> str:
    local = when.astimezone(zone)
    return {
        "hourly": local.isoformat(timespec="hours"),
        "daily": local.date().isoformat(),
        "weekly": local.strftime("%G-W%V"),
        "monthly": local.strftime("%Y-%m"),
    }[rule]


def _model(items: list[Dated], policy: KeepPolicy, zone: tzinfo) -> dict[int, list[str]]:
    """Reasons by id: per rule, the newest version of each period, for the N periods whose
    newest versions are newest; within, by distance from the newest version."""
    reasons: dict[int, list[str]] = {i.file_id: [] for i in items}
    for rule in RULES:
        newest_in: dict[str, Dated] = {}
        for item in items:
            label = _model_label(rule, item.time, zone)
            best = newest_in.get(label)
            if best is None or (item.time, item.file_id) > (best.time, best.file_id):
                newest_in[label] = item
        ranked = sorted(newest_in.items(), key=lambda kv: (kv[1].time, kv[1].file_id))
        for label, item in ranked[::-1][: getattr(policy, rule)]:
            reasons[item.file_id].append(f"{rule} {label}")
    if policy.within is not None and items:
        newest = max(i.time for i in items)
        for item in items:
            if newest - item.time <= policy.within:
                reasons[item.file_id].append(f"within {_span(policy.within)}")
    return reasons


def _span(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    units = [(u, n) for u, n in (("d", 86400), ("h", 3600), ("m", 60)) if seconds % n == 0]
    return f"{seconds // units[0][1]}{units[0][0]}" if seconds and units else f"{seconds}s"


def _reasons(result: Plan) -> dict[int, list[str]]:
    return {v.file_id: list(v.reasons) for v in [*result.kept, *result.expired]}


# Quarter hours over ~3 years: enough collisions in every kind of period.
_times = st.integers(min_value=0, max_value=3 * 366 * 24 * 4).map(
    lambda q: START + timedelta(minutes=15 * q)
)
_items = st.lists(_times, max_size=40).map(
    lambda times: [Dated(file_id=n, time=t) for n, t in enumerate(times, 1)]
)
_counts = st.integers(min_value=0, max_value=6)
_policies = st.builds(
    KeepPolicy,
    hourly=_counts,
    daily=_counts,
    weekly=_counts,
    monthly=_counts,
    within=st.none() | st.integers(0, 24 * 90).map(lambda h: timedelta(hours=h)),
)
_zones = st.sampled_from(ZONES)


@settings(max_examples=300, deadline=None)
@given(_items, _policies, _zones)
def test_plan_agrees_with_the_model(items: list[Dated], policy: KeepPolicy, zone: tzinfo) -> None:
    result = plan(items, policy, zone)
    assert _reasons(result) == _model(items, policy, zone)
    assert all(v.reasons for v in result.kept)
    assert not any(v.reasons for v in result.expired)
    newest_first = [(v.time, v.file_id) for v in result.kept]
    assert newest_first == sorted(newest_first, reverse=True)


@settings(max_examples=150, deadline=None)
@given(_items, _policies, _zones)
def test_a_second_run_expires_nothing_more(
    items: list[Dated], policy: KeepPolicy, zone: tzinfo
) -> None:
    first = plan(items, policy, zone)
    again = plan([Dated(v.file_id, v.time) for v in first.kept], policy, zone)
    assert again.expired == []
    assert again.kept == first.kept


@settings(max_examples=150, deadline=None)
@given(_items, _policies, _zones)
def test_each_rule_keeps_at_most_its_count_and_the_newest_is_kept(
    items: list[Dated], policy: KeepPolicy, zone: tzinfo
) -> None:
    result = plan(items, policy, zone)
    for rule in RULES:
        by_rule = [v for v in result.kept if any(r.startswith(rule + " ") for r in v.reasons)]
        assert len(by_rule) <= getattr(policy, rule)
    if items and policy.keeps_anything:
        newest = max(items, key=lambda i: (i.time, i.file_id))
        assert result.kept[0].file_id == newest.file_id
    if not policy.keeps_anything:
        assert result.kept == []


@settings(max_examples=150, deadline=None)
@given(_items, _policies, _zones, st.sampled_from([*RULES, "within"]), st.integers(1, 5))
def test_a_larger_count_never_expires_more(
    items: list[Dated], policy: KeepPolicy, zone: tzinfo, rule: str, more: int
) -> None:
    counts = {r: getattr(policy, r) for r in RULES}
    within = policy.within
    if rule == "within":
        within = (within or timedelta(0)) + timedelta(hours=more)
    else:
        counts[rule] += more
    larger = KeepPolicy(**counts, within=within)
    kept = {v.file_id for v in plan(items, policy, zone).kept}
    assert kept <= {v.file_id for v in plan(items, larger, zone).kept}


def _ids_kept(times: list[datetime], policy: KeepPolicy, zone: tzinfo) -> dict[int, list[str]]:
    items = [Dated(file_id=n, time=t) for n, t in enumerate(times, 1)]
    return {v.file_id: list(v.reasons) for v in plan(items, policy, zone).kept}


def test_days_are_local_calendar_days_across_dst_in_berlin() -> None:
    # 2026-10-25: Berlin goes from +02:00 back to +01:00; that day has 25 hours.
    first_hour = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 on the 25th in Berlin
    last_minute = datetime(2026, 10, 25, 22, 59, tzinfo=UTC)  # 23:59 on the 25th
    day_before = datetime(2026, 10, 24, 21, 59, tzinfo=UTC)  # 23:59 on the 24th
    times = [day_before, first_hour, last_minute]
    assert _ids_kept(times, KeepPolicy(daily=5), BERLIN) == {
        3: ["daily 2026-10-25"],
        1: ["daily 2026-10-24"],
    }
    # In UTC the same three fall on two other days.
    assert _ids_kept(times, KeepPolicy(daily=5), UTC) == {
        3: ["daily 2026-10-25"],
        2: ["daily 2026-10-24"],
    }
    # Spring forward (2026-03-29, 23 hours): 00:30 and 23:30 local are one day.
    spring = [datetime(2026, 3, 28, 23, 30, tzinfo=UTC), datetime(2026, 3, 29, 21, 30, tzinfo=UTC)]
    assert _ids_kept(spring, KeepPolicy(daily=2), BERLIN) == {2: ["daily 2026-03-29"]}


def test_the_hour_repeated_when_clocks_go_back_is_two_hours() -> None:
    summer = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30+02:00 in Berlin
    winter = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30+01:00 in Berlin
    assert _ids_kept([summer, winter], KeepPolicy(hourly=2), BERLIN) == {
        2: ["hourly 2026-10-25T02+01:00"],
        1: ["hourly 2026-10-25T02+02:00"],
    }


def test_iso_weeks_cross_the_year_boundary() -> None:
    times = [
        datetime(2026, 12, 28, 9, tzinfo=UTC),  # Monday of 2026-W53
        datetime(2027, 1, 3, 9, tzinfo=UTC),  # Sunday of 2026-W53
        datetime(2027, 1, 4, 9, tzinfo=UTC),  # Monday of 2027-W01
    ]
    assert _ids_kept(times, KeepPolicy(weekly=3, monthly=3), UTC) == {
        3: ["weekly 2027-W01", "monthly 2027-01"],
        2: ["weekly 2026-W53"],
        1: ["monthly 2026-12"],
    }
    assert period_label("weekly", datetime(2024, 12, 30, tzinfo=UTC), UTC) == "2025-W01"


def test_one_version_counts_for_several_rules_and_within_is_from_the_newest() -> None:
    times = [START, START + timedelta(hours=1), START + timedelta(hours=30)]
    policy = KeepPolicy(hourly=2, daily=1, within=timedelta(hours=29))
    assert _ids_kept(times, policy, UTC) == {
        3: ["hourly 2026-01-02T06+00:00", "daily 2026-01-02", "within 29h"],
        2: ["hourly 2026-01-01T01+00:00", "within 29h"],
    }


def test_a_version_time_is_its_finest_date_tag_else_its_publish_time() -> None:
    published = datetime(2026, 12, 1, 12, tzinfo=UTC)
    tags = ["hourly-report", "hour=2026-11-25T23", "day=2026-11-25", "month=2026-11"]
    when, source = version_time(tags, published, BERLIN)
    assert (when, source) == (datetime(2026, 11, 25, 23, tzinfo=UTC), "hour=2026-11-25T23")
    assert period_label("daily", when, BERLIN) == "2026-11-26"  # 00:00 in Berlin
    # A day tag names the calendar day in the retention zone.
    when, source = version_time(["day=2026-11-25"], published, BERLIN)
    assert (when, source) == (datetime(2026, 11, 24, 23, tzinfo=UTC), "day=2026-11-25")
    assert period_label("daily", when, BERLIN) == "2026-11-25"
    assert version_time(["week=2026-W53"], published, UTC)[0] == datetime(2026, 12, 28, tzinfo=UTC)
    # Of two tags of one kind the later counts; a malformed one is no date tag.
    assert version_time(["day=2026-11-02", "day=2026-11-09"], published, UTC)[1] == "day=2026-11-09"
    for junk in ("day=2026-02-30", "hour=2026-11-25T24", "week=2027-W53", "day=0001-01-01"):
        assert version_time([junk], published, BERLIN) == (published, "published")


def test_bad_policies_and_duplicate_versions_are_refused() -> None:
    with pytest.raises(UsageError, match="keep daily must be a count of zero or more"):
        KeepPolicy(daily=-1)
    with pytest.raises(UsageError, match="keep hourly"):
        KeepPolicy(hourly=True)
    with pytest.raises(UsageError, match="keep within"):
        KeepPolicy(within=timedelta(hours=-1))
    with pytest.raises(UsageError, match="appears twice"):
        plan([Dated(1, START), Dated(1, START)], KeepPolicy(daily=1), UTC)
    huge = KeepPolicy(within=timedelta(days=999_999 * 7))
    assert len(plan([Dated(1, START), Dated(2, START)], huge, UTC).kept) == 2
