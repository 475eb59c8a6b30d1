"""``repo purge``: delete chosen versions now, whatever their state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from .app import App, parse_ref, pass_app
from .options import as_path_option, json_option
from .output import echo, echo_json, file_doc, human_size
from .prompts import confirm, refuse_off_terminal

if TYPE_CHECKING:
    from ..file import RepoFile
    from ..repository import Repo

__all__ = ["purge"]


def _line(verb: str, f: RepoFile) -> str:
    return f"{verb} {f.path} (file {f.file_id}, {f.state}, {human_size(f.size)})"


def _versions(count: int) -> str:
    return f"{count} version{'s' if count != 1 else ''}"


@click.command()
@click.argument("ref", metavar="PATH|ID")
@click.option("--all-versions", is_flag=True, help="PATH: purge every version of it.")
@click.option("--dry-run", is_flag=True, help="Show what would go; delete nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@as_path_option
@json_option()
@pass_app
def purge(
    app: App, ref: str, all_versions: bool, dry_run: bool, yes: bool, as_path: bool, as_json: bool
) -> None:
    """Delete a version now, whatever its state: its object, its catalog rows and tags,
    and this host's copies. For a secret added by mistake, or an erasure request.

    ID: that version. PATH: its only version; with --all-versions, every version.
    Asks first unless --yes (and, off a terminal, needs --yes). Backups taken before
    still hold the version's catalog row, and other hosts' caches their copies: see
    docs/deleting.md for what else to do.

    \b
    Examples:
      repo purge reports/leaked.csv --all-versions --dry-run
      repo purge 42 --yes
    """
    target = parse_ref(ref, as_path=as_path)
    if all_versions and isinstance(target, int):
        raise UsageError(
            f"--all-versions goes with a path, and {ref} reads as a file id",
            hint=f"repo purge {ref} --path --all-versions",
        )
    if not (dry_run or yes):
        refuse_off_terminal("the purge")
    with app.repo() as r:
        if not (dry_run or yes):
            _confirm(r, target, all_versions)
        rep = r.purge(target, all_versions=all_versions, dry_run=dry_run)
    if as_json:
        echo_json(
            {
                "dry_run": rep.dry_run,
                "purged": [file_doc(f) for f in rep.purged],
                "bytes": rep.bytes,
                "early_deletion": rep.early_deletion,
            }
        )
        return
    verb = "would purge" if dry_run else "purged"
    for f in rep.purged:
        echo(_line(verb, f))
    echo(f"{verb} {_versions(len(rep.purged))} ({human_size(rep.bytes)})")
    for line in rep.early_deletion:
        echo(f"{'would pay' if dry_run else 'paid'}: {line}")
    if rep.staging_removed:
        echo(f"removed {rep.staging_removed} staging copies on this host")


def _confirm(r: Repo, target: int | str, all_versions: bool) -> None:
    """List what would go and ask; `click.Abort` (exit 1) unless the answer is yes."""
    going = r.purge(target, all_versions=all_versions, dry_run=True).purged
    for f in going:
        echo(_line("will purge", f), err=True)
    confirm(
        f"Purge {_versions(len(going))} for good? Backups taken before keep their catalog rows",
        what="the purge",
    )
