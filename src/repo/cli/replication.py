"""`repo replicate`: copies in the repository's other stores (docs/replicas.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from .app import App, pass_app, resolve
from .bars import ByteBar
from .options import as_path_option, json_option
from .output import echo, echo_json, human_size, shown, table
from .prompts import confirm

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..replicate import ReplicateReport
    from ..store_admin import StoreSummary

__all__ = ["drop", "replicate", "store"]


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
        bar = ByteBar("replicating")
        try:
            rep = r.replicate(dry_run=dry_run, progress=None if dry_run else bar.listener)
        finally:
            bar.close()
    if as_json:
        echo_json(rep.as_dict())
    else:
        _echo(rep)
    if not rep.ok:
        sys.exit(1)


#: Versions still under policy listed one per line; the rest are counted.
SHOWN = 20


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def _echo(rep: ReplicateReport) -> None:
    echo(
        f"checked {_plural(rep.checked, 'version')} against numcopies {rep.numcopies}: "
        f"{rep.under} under-replicated"
    )
    verb = "would copy" if rep.dry_run else "copied"
    echo(f"{verb} {_plural(rep.copied, 'copy', 'copies')} ({human_size(rep.bytes)})")
    if rep.backup_objects:
        echo(
            f"{verb} {_plural(rep.backup_objects, 'catalog backup or journal object')} "
            f"({human_size(rep.backup_bytes)})"
        )
    for store, why in sorted(rep.backup_failed.items()):
        echo(f"Error: backups and journal not copied into store {store}: {why}", err=True)
    if rep.still_under:
        echo(f"Error: {_plural(len(rep.still_under), 'version')} still under-replicated:", err=True)
        listed = sorted(rep.still_under.items())
        for file_id, why in listed[:SHOWN]:
            echo(f"  file {file_id}: {why}", err=True)
        if len(listed) > SHOWN:
            echo(f"  ... and {len(listed) - SHOWN} more (`--json` lists every one)", err=True)
        echo(
            "Try: `repo verify` names the copies of each; `repo recover` repairs lost ones",
            err=True,
        )


@click.command()
@click.argument("ref", metavar="ID|PATH")
@click.argument("store")
@as_path_option
@json_option()
@pass_app
def drop(app: App, ref: str, store: str, as_path: bool, as_json: bool) -> None:
    """Delete one version's copy in one named store (PATH: its current version), never
    below `mincopies`.

    The catalog counts the version's verified copies under a lock on its row before the
    copy stops counting, so drops running at the same time can never take a version
    below the floor; only then is the object deleted.

    \b
    Examples:
      repo drop 42 nas
      repo drop reports/daily.csv second --json
    """
    with app.repo() as r:
        names = r.config.store_names
        if ref in names and store not in names:
            raise UsageError(
                f"{store!r} is not a store of this repository, and {ref!r} is one",
                hint=f"the version comes first: repo drop {store} {ref}",
            )
        f = resolve(r, ref, which="current", as_path=as_path)
        left = r.drop_copy(f.file_id, store)
    if as_json:
        echo_json({"id": f.file_id, "path": f.path, "store": store, "left": left})
    else:
        echo(
            f"dropped the copy of {shown(f.path)} (file {f.file_id}) in store {store}; "
            f"{_plural(left, 'verified copy', 'verified copies')} left"
        )


@click.group()
def store() -> None:
    """The repository's stores and what the catalog records in each.

    \b
    Examples:
      repo store list
      repo store decommission old-nas --yes
    """


@store.command("list")
@json_option()
@pass_app
def store_list(app: App, as_json: bool) -> None:
    """Every store: its versions, its copies (verified, being written, lost), and the
    store names the catalog has copies in that the configuration no longer has.

    \b
    Example:
      repo store list --json
    """
    from ..urls import mask_url

    with app.repo() as r:
        found = r.stores()
    if as_json:
        echo_json({"stores": [_store_doc(s, mask_url) for s in found]})
        return
    echo(
        table(
            ["STORE", "URL", "VERSIONS", "COPIES", "WRITING", "LOST", "BYTES"],
            [
                [
                    s.name,
                    mask_url(s.url) if s.url is not None else "(not configured)",
                    s.versions,
                    s.copies,
                    s.writing,
                    s.lost,
                    human_size(s.version_bytes + s.copy_bytes),
                ]
                for s in found
            ],
        )
    )
    gone = [s.name for s in found if not s.configured]
    if gone:
        echo(
            f"Stores no longer configured: {', '.join(gone)}; garbage collection leaves "
            "their versions alone until `repo store decommission NAME` forgets them",
            err=True,
        )


def _store_doc(s: StoreSummary, mask: Callable[[str], str]) -> dict[str, object]:
    return {
        "name": s.name,
        "url": mask(s.url) if s.url is not None else None,
        "configured": s.configured,
        "versions": s.versions,
        "version_bytes": s.version_bytes,
        "copies": s.copies,
        "copy_bytes": s.copy_bytes,
        "writing": s.writing,
        "lost": s.lost,
    }


@store.command("decommission")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option()
@pass_app
def store_decommission(app: App, name: str, yes: bool, as_json: bool) -> None:
    """Forget every copy the catalog records in store NAME, once it is out of the
    configuration (nothing in any store is deleted).

    A store taken out of `stores` leaves its copies recorded: they are no longer read
    or counted, but garbage collection leaves their versions alone. Decommissioning
    forgets them. A configured store is refused.

    \b
    Example:
      repo store decommission old-nas --yes
    """
    if not yes:
        confirm(f"Forget every copy recorded in store {name!r}?", what="decommissioning a store")
    with app.repo() as r:
        forgotten = r.decommission_store(name)
    if as_json:
        echo_json({"store": name, "forgotten_copies": forgotten})
        return
    echo(
        f"forgot {_plural(forgotten, 'copy', 'copies')} recorded in store {name}; "
        "nothing in any store was touched"
    )
