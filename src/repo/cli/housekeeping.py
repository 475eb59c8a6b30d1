"""Commands that keep the repository tidy: gc, cache, host."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .app import App, pass_app
from .options import json_option
from .output import echo, echo_json, human_seconds, human_size, human_time, iso, table
from .prompts import confirm

if TYPE_CHECKING:
    from ..cache_admin import CacheReport
    from ..gc import GcCategory

__all__ = ["cache", "gc", "host"]


def _category(c: GcCategory, counted: str = "file_count") -> dict[str, object]:
    return {counted: c.count, "bytes": c.bytes, "keys": c.keys}


@click.command()
@click.option("--dry-run", is_flag=True, help="Report what would go; delete nothing.")
@click.option("--orphans", is_flag=True, help="Also delete unreferenced objects past the grace.")
@json_option()
@pass_app
def gc(app: App, dry_run: bool, orphans: bool, as_json: bool) -> None:
    """Purge old unpublished versions, expired versions enough backups have seen, and
    (with --orphans) objects no version refers to. Published files are never touched.

    Rules and their settings: unpublished_ttl_seconds, expired_ttl_seconds,
    backups_before_purge, orphan_grace_seconds (see `repo config --show`).

    \b
    Examples:
      repo gc --dry-run
      repo gc --orphans --json
    """
    with app.repo() as r:
        rep = r.gc(dry_run=dry_run, orphans=orphans)
    if as_json:
        echo_json(
            {
                "dry_run": rep.dry_run,
                "unpublished": _category(rep.unpublished),
                "expired": _category(rep.expired),
                "resumed": _category(rep.resumed),
                "orphans": _category(rep.orphans, "object_count") if orphans else None,
                "waiting_for_backups": rep.waiting_for_backups,
                "unpublished_within_ttl": rep.unpublished_within_ttl,
                "expired_within_ttl": rep.expired_within_ttl,
                "staging_removed": rep.staging_removed,
                "partial_downloads_removed": rep.partial_downloads_removed,
                "store_temporaries_removed": rep.store_temporaries_removed,
                "not_done": rep.not_done,
                "early_deletion": rep.early_deletion,
                "kept_for_minimum_duration": rep.kept_for_minimum_duration,
            }
        )
        return
    verb = "would purge" if dry_run else "purged"
    rows = [
        ["unpublished", rep.unpublished.count, human_size(rep.unpublished.bytes)],
        ["expired", rep.expired.count, human_size(rep.expired.bytes)],
    ]
    if rep.resumed.count:
        rows.append(["resumed", rep.resumed.count, human_size(rep.resumed.bytes)])
    if orphans:
        rows.append(["orphans", rep.orphans.count, human_size(rep.orphans.bytes)])
    echo(f"{verb}:")
    echo(table(["CATEGORY", "FILES", "BYTES"], rows))
    # What gc keeps, and why: the question a dry run is asked.
    cfg = app.config()
    if rep.unpublished_within_ttl:
        echo(
            f"kept {rep.unpublished_within_ttl} unpublished versions younger than "
            f"{human_seconds(cfg.unpublished_ttl_seconds)} (unpublished_ttl_seconds)"
        )
    if rep.expired_within_ttl:
        echo(
            f"kept {rep.expired_within_ttl} expired versions for "
            f"{human_seconds(cfg.expired_ttl_seconds)} after they expired (expired_ttl_seconds)"
        )
    if rep.waiting_for_backups:
        echo(
            f"kept {rep.waiting_for_backups} expired versions past their TTL until "
            f"{cfg.backups_before_purge} backups have been taken since they expired "
            "(backups_before_purge; repo backup takes one)"
        )
    _echo_leftovers(
        "would remove" if dry_run else "removed",
        staging=rep.staging_removed,
        partials=rep.partial_downloads_removed,
        store=rep.store_temporaries_removed,
    )
    if rep.kept_for_minimum_duration:
        echo(
            f"kept {rep.kept_for_minimum_duration} archived versions until their storage "
            "class's minimum duration has passed (archive_early_deletion: refuse)"
        )
    for line in rep.early_deletion:
        echo(f"{'would pay' if dry_run else 'paid'}: {line}")
    for line in rep.not_done:
        echo(f"not done: {line}")


def _echo_leftovers(verb: str, *, staging: int, partials: int, store: int = 0) -> None:
    """One line per kind of leftover that went (or would go), none when there were none."""
    if store:
        echo(f"{verb} {store} leftovers of cut-off writes in the store")
    if staging:
        echo(f"{verb} {staging} staging leftovers on this host")
    if partials:
        echo(f"{verb} {partials} partial downloads on this host")


@click.group()
def cache() -> None:
    """This host's cache of verified copies.

    \b
    Example:
      repo cache status
    """


@cache.command("status")
@json_option()
@pass_app
def cache_status(app: App, as_json: bool) -> None:
    """Files and bytes in this host's cache, and its limit (cache_max_bytes).

    \b
    Example:
      repo cache status --json
    """
    with app.repo() as r:
        st = r.cache_status()
    if as_json:
        echo_json(
            {
                "host": st.host,
                "directory": st.directory,
                "file_count": st.files,
                "bytes": st.bytes,
                "cache_max_bytes": st.limit,
            }
        )
        return
    limit = "no limit" if st.limit is None else f"limit {human_size(st.limit)}"
    echo(f"cache on {st.host} ({st.directory}): {st.files} files, {human_size(st.bytes)} ({limit})")


@cache.command("prune")
@json_option()
@pass_app
def cache_prune(app: App, as_json: bool) -> None:
    """Drop cached copies of expired or purged files, then evict least recently used
    copies down to the limit.

    \b
    Example:
      repo cache prune
    """
    with app.repo() as r:
        rep = r.prune_cache()
    if as_json:
        echo_json(_cache_report_doc(rep))
        return
    echo(
        f"dropped {rep.dropped_expired} expired and {rep.dropped_purged} purged copies, "
        f"evicted {rep.evicted_for_space} for space ({human_size(rep.bytes)} freed)"
    )
    _echo_leftovers("removed", staging=rep.staging_removed, partials=rep.partial_downloads_removed)


def _cache_report_doc(rep: CacheReport) -> dict[str, object]:
    return {
        "dropped_expired": rep.dropped_expired,
        "dropped_purged": rep.dropped_purged,
        "evicted_for_space": rep.evicted_for_space,
        "bytes": rep.bytes,
        "staging_removed": rep.staging_removed,
        "partial_downloads_removed": rep.partial_downloads_removed,
        "keys": rep.keys,
    }


@cache.command("clear")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option()
@pass_app
def cache_clear(app: App, yes: bool, as_json: bool) -> None:
    """Remove every cached copy on this host (files are downloaded again when read).

    \b
    Example:
      repo cache clear --yes
    """
    if not yes:
        confirm("Remove every cached copy on this host?", what="clearing the cache")
    with app.repo() as r:
        rep = r.clear_cache()
    if as_json:
        echo_json(_cache_report_doc(rep))
        return
    echo(f"removed {rep.evicted_for_space} cached copies ({human_size(rep.bytes)})")
    _echo_leftovers("removed", staging=0, partials=rep.partial_downloads_removed)


@click.group()
def host() -> None:
    """Hosts known to the catalog and the copies their caches hold.

    \b
    Example:
      repo host list
    """


@host.command("list")
@json_option()
@pass_app
def host_list(app: App, as_json: bool) -> None:
    """Every host: cache limit, copies held, last seen.

    \b
    Example:
      repo host list --json
    """
    with app.repo() as r:
        found = r.hosts()
    if as_json:
        echo_json(
            {
                "hosts": [
                    {
                        "name": h.name,
                        "cache_max_bytes": h.cache_max_bytes,
                        "file_count": h.files,
                        "bytes": h.bytes,
                        "first_seen": iso(h.first_seen),
                        "last_seen": iso(h.last_seen),
                    }
                    for h in found
                ]
            }
        )
        return
    if not found:
        echo("no hosts", err=True)
        return
    echo(
        table(
            ["HOST", "FILES", "BYTES", "LIMIT", "LAST SEEN (UTC)"],
            [
                [
                    h.name,
                    h.files,
                    human_size(h.bytes),
                    "-" if h.cache_max_bytes is None else human_size(h.cache_max_bytes),
                    human_time(h.last_seen),
                ]
                for h in found
            ],
        )
    )


@host.command("decommission")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option()
@pass_app
def host_decommission(app: App, name: str, yes: bool, as_json: bool) -> None:
    """Forget host NAME and the cached copies it held (nothing is deleted anywhere).

    \b
    Example:
      repo host decommission old-worker-3 --yes
    """
    if not yes:
        confirm(
            f"Forget host {name!r} and its cached copies in the catalog?",
            what="forgetting a host",
        )
    with app.repo() as r:
        forgotten = r.decommission_host(name)
    if as_json:
        echo_json({"host": name, "forgotten_copies": forgotten})
        return
    echo(f"forgot host {name} ({forgotten} cached copies)")
