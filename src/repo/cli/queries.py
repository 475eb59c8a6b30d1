"""Commands that read the catalog: list, find, show, status."""

from __future__ import annotations

import itertools
import sys
from typing import TYPE_CHECKING

import click

from ..permissions import show_mode
from ..units import parse_age
from .app import App, pass_app, resolve
from .options import as_path_option, json_option, state_option
from .output import (
    copy_doc,
    copy_line,
    echo,
    echo_json,
    file_doc,
    host_doc,
    human_size,
    human_time,
    table,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..file import RepoFile
    from ..repository import Repo

__all__ = ["TIMED_OUT", "find", "list_files", "show", "status", "wait"]


def _print_files(r: Repo, found: Sequence[RepoFile], as_json: bool) -> None:
    if as_json:
        tags = r.tags_of(found)
        echo_json({"files": [file_doc(f, tags[f.file_id]) for f in found]})
        return
    if not found:
        echo("no files", err=True)
        return
    echo(
        table(
            ["ID", "STATE", "SIZE", "UPDATED (UTC)", "PATH"],
            (
                [
                    f.file_id,
                    f.state,
                    human_size(f.size),
                    human_time(f.expired_at or f.published_at or f.uploaded_at or f.created_at),
                    f.path,
                ]
                for f in found
            ),
        )
    )


@click.command("list")
@click.argument("pattern", default="*")
@state_option
@json_option()
@pass_app
def list_files(app: App, pattern: str, state: str, as_json: bool) -> None:
    """List files whose path matches the glob PATTERN (* also matches /).

    \b
    Examples:
      repo list 'reports/*.csv'
      repo list --state all --json
    """
    with app.repo() as r:
        _print_files(r, r.list(pattern, state=state), as_json)


@click.command()
@click.option("--any", "any_", multiple=True, metavar="TAG", help="At least one of these.")
@click.option("--all", "all_", multiple=True, metavar="TAG", help="Every one of these.")
@click.option("--exclude", multiple=True, metavar="TAG", help="None of these.")
@state_option
# The first spelling, kept for scripts that use it: --state all.
@click.option("--all-states", is_flag=True, hidden=True)
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="Only the first N files.")
@click.option("--count", "count_only", is_flag=True, help="Print only how many files match.")
@json_option()
@pass_app
def find(
    app: App,
    any_: tuple[str, ...],
    all_: tuple[str, ...],
    exclude: tuple[str, ...],
    state: str,
    all_states: bool,
    limit: int | None,
    count_only: bool,
    as_json: bool,
) -> None:
    """Find files by tags (a path's tags count for each of its versions), by path.

    \b
    Examples:
      repo find --all sales --any day=2026-11-24 --any day=2026-11-25 --exclude draft
      repo find --all sales --limit 20
      repo find --all sales --count
    """
    if all_states:
        state = "all"
    if count_only and limit is not None:
        raise click.UsageError("use --count or --limit, not both")
    published = state == "published"
    with app.repo() as r:
        if state in ("published", "all"):
            if count_only:
                n = r.count(any=any_, all=all_, exclude=exclude, published=published)
                _print_count(n, as_json)
                return
            found = r.find(any=any_, all=all_, exclude=exclude, published=published, limit=limit)
        else:
            # One state of many: the catalog reads every state, the rest are left out.
            every = r.iter_find(any=any_, all=all_, exclude=exclude, published=False)
            matching = (f for f in every if f.state == state)
            if count_only:
                _print_count(sum(1 for _ in matching), as_json)
                return
            found = list(itertools.islice(matching, limit))
        _print_files(r, found, as_json)


#: `repo wait`'s exit status when no file matched in time (1 is an error, 2 bad usage).
TIMED_OUT = 3


@click.command()
@click.option("--any", "any_", multiple=True, metavar="TAG", help="At least one of these.")
@click.option("--all", "all_", multiple=True, metavar="TAG", help="Every one of these.")
@click.option("--exclude", multiple=True, metavar="TAG", help="None of these.")
@click.option("--path", help="Only the current version of this path.")
@click.option("--pattern", metavar="GLOB", help="Only paths matching this glob.")
@click.option("--limit", type=click.IntRange(min=0), metavar="N", help="Print the first N files.")
@click.option(
    "--timeout",
    required=True,
    metavar="DURATION",
    help="Give up after this long: seconds (0 asks once) or 30s, 10m, 12h, 2d.",
)
@json_option()
@pass_app
def wait(
    app: App,
    any_: tuple[str, ...],
    all_: tuple[str, ...],
    exclude: tuple[str, ...],
    path: str | None,
    pattern: str | None,
    limit: int | None,
    timeout: str,
    as_json: bool,
) -> None:
    """Wait until a current file matches, then print the matching files as `find` does.

    Exit status 0 when files matched (at once if some already do), 3 when none did
    within --timeout, 1 on an error. PostgreSQL wakes as soon as a publish or a tag
    that makes a file match is committed; SQLite looks again every few seconds.

    \b
    Examples:
      repo wait --all sales --all day=2026-11-24 --timeout 2h
      repo wait --path reports/daily.csv --timeout 90s --json
    """
    seconds = _duration(timeout)
    with app.repo() as r:
        found = r.wait(
            any=any_, all=all_, exclude=exclude, path=path, pattern=pattern,
            timeout=seconds, limit=limit,
        )  # fmt: skip
        if found and as_json:
            tags = r.tags_of(found)
            echo_json({"files": [file_doc(f, tags[f.file_id]) for f in found], "timed_out": False})
            return
        if found:
            _print_files(r, found, as_json)
            return
    if as_json:
        echo_json({"files": [], "timed_out": True})
    else:
        echo(f"Timed out: no file matched within {seconds:g} s", err=True)
    sys.exit(TIMED_OUT)


def _duration(text: str) -> float:
    """Seconds, as a plain number or an age (``30s``, ``10m``, ``2h``)."""
    try:
        seconds = float(text)
    except ValueError:
        return parse_age(text).total_seconds()
    if not 0 <= seconds < float("inf"):
        raise click.BadParameter(f"{text!r} is not 0 seconds or more", param_hint="--timeout")
    return seconds


def _print_count(n: int, as_json: bool) -> None:
    if as_json:
        echo_json({"file_count": n})
    else:
        echo(str(n))


@click.command()
@click.argument("ref", metavar="PATH|ID")
@as_path_option
@json_option()
@pass_app
def history(app: App, ref: str, as_path: bool, as_json: bool) -> None:
    """The versions of PATH (or of the path of file ID), newest first, one line each.

    \b
    Examples:
      repo history reports/daily.csv
      repo history 16 --json
    """
    with app.repo() as r:
        path = resolve(r, ref, which="newest", as_path=as_path).path
        _print_files(r, r.history(path), as_json)


@click.command()
@click.argument("ref", metavar="PATH|ID")
@as_path_option
@json_option()
@pass_app
def show(app: App, ref: str, as_path: bool, as_json: bool) -> None:
    """Every version of PATH (or of the path of file ID): state, size, md5, times, tags,
    hosts with a copy and, with several stores, each store's copy.

    \b
    Examples:
      repo show reports/daily.csv
      repo show 16
    """
    with app.repo() as r:
        path = resolve(r, ref, which="newest", as_path=as_path).path
        versions = r.history(path)
        tags = r.tags_of(versions)
        hosts = {f.file_id: f.hosts for f in versions}
        # With several stores, where each version's copies are (docs/replicas.md).
        copies = r.copies(versions) if r.config.stores else None
    if as_json:
        docs = []
        for f in versions:
            doc = file_doc(f, tags[f.file_id])
            doc["hosts"] = [host_doc(h) for h in hosts[f.file_id]]
            if copies is not None:
                doc["copies"] = [copy_doc(c) for c in copies[f.file_id]]
            docs.append(doc)
        echo_json({"path": versions[0].path, "versions": docs})
        return
    echo(versions[0].path)
    for f in versions:
        echo()
        rows = [
            ("file", f"{f.file_id} ({f.state})"),
            ("size", human_size(f.size)),
            ("md5", f.md5 or "-"),
            ("origin", f.origin),
            ("created", human_time(f.created_at)),
            ("uploaded", human_time(f.uploaded_at)),
            ("verified", f.verified_with or "-"),
            ("mode", show_mode(f.mode)),
            ("class", f.storage_class or "-"),
            ("archived", human_time(f.archived_at)),
            ("published", human_time(f.published_at)),
            ("expired", human_time(f.expired_at)),
            ("tags", ", ".join(tags[f.file_id]) or "-"),
            ("hosts", ", ".join(h.host for h in hosts[f.file_id]) or "-"),
            ("key", f.key),
        ]
        if copies is not None:
            rows.insert(-1, ("copies", ", ".join(map(copy_line, copies[f.file_id])) or "-"))
        for name, value in rows:
            echo(f"  {name:<10} {value}")


@click.command()
@json_option()
@pass_app
def status(app: App, as_json: bool) -> None:
    """Whether the catalog and store answer; files and bytes by state; this host's cache.

    Exits 1 if the catalog or a store cannot be reached (with several stores, each
    is listed).

    \b
    Example:
      repo status
    """
    from ..admin import status_report
    from ..urls import mask_url

    rep = status_report(app.config())
    states = ("unpublished", "published", "expired")
    if as_json:
        echo_json(
            {
                "ok": rep.ok,
                "catalog": {
                    "url": rep.catalog,
                    "reachable": rep.catalog_error is None,
                    "error": rep.catalog_error,
                    "schema_version": rep.schema_version,
                },
                "store": {
                    "url": rep.store,
                    "reachable": rep.store_error is None,
                    "error": rep.store_error,
                },
                **(
                    {
                        "stores": [
                            {"name": n, "url": mask_url(u), "reachable": e is None, "error": e}
                            for n, (u, e) in rep.stores.items()
                        ]
                    }
                    if rep.stores
                    else {}
                ),
                "states": {
                    s: {
                        "file_count": rep.counts.get(s, (0, 0))[0],
                        "bytes": rep.counts.get(s, (0, 0))[1],
                    }
                    for s in states
                }
                if rep.catalog_error is None
                else None,
                "cache": {
                    "host": rep.host,
                    "file_count": rep.cache_files,
                    "bytes": rep.cache_bytes,
                    "cache_max_bytes": rep.cache_limit,
                },
            }
        )
    else:
        catalog_state = rep.catalog_error or (
            "ok" if rep.schema_version is not None else "ok, empty (set up on first use)"
        )
        echo(f"catalog  {rep.catalog}  {catalog_state}")
        named = f" ({rep.store_name})" if rep.stores else ""
        echo(f"store    {rep.store}{named}  {rep.store_error or 'ok'}")
        for name, (url, error) in rep.stores.items():
            echo(f"store    {mask_url(url)} ({name})  {error or 'ok'}")
        echo()
        if rep.catalog_error is None:
            rows = []
            for s in states:
                count, size = rep.counts.get(s, (0, 0))
                rows.append([s, count, human_size(size)])
            echo(table(["STATE", "FILES", "BYTES"], rows))
            echo()
        limit = "no limit" if rep.cache_limit is None else f"limit {human_size(rep.cache_limit)}"
        echo(
            f"cache on {rep.host}: {rep.cache_files} files, {human_size(rep.cache_bytes)} ({limit})"
        )
    if not rep.ok:
        sys.exit(1)
