"""Commands for disaster recovery of the catalog: backup and restore."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from .app import App, pass_app
from .options import json_option, terminate_option
from .output import echo, echo_json, human_size, human_time, iso, table

if TYPE_CHECKING:
    from ..restore import RestoreReport

__all__ = ["backup", "restore", "run_restore"]


@click.command()
@json_option()
@pass_app
def backup(app: App, as_json: bool) -> None:
    """Back the catalog up into the backup store (backup_s3_bucket, else the store).

    One consistent snapshot of every table, then a manifest written last; old backups
    beyond backup_keep are deleted (never fewer than backups_before_purge).

    \b
    Example:
      repo backup
    """
    with app.repo() as r:
        rep = r.backup()
    if as_json:
        echo_json(
            {
                "name": rep.name,
                "taken_at": iso(rep.taken_at),
                "completed_at": iso(rep.completed_at),
                "rows": rep.rows,
                "bytes": rep.bytes,
                "location": rep.location,
                "deleted_backups": rep.deleted_backups,
                "deleted_journal_entries": rep.deleted_journal_entries,
            }
        )
        return
    echo(
        f"backup {rep.name}: {rep.rows.get('files', 0)} file versions, "
        f"{human_size(rep.bytes)} at {rep.location}"
    )
    if rep.deleted_backups:
        echo(f"deleted {len(rep.deleted_backups)} old backups (backup_keep)")


def _restore_doc(rep: RestoreReport) -> dict[str, Any]:
    return {
        "backup": rep.backup,
        "taken_at": iso(rep.taken_at),
        "rejected": [{"backup": n, "reason": why} for n, why in rep.rejected],
        "rows": rep.rows,
        "journal_entries": rep.journal_entries,
        "skipped_entries": [{"key": k, "reason": why} for k, why in rep.skipped_entries],
        "adopted": rep.adopted,
        "copies_found": rep.copies_found,
        "orphans_purged": rep.orphans_purged,
    }


def run_restore(
    app: App,
    *,
    name: str | None = None,
    verify: bool = False,
    deep: bool = False,
    force: bool = False,
    purge_orphans: bool = False,
    terminate_others: bool = False,
    accept_unsigned: bool = False,
    as_json: bool = False,
) -> None:
    from ..restore import restore_catalog  # loaded by a restore only

    rep = restore_catalog(
        app.config(),
        backup=name,
        verify=verify,
        deep=deep,
        force=force,
        purge_orphans=purge_orphans,
        terminate_others=terminate_others,
        accept_unsigned=accept_unsigned,
    )
    if as_json:
        echo_json(_restore_doc(rep))
        return
    for rejected, why in rep.rejected:
        echo(f"rejected backup {rejected}: {why}")
    for key, why in rep.skipped_entries:
        echo(f"skipped journal entry {key}: {why}")
    echo(
        f"restored backup {rep.backup} (taken {human_time(rep.taken_at)} UTC): "
        f"{rep.rows.get('files', 0)} file versions; replayed {rep.journal_entries} "
        f"journal entries; adopted {len(rep.adopted)} objects"
        + (f"; found {len(rep.copies_found)} copies" if rep.copies_found else "")
    )
    if purge_orphans:
        echo(f"purged {rep.orphans_purged} orphaned objects")


@click.command()
@click.option("--backup", "name", metavar="ID", help="Restore this backup (default: newest).")
@click.option("--list", "list_only", is_flag=True, help="Only list the backups found.")
@click.option("--verify", is_flag=True, help="Skip backups whose published files are damaged.")
@click.option("--deep", is_flag=True, help="With --verify: download and hash every file.")
@click.option("--force", is_flag=True, help="Replace a catalog that has data.")
@click.option("--purge-orphans", is_flag=True, help="Then delete objects nothing refers to.")
@click.option(
    "--accept-unsigned",
    is_flag=True,
    help="With backup_key: also take backups and journal entries with no seal (from before "
    "the key was set); a wrong seal is never taken.",
)
@terminate_option()
@json_option()
@pass_app
def restore(
    app: App,
    name: str | None,
    list_only: bool,
    verify: bool,
    deep: bool,
    force: bool,
    purge_orphans: bool,
    accept_unsigned: bool,
    terminate_others: bool,
    as_json: bool,
) -> None:
    """Restore the catalog from the backup store, knowing only the configuration.

    Backups are found by listing the backup store; changes committed after the backup
    are replayed from the change journal.

    \b
    Examples:
      repo restore --list
      repo restore --verify
    """
    if deep and not verify:
        raise click.UsageError("--deep goes with --verify")
    if list_only:
        from ..restore import restorable_backups

        found = restorable_backups(app.config())
        if as_json:
            echo_json(
                {
                    "backups": [
                        {
                            "name": m["name"],
                            "taken_at": m["taken_at"],
                            "file_count": m["tables"]["files"]["rows"],
                        }
                        for m in found
                    ]
                }
            )
        elif found:
            echo(table(["BACKUP", "TAKEN (UTC)", "FILES"],
                             [[m["name"], human_time(m["taken_at"]), m["tables"]["files"]["rows"]]
                              for m in found]))  # fmt: skip
        else:
            echo("no backups", err=True)
        return
    run_restore(
        app,
        name=name,
        verify=verify,
        deep=deep,
        force=force,
        purge_orphans=purge_orphans,
        terminate_others=terminate_others,
        accept_unsigned=accept_unsigned,
        as_json=as_json,
    )
    sys.stdout.flush()
