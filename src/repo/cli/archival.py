"""Archival commands: archive (to a Glacier storage class) and thaw (restore to read)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..storage_classes import ARCHIVE_CLASSES, RESTORE_TIERS
from ..units import parse_age
from .app import App, pass_app, resolve
from .options import json_option
from .output import echo, echo_json, file_doc, human_size, human_time, iso, table

if TYPE_CHECKING:
    from ..archive import ArchiveReport
    from ..file import RepoFile
    from ..repository import Repo
    from ..thaw import ThawReport, ThawStatus

__all__ = ["archive", "thaw"]

#: ``--state`` of `archive`: which versions; ``all`` is both (never unpublished ones).
_STATES = {"published": ("published",), "expired": ("expired",), "all": ("published", "expired")}


def _tag_options(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        (
            click.option("--any", "any_", multiple=True, metavar="TAG", help="At least one."),
            click.option("--all", "all_", multiple=True, metavar="TAG", help="Every one."),
            click.option("--exclude", multiple=True, metavar="TAG", help="None of these."),
        )
    ):
        func = option(func)
    return func


@click.command()
@click.argument("pattern", required=False)
@_tag_options
@click.option(
    "--state",
    type=click.Choice(sorted(_STATES)),
    default="all",
    show_default=True,
    help="Which versions (all: published and expired).",
)
@click.option("--older-than", metavar="AGE", help="Only versions uploaded longer ago (90d, 12w).")
@click.option(
    "--class",
    "storage_class",
    type=click.Choice(ARCHIVE_CLASSES),
    help="The archival class (default: archive_class, GLACIER unless configured).",
)
@click.option("-n", "--dry-run", is_flag=True, help="Say what would move; move nothing.")
@json_option()
@pass_app
def archive(
    app: App,
    pattern: str | None,
    any_: tuple[str, ...],
    all_: tuple[str, ...],
    exclude: tuple[str, ...],
    state: str,
    older_than: str | None,
    storage_class: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Move versions to an archival S3 storage class: GLACIER_IR (read without a
    restore), GLACIER or DEEP_ARCHIVE (read after `repo thaw`).

    Key and content never change; each move is verified, then recorded. Choose the
    versions by a glob PATTERN, tags (as `repo find`), age, or all of these.

    \b
    Examples:
      repo archive 'logs/*' --older-than 90d
      repo archive --all sales --state expired --class DEEP_ARCHIVE --dry-run
    """
    if pattern is None and not (any_ or all_ or exclude or older_than):
        raise click.UsageError("say which versions: a PATTERN, tags, --older-than, or several")
    age = parse_age(older_than) if older_than is not None else None
    with app.repo() as r:
        chosen = _versions(r, pattern, any_, all_, exclude, _STATES[state])
        report = r.archive(chosen, storage_class=storage_class, older_than=age, dry_run=dry_run)
    if as_json:
        echo_json(_archive_doc(report))
        return
    _echo_archive(report)


def _versions(
    r: Repo,
    pattern: str | None,
    any_: tuple[str, ...],
    all_: tuple[str, ...],
    exclude: tuple[str, ...],
    states: tuple[str, ...],
) -> list[RepoFile]:
    if any_ or all_ or exclude:
        found = r.find(
            any=any_, all=all_, exclude=exclude, pattern=pattern, published=states == ("published",)
        )
    else:
        found = r.list(pattern or "*", state=states[0] if len(states) == 1 else "all")
    return [f for f in found if f.state in states]


def _archive_doc(report: ArchiveReport) -> dict[str, object]:
    return {
        "storage_class": report.storage_class,
        "dry_run": report.dry_run,
        "archived": [file_doc(f) for f in report.archived],
        "already": [f.file_id for f in report.already],
        "skipped": [{"id": f.file_id, "path": f.path, "reason": why} for f, why in report.skipped],
        "bytes": report.bytes,
        "warnings": report.warnings,
        "smaller_than_overhead": report.smaller_than_overhead,
    }


def _echo_archive(report: ArchiveReport) -> None:
    verb = "would archive" if report.dry_run else "archived"
    for f in report.archived:
        echo(f"{verb} {f.path} (file {f.file_id}, {human_size(f.size)})")
    if report.skipped:
        echo(
            table(
                ["SKIPPED", "PATH", "WHY"], [[f.file_id, f.path, why] for f, why in report.skipped]
            )
        )
    for warning in report.warnings:
        echo(f"Warning: {warning}", err=True)
    if report.smaller_than_overhead:
        echo(
            f"Note: {report.smaller_than_overhead} of them are smaller than the 40 KiB "
            f"{report.storage_class} bills for each object on top of its content",
            err=True,
        )
    echo(
        f"{verb} {len(report.archived)} "
        f"{'version' if len(report.archived) == 1 else 'versions'} ({human_size(report.bytes)}) to "
        f"{report.storage_class}; {len(report.already)} there already, "
        f"{len(report.skipped)} skipped"
    )


@click.command()
@click.argument("refs", nargs=-1, metavar="[PATH|ID]...")
@_tag_options
@click.option(
    "--days",
    type=click.IntRange(1, 30_000),
    default=7,
    show_default=True,
    help="How long the restored copy stays readable.",
)
@click.option(
    "--tier",
    type=click.Choice(RESTORE_TIERS),
    default="Standard",
    show_default=True,
    help="Expedited (minutes, GLACIER only), Standard (hours) or Bulk (cheapest).",
)
@click.option("--status", "status_only", is_flag=True, help="Only say where each restore stands.")
@click.option("--wait", is_flag=True, help="Then wait until every copy is readable.")
@click.option(
    "--deadline",
    metavar="AGE",
    default="48h",
    show_default=True,
    help="With --wait: give up after this long (30m, 12h).",
)
@json_option()
@pass_app
def thaw(
    app: App,
    refs: tuple[str, ...],
    any_: tuple[str, ...],
    all_: tuple[str, ...],
    exclude: tuple[str, ...],
    days: int,
    tier: str,
    status_only: bool,
    wait: bool,
    deadline: str,
    as_json: bool,
) -> None:
    """Restore readable copies of archived versions (S3 RestoreObject), or with
    --status say where their restores stand (a HEAD each: no retrieval charge).

    A PATH names its current version; an ID any version. Restored copies are readable
    for --days; the storage class stays archival.

    \b
    Examples:
      repo thaw reports/2024.csv --days 3 --wait
      repo thaw --all sales --tier Bulk
      repo thaw --status reports/2024.csv
    """
    if not refs and not (any_ or all_ or exclude):
        raise click.UsageError("say which versions: PATH|ID arguments, tags, or both")
    seconds = parse_age(deadline).total_seconds() if wait else None
    with app.repo() as r:
        chosen = [resolve(r, ref, which="current") for ref in refs]
        if any_ or all_ or exclude:
            chosen += r.find(any=any_, all=all_, exclude=exclude)
        if status_only:
            statuses = r.thaw_status(chosen)
            report = None
        else:
            report = r.thaw(chosen, days=days, tier=tier, wait=seconds)
            statuses = report.statuses
    if as_json:
        echo_json(_thaw_doc(report, statuses))
        return
    if report is not None:
        echo(
            f"thaw ({report.tier}, {report.days} days): {len(report.started)} started, "
            f"{len(report.extended)} extended, {len(report.in_progress)} already in progress, "
            f"{len(report.not_needed)} readable without one"
        )
    if statuses:
        echo(_status_table(statuses))


def _status_table(statuses: list[ThawStatus]) -> str:
    return table(
        ["ID", "PATH", "CLASS", "STATUS", "READABLE UNTIL"],
        [
            [
                s.file.file_id,
                s.file.path,
                s.storage_class or "STANDARD",
                s.status,
                human_time(s.restored_until) if s.restored_until else "-",
            ]
            for s in statuses
        ],
    )


def _thaw_doc(report: ThawReport | None, statuses: list[ThawStatus]) -> dict[str, object]:
    doc: dict[str, object] = {
        "statuses": [
            {
                "id": s.file.file_id,
                "path": s.file.path,
                "storage_class": s.storage_class,
                "status": s.status,
                "restored_until": iso(s.restored_until),
            }
            for s in statuses
        ]
    }
    if report is not None:
        doc.update(
            days=report.days,
            tier=report.tier,
            started=[f.file_id for f in report.started],
            extended=[f.file_id for f in report.extended],
            in_progress=[f.file_id for f in report.in_progress],
            not_needed=[f.file_id for f in report.not_needed],
        )
    return doc
