"""Expiring published versions beyond a retention schedule (`repo.retention`).

Each publish of a path expires the path's previous version, so a path has one published
version at a time: a schedule applies across the paths it selects (by tags, a glob, or
every path), e.g. one file per hour ``reports/2026-11-25T10.csv`` tagged
``hourly-report``. The versions are read once; those the schedule does not keep are
expired through the catalog's `expire_many` (so the change journal records them) in
the session's open transaction: nothing is visible to others until the caller commits.
"""

from __future__ import annotations

import logging
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .errors import UsageError
from .file import RepoFile
from .lookup import find, tags_of
from .retention import Dated, KeepPolicy, Verdict, plan, version_time
from .tags import validate_tags
from .units import parse_age

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .session import Session

__all__ = ["ScheduleReport", "Scheduled", "expire_by_schedule", "retention_zone"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A version as the schedule placed it: its time in the retention zone (and where
    that came from: a date tag or ``published``) and the rules that keep it (none: it
    is expired)."""

    file: RepoFile
    time: datetime
    time_from: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScheduleReport:
    """What a schedule kept and expired (or would, with `dry_run`), each newest first."""

    timezone: str
    policy: KeepPolicy
    dry_run: bool
    kept: list[Scheduled]
    expired: list[Scheduled]


def retention_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone `name`, or `UsageError`."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise UsageError(
            f"unknown time zone {str(name)[:60]!r}",
            hint="use an IANA name such as 'UTC' or 'Europe/Berlin'",
        ) from None


def expire_by_schedule(
    session: Session,
    *,
    keep_hourly: int = 0,
    keep_daily: int = 0,
    keep_weekly: int = 0,
    keep_monthly: int = 0,
    keep_within: timedelta | str | None = None,
    tags: Iterable[str] = (),
    pattern: str | None = None,
    all_paths: bool = False,
    timezone: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> ScheduleReport:
    """Expire the published versions with every tag in `tags` (and a path matching the
    glob `pattern`; or every published version, with `all_paths`) that the schedule does
    not keep, periods counted in `timezone` (``retention_timezone`` by default).
    `keep_within` is a duration or its text (``7d``, ``36h``)."""
    within = parse_age(keep_within) if isinstance(keep_within, str) else keep_within
    policy = KeepPolicy(
        hourly=keep_hourly,
        daily=keep_daily,
        weekly=keep_weekly,
        monthly=keep_monthly,
        within=within,
    )
    if not policy.keeps_anything:
        raise UsageError(
            "a schedule that keeps nothing would expire every version it selects",
            hint="say what to keep: --keep-hourly, --keep-daily, --keep-weekly, "
            "--keep-monthly or --keep-within",
        )
    tags = validate_tags(tags)  # a lone string is refused, not read letter by letter
    if all_paths and (tags or pattern is not None):
        raise UsageError(
            "--all-paths selects every published version: it takes no --tag or --match",
            hint="drop --all-paths to select by tags or glob",
        )
    if not (tags or pattern is not None or all_paths):
        raise UsageError(
            "say which versions the schedule is for",
            hint="select them with --tag (e.g. --tag hourly-report) or --match GLOB, "
            "or give --all-paths for every published version",
        )
    name = timezone if timezone is not None else session.config.retention_timezone
    zone = retention_zone(name)
    chosen = find(session, all=tags, pattern=pattern, published=True)
    by_id = {f.file_id: f for f in chosen}
    all_tags = tags_of(session, chosen)
    items = []
    for f in chosen:
        published = f.published_at or f.created_at
        when, source = version_time(all_tags.get(f.file_id, ()), published, zone)
        items.append(Dated(f.file_id, when, source))
    result = plan(items, policy, zone)
    if not dry_run and result.expired:
        gone = session.catalog.expire_many(
            [v.file_id for v in result.expired], when=now or datetime.now(UTC)
        )
        # A version superseded by a publish meanwhile was expired by it: it stays listed.
        by_id.update((rec.file_id, RepoFile(session, rec)) for rec in gone)
        logger.info("retention expired %s of %s versions", len(gone), len(chosen))

    def placed(verdicts: list[Verdict]) -> list[Scheduled]:
        return [
            Scheduled(by_id[v.file_id], v.time.astimezone(zone), v.source, v.reasons)
            for v in verdicts
        ]

    return ScheduleReport(
        timezone=name,
        policy=policy,
        dry_run=dry_run,
        kept=placed(result.kept),
        expired=placed(result.expired),
    )
