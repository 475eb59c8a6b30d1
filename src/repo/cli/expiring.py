"""`repo expire`: one version, or the published versions a retention schedule drops."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from .app import App, pass_app, resolve
from .options import as_path_option, json_option
from .output import echo, echo_json, file_doc, shown, table

if TYPE_CHECKING:
    from ..expiring import Scheduled, ScheduleReport

__all__ = ["expire"]

_COUNT = click.IntRange(min=0)


@click.command()
@click.argument("ref", metavar="[ID|PATH]", required=False)
@as_path_option
@click.option(
    "--keep-hourly", type=_COUNT, default=0, metavar="N", help="Newest of the last N hours."
)
@click.option(
    "--keep-daily", type=_COUNT, default=0, metavar="N", help="Newest of the last N days."
)
@click.option(
    "--keep-weekly", type=_COUNT, default=0, metavar="N", help="Newest of the last N ISO weeks."
)
@click.option(
    "--keep-monthly", type=_COUNT, default=0, metavar="N", help="Newest of the last N months."
)
@click.option(
    "--keep-within", metavar="SPAN", help="Every version within SPAN of the newest (36h, 7d)."
)
@click.option(
    "-t",
    "--tag",
    "tags",
    multiple=True,
    metavar="TAG",
    help="Schedule the versions with every TAG.",
)
@click.option(
    "--match", "pattern", metavar="GLOB", help="Schedule the versions whose path matches GLOB."
)
@click.option("--all-paths", is_flag=True, help="Schedule every published version.")
@click.option(
    "--timezone", metavar="ZONE", help="Count periods in ZONE (default: retention_timezone)."
)
@click.option(
    "-n", "--dry-run", is_flag=True, help="Say what the schedule would expire; expire nothing."
)
@json_option()
@pass_app
def expire(
    app: App,
    ref: str | None,
    as_path: bool,
    keep_hourly: int,
    keep_daily: int,
    keep_weekly: int,
    keep_monthly: int,
    keep_within: str | None,
    tags: tuple[str, ...],
    pattern: str | None,
    all_paths: bool,
    timezone: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Expire a version (PATH: its current, published version), or the published
    versions a retention schedule does not keep.

    A schedule keeps the newest version of each of the last N hours, days, ISO weeks
    and months that have one, and every version within SPAN of the newest; one version
    may count for several rules, and each kept one is shown with the rules that kept
    it. A version's time is its finest date tag, else when it was published. Expired
    files are purged by garbage collection later.

    \b
    Examples:
      repo expire reports/daily.csv
      repo expire --tag hourly-report --keep-hourly 24 --keep-daily 7
      repo expire --all-paths --keep-within 30d --dry-run
    """
    schedule = (keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_within, tags, pattern,
                all_paths, timezone, dry_run)  # fmt: skip
    given = any(option not in (0, None, (), False) for option in schedule)
    if as_path and ref is None:
        raise UsageError(
            "--path reads an ID|PATH argument as a path, and none was given",
            hint="`repo expire --path 2026` expires the path named 2026; "
            "a schedule takes no --path",
        )
    if ref is not None and given:
        raise UsageError(
            "give an ID|PATH or a schedule, not both",
            hint="`repo expire ID|PATH` expires one version; --keep-* options expire by schedule",
        )
    if ref is None and not given:
        raise UsageError(
            "say what to expire: an ID|PATH, or a schedule",
            hint="e.g. `repo expire reports/daily.csv` or "
            "`repo expire --tag hourly-report --keep-daily 7`",
        )
    if ref is not None:
        _expire_one(app, ref, as_path=as_path, as_json=as_json)
        return
    with app.repo() as r:
        report = r.expire_by_schedule(
            keep_hourly=keep_hourly,
            keep_daily=keep_daily,
            keep_weekly=keep_weekly,
            keep_monthly=keep_monthly,
            keep_within=keep_within,
            tags=tags,
            pattern=pattern,
            all_paths=all_paths,
            timezone=timezone,
            dry_run=dry_run,
        )
    if as_json:
        echo_json(_schedule_doc(report))
        return
    _echo_schedule(report)


def _expire_one(app: App, ref: str, *, as_path: bool, as_json: bool) -> None:
    with app.repo() as r:
        f = resolve(r, ref, which="current", as_path=as_path)
        f.expire()
    if as_json:
        echo_json({"file": file_doc(f)})
        return
    echo(f"expired {shown(f.path)} (file {f.file_id})")


def _entry(s: Scheduled) -> dict[str, object]:
    doc: dict[str, object] = {
        "id": s.file.file_id,
        "path": s.file.path,
        "time": s.time.isoformat(),
        "time_from": s.time_from,
    }
    if s.reasons:
        doc["kept_by"] = list(s.reasons)
    return doc


def _schedule_doc(report: ScheduleReport) -> dict[str, object]:
    p = report.policy
    return {
        "timezone": report.timezone,
        "dry_run": report.dry_run,
        "policy": {
            "hourly": p.hourly,
            "daily": p.daily,
            "weekly": p.weekly,
            "monthly": p.monthly,
            "within_seconds": int(p.within.total_seconds()) if p.within is not None else None,
        },
        "kept": [_entry(s) for s in report.kept],
        "expired": [_entry(s) for s in report.expired],
    }


def _echo_schedule(report: ScheduleReport) -> None:
    verb = "would expire" if report.dry_run else "expire"
    rows = sorted(
        [("keep", s) for s in report.kept] + [(verb, s) for s in report.expired],
        key=lambda row: (row[1].time, row[1].file.file_id),
        reverse=True,
    )
    if rows:
        echo(
            table(
                ["ACTION", "ID", "TIME", "FROM", "PATH", "KEPT BY"],
                [
                    [
                        action,
                        s.file.file_id,
                        s.time.isoformat(timespec="minutes"),
                        s.time_from,
                        s.file.path,
                        ", ".join(s.reasons) or "-",
                    ]
                    for action, s in rows
                ],
            )
        )
    kept, gone = len(report.kept), len(report.expired)
    total = kept + gone
    summary = "would keep {} and expire {}" if report.dry_run else "kept {} and expired {}"
    echo(
        summary.format(kept, gone)
        + f" of {total} version{'s' if total != 1 else ''} (periods in {report.timezone})"
        + ("; nothing changed" if report.dry_run else "")
    )
