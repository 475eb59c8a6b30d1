"""`repo replicate`: copies in the repository's other stores (docs/replicas.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .app import App, pass_app
from .options import json_option
from .output import echo, echo_json, human_size

if TYPE_CHECKING:
    from ..replicate import ReplicateReport

__all__ = ["drop", "replicate"]


@click.command()
@click.option("--dry-run", is_flag=True, help="Report the copies that would be made; copy nothing.")
@json_option()
@pass_app
def replicate(app: App, dry_run: bool, as_json: bool) -> None:
    """Bring every live version up to `numcopies` verified copies in distinct stores.

    Each missing copy is streamed from a verified copy (checked by md5 on the way),
    written create-only into the next store of the configuration that lacks one, checked
    there, and only then recorded. Safe to run again at any time, and after a kill: it
    finishes what a run left. Exit status 1 if a version is still under-replicated.

    \b
    Examples:
      repo replicate --dry-run
      repo replicate --json
    """
    with app.repo() as r:
        rep = r.replicate(dry_run=dry_run)
    if as_json:
        echo_json(rep.as_dict())
    else:
        _echo(rep)
    if not rep.ok:
        sys.exit(1)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _echo(rep: ReplicateReport) -> None:
    echo(
        f"checked {_plural(rep.checked, 'version')} against numcopies {rep.numcopies}: "
        f"{rep.under} under-replicated"
    )
    verb = "would copy" if rep.dry_run else "copied"
    echo(
        f"{verb} {_plural(rep.copied, 'copy').replace('copys', 'copies')} ({human_size(rep.bytes)})"
    )
    if rep.backup_objects:
        echo(
            f"{verb} {rep.backup_objects} catalog backup and journal objects "
            f"({human_size(rep.backup_bytes)})"
        )
    for store, why in sorted(rep.backup_failed.items()):
        echo(f"Error: backups and journal not copied into store {store}: {why}", err=True)
    if rep.still_under:
        echo(f"Error: {_plural(len(rep.still_under), 'version')} still under-replicated:", err=True)
        for file_id, why in sorted(rep.still_under.items()):
            echo(f"  file {file_id}: {why}", err=True)
        echo(
            "Try: `repo verify` names the copies of each; `repo recover` repairs lost ones",
            err=True,
        )


@click.command()
@click.argument("file_id", type=int, metavar="ID")
@click.argument("store")
@json_option()
@pass_app
def drop(app: App, file_id: int, store: str, as_json: bool) -> None:
    """Delete one version's copy in one named store, never below `mincopies`.

    The catalog counts the version's verified copies under a lock on its row before the
    copy stops counting, so drops running at the same time can never take a version
    below the floor; only then is the object deleted.

    \b
    Examples:
      repo drop 42 nas
      repo drop 42 second --json
    """
    with app.repo() as r:
        left = r.drop_copy(file_id, store)
    if as_json:
        echo_json({"id": file_id, "store": store, "left": left})
    else:
        echo(f"dropped the copy of file {file_id} in store {store}; {left} verified copies left")
