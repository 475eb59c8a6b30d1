"""Retention by date: which versions a grandfather-father-son schedule keeps.

Pure rules, no catalog. The schedule follows restic's ``forget``: each ``keep`` count is
an independent bucket (hourly, daily, weekly by ISO week, monthly) that walks the versions
newest first and keeps the newest version of each of its N most recent periods that have
one (periods without a version do not count); one version may be kept by several
buckets; ``within`` keeps every version no older than that span before the newest.

Periods are computed in one explicit time zone, never the host's: a day is a calendar day
there (23 or 25 hours across a DST change), and an hour repeated when clocks go back is
two hours, labelled with their UTC offsets.

A version's time is its finest date tag (`repo.tags`) if it has one, else when it was
published: an ``hour=`` tag is a UTC hour (as date tags are written); a ``day=``,
``week=`` or ``month=`` tag names a calendar period, taken as its first midnight in the
retention zone, so ``day=2026-11-25`` always counts for ``daily 2026-11-25``. Of several
tags of the finest kind the latest counts (the version looks newer: kept, not lost).
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from .errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "RULES",
    "Dated",
    "KeepPolicy",
    "Plan",
    "Verdict",
    "is_time_zone",
    "period_label",
    "plan",
    "span_text",
    "version_time",
]

#: The bucket rules, in the order reasons are given.
RULES = ("hourly", "daily", "weekly", "monthly")

_UNITS = {"hourly": "hours", "daily": "days", "weekly": "ISO weeks", "monthly": "months"}
_HOUR = re.compile(r"hour=([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2})")
_DAY = re.compile(r"day=([0-9]{4})-([0-9]{2})-([0-9]{2})")
_WEEK = re.compile(r"week=([0-9]{4})-W([0-9]{2})")
_MONTH = re.compile(r"month=([0-9]{4})-([0-9]{2})")


@dataclass(frozen=True, kw_only=True, slots=True)
class KeepPolicy:
    """How many periods of each kind to keep a version for, and a span to keep whole."""

    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    #: Keep every version at most this long before the newest one.
    within: timedelta | None = None

    def __post_init__(self) -> None:
        for rule in RULES:
            count = getattr(self, rule)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise UsageError(
                    f"keep {rule} must be a count of zero or more, got {count!r}",
                    hint=f"e.g. 7 keeps the newest version of each of the last 7 {_UNITS[rule]}",
                )
        if self.within is not None and (
            not isinstance(self.within, timedelta) or self.within < timedelta(0)
        ):
            raise UsageError(
                f"keep within must be a duration of zero or more, got {self.within!r}",
                hint="e.g. 7d keeps every version up to 7 days older than the newest",
            )

    @property
    def keeps_anything(self) -> bool:
        return self.within is not None or any(getattr(self, rule) for rule in RULES)


@dataclass(frozen=True, slots=True)
class Dated:
    """One version as the schedule sees it: its id and its time (and where that came from)."""

    file_id: int
    time: datetime
    source: str = "published"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A version and why it is kept (empty `reasons`: it is expired)."""

    file_id: int
    time: datetime
    source: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """The versions kept and those expired, each newest first."""

    kept: list[Verdict]
    expired: list[Verdict]


def is_time_zone(name: object) -> bool:
    """Whether `name` is an IANA time zone this host knows (``UTC``, ``Europe/Berlin``)."""
    try:
        zoneinfo.ZoneInfo(name)  # type: ignore[arg-type]
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return False
    return True


def period_label(rule: str, when: datetime, zone: tzinfo) -> str:
    """The period of `rule` that `when` falls in, in `zone`: ``2026-11-25T18+01:00``,
    ``2026-11-25``, ``2026-W48``, ``2026-11``."""
    local = _aware(when).astimezone(zone)
    ymd = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    if rule == "hourly":
        return f"{ymd}T{local.hour:02d}{_offset(local)}"
    if rule == "daily":
        return ymd
    if rule == "weekly":
        iso = local.isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"
    if rule == "monthly":
        return ymd[:7]
    raise UsageError(f"unknown retention rule {rule!r}", hint="use one of: " + ", ".join(RULES))


def _offset(local: datetime) -> str:
    minutes = int((local.utcoffset() or timedelta(0)).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def span_text(span: timedelta) -> str:
    """A span as `--keep-within` takes it: ``7d``, ``36h``, ``90m``, ``45s``."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def version_time(tags: Iterable[str], published_at: datetime, zone: tzinfo) -> tuple[datetime, str]:
    """When a version counts as made, and why: its finest well-formed date tag (the
    latest of that kind), else `published_at`. Tags are catalog values: one that does
    not parse as a date is no date tag."""
    found: dict[str, list[tuple[datetime, str]]] = {"hour": [], "day": [], "week": [], "month": []}
    for tag in tags:
        parsed = _tag_time(tag, zone)
        if parsed is not None:
            found[tag.split("=", 1)[0]].append((parsed, tag))
    for kind in ("hour", "day", "week", "month"):
        if found[kind]:
            return max(found[kind])
    return _aware(published_at), "published"


#: Date tags outside these years are not believed (and would overflow a time zone).
_FIRST, _LAST = datetime(2, 1, 1, tzinfo=UTC), datetime(9998, 12, 31, tzinfo=UTC)


def _tag_time(tag: str, zone: tzinfo) -> datetime | None:
    when = _tag_start(tag, zone)
    if when is None or not _FIRST <= when <= _LAST:
        return None
    return when.astimezone(UTC)


def _tag_start(tag: str, zone: tzinfo) -> datetime | None:
    try:
        if (m := _HOUR.fullmatch(tag)) is not None:
            y, mo, d, h = (int(g) for g in m.groups())
            return datetime(y, mo, d, h, tzinfo=UTC)
        if (m := _DAY.fullmatch(tag)) is not None:
            y, mo, d = (int(g) for g in m.groups())
            return datetime(y, mo, d, tzinfo=zone)
        if (m := _WEEK.fullmatch(tag)) is not None:
            monday = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
            return datetime(monday.year, monday.month, monday.day, tzinfo=zone)
        if (m := _MONTH.fullmatch(tag)) is not None:
            return datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=zone)
    except ValueError:  # hour 25, day 31 of a 30-day month, week 54, year 0...
        return None
    return None


def plan(items: Iterable[Dated], policy: KeepPolicy, zone: tzinfo) -> Plan:
    """Which of `items` `policy` keeps (each with the rules that keep it) and which it
    expires. Ties in time go to the higher id (the later version)."""
    ordered = sorted(items, key=lambda i: (_aware(i.time), i.file_id), reverse=True)
    if len({i.file_id for i in ordered}) != len(ordered):
        raise UsageError("a version appears twice in a retention plan")
    left = {rule: getattr(policy, rule) for rule in RULES}
    last: dict[str, str | None] = dict.fromkeys(RULES)
    cutoff, within_reason = None, ""
    if ordered and policy.within is not None:
        within_reason = f"within {span_text(policy.within)}"
        try:
            cutoff = _aware(ordered[0].time) - policy.within
        except OverflowError:  # a span longer than the calendar: everything
            cutoff = datetime.min.replace(tzinfo=UTC)
    kept: list[Verdict] = []
    expired: list[Verdict] = []
    for item in ordered:
        when = _aware(item.time)
        reasons = []
        for rule in RULES:
            if left[rule] > 0:
                label = period_label(rule, when, zone)
                if label != last[rule]:
                    last[rule], left[rule] = label, left[rule] - 1
                    reasons.append(f"{rule} {label}")
        if cutoff is not None and when >= cutoff:
            reasons.append(within_reason)
        verdict = Verdict(item.file_id, when, item.source, tuple(reasons))
        (kept if reasons else expired).append(verdict)
    return Plan(kept=kept, expired=expired)
