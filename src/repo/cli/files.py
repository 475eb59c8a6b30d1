"""Commands that add, change and read files."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from ..sources import STDIN, pair_sources
from ..tags import DATE_TAG_TYPES, parse_when, tags_with_dates
from .app import App, pass_app, resolve
from .bars import ByteBar
from .options import MODE, as_path_option, json_option, workers_option
from .output import echo, echo_json, file_doc, human_size, shown

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["add", "cat", "get", "publish", "tag", "upload"]

PERIODS = click.Choice(list(DATE_TAG_TYPES))


def _when(date_text: str | None) -> datetime | None:
    return parse_when(date_text) if date_text is not None else None


@click.command()
@click.argument("sources", nargs=-1, required=True, metavar="FILE...")
@click.option("--as", "as_name", metavar="NAME", help="Store the one FILE (or -) as NAME.")
@click.option("-t", "--tag", "tags", multiple=True, metavar="TAG", help="Tag the new versions.")
@click.option("--date", "date_text", metavar="DATETIME", help="Date-tag them (ISO 8601, UTC).")
@click.option("--period", type=PERIODS, help="Date-tag granularity (default day).")
@click.option("--publish", is_flag=True, help="Publish them as the current versions.")
@click.option("-r", "--recursive", is_flag=True, help="Each FILE is a directory: add it all.")
@click.option("--prefix", default="", help="Repository path prefix of the names derived.")
@click.option(
    "--follow-symlinks",
    is_flag=True,
    help="With --recursive: add what symbolic links under the directory point to "
    "(default: skip them, with a warning).",
)
@click.option(
    "--mode",
    type=MODE,
    help="Permission bits to record, e.g. 0640 (default: each file's own; none for -). "
    "get and fetch -o apply them, less the reader's umask.",
)
@workers_option("uploads")
@click.option(
    "--cache/--no-cache",
    "keep_cached",
    default=None,
    help="Keep a copy in this host's cache (default: only of standard input; files are "
    "here already).",
)
@json_option("Print the new versions as JSON.")
@pass_app
def add(
    app: App,
    sources: tuple[str, ...],
    as_name: str | None,
    tags: tuple[str, ...],
    date_text: str | None,
    period: str | None,
    publish: bool,
    recursive: bool,
    prefix: str,
    follow_symlinks: bool,
    mode: int | None,
    workers: int,
    keep_cached: bool | None,
    as_json: bool,
) -> None:
    """Add local files as new versions, each under a name derived from it.

    A FILE is stored under its path as given, cleaned (./daily.csv as daily.csv), or
    its base name if that path is absolute or leads out of this directory; under
    --prefix if given; or as NAME with --as (one FILE). - reads standard input and
    needs --as. With --recursive each FILE is a directory and every file under it is
    added, paths relative to it (under --prefix), uploaded in parallel. Symbolic links
    under it are skipped, each with a warning, unless --follow-symlinks. All or nothing.
    The seed's `repo add PATH SOURCE` (repository path first) still works when PATH is
    no local file.

    \b
    Examples:
      repo add daily.csv --tag sales --date 2026-11-25 --publish
      repo add *.csv --prefix reports/2026-11-25 --publish
      some-job | repo add - --as logs/job.log --publish
      repo add ./out --recursive --prefix runs/42 --tag run=42 --publish
    """
    when = _when(date_text)
    skipped: list[str] = []
    added = []
    pairs: list[tuple[str, str]] = []
    if recursive:
        if as_name is not None:
            raise click.UsageError("--as names one file; with --recursive, use --prefix")
        if not sources:
            raise click.UsageError("name the directory to add: repo add --recursive DIR")
    else:
        if follow_symlinks:
            raise click.UsageError("--follow-symlinks needs --recursive")
        pairs = pair_sources(sources, as_name=as_name, prefix=prefix)
    with app.repo() as r:
        if recursive:
            bar = ByteBar("adding")
            try:
                for directory in sources:
                    report = r.add_tree(
                        directory,
                        prefix=prefix,
                        tags=tags,
                        when=when,
                        period=period,
                        publish=publish,
                        workers=workers,
                        progress=bar.listener,
                        keep_cached=bool(keep_cached),
                        follow_symlinks=follow_symlinks,
                        mode=mode,
                    )
                    added += report.files
                    skipped += report.skipped
            finally:
                bar.close()
        else:
            for path, src in pairs:
                stream = src == STDIN
                if stream and sys.stdin.isatty():
                    echo("reading standard input (end it with Ctrl-D)", err=True)
                bar = ByteBar("uploading", total=None if stream else os.path.getsize(src))
                try:
                    rf = r.add(
                        path,
                        sys.stdin.buffer if stream else src,
                        tags=tags,
                        when=when,
                        period=period,
                        publish=publish,
                        progress=bar.listener,
                        keep_cached=keep_cached,
                        mode=mode,
                    )
                finally:
                    bar.close()
                added.append(rf)
    why = " (it leads back to a directory above it)" if follow_symlinks else ""
    for link in skipped:
        echo(f"Warning: skipped symbolic link {shown(link)}{why}", err=True)
    if skipped and not follow_symlinks:
        echo("Try: --follow-symlinks to add what they point to", err=True)
    if as_json:
        doc: dict[str, object] = {"files": [file_doc(f) for f in added]}
        if recursive:
            doc["skipped"] = skipped
        echo_json(doc)
        return
    if not recursive:
        # Where a name was derived from the file, say which file it came from.
        named = as_name is not None or pairs == [tuple(sources)]
        for f, (_, src) in zip(added, pairs, strict=True):
            origin = "" if named or src == f.path else f" from {shown(src)}"
            size = human_size(f.size)
            echo(f"added {shown(f.path)}{origin} (file {f.file_id}, {size}, {f.state})")
        return
    total = sum(f.size or 0 for f in added)
    state = "published" if publish else "unpublished"
    links = f"; skipped {len(skipped)} symbolic links" if skipped else ""
    echo(f"added {len(added)} files ({human_size(total)}, {state}){links}")


@click.command()
@click.argument("ref", metavar="ID|PATH")
@as_path_option
@json_option()
@pass_app
def upload(app: App, ref: str, as_path: bool, as_json: bool) -> None:
    """Upload and verify a version (PATH: its newest version).

    \b
    Example:
      repo upload reports/daily.csv
    """
    with app.repo() as r:
        f = resolve(r, ref, which="newest", as_path=as_path)
        bar = ByteBar("uploading", total=f.size)
        try:
            f.upload(progress=bar.listener)
        finally:
            bar.close()
    if as_json:
        echo_json({"file": file_doc(f)})
        return
    echo(f"uploaded {shown(f.path)} (file {f.file_id}, {human_size(f.size)}, md5 {f.md5})")


@click.command()
@click.argument("ref", metavar="ID|PATH")
@as_path_option
@json_option()
@pass_app
def publish(app: App, ref: str, as_path: bool, as_json: bool) -> None:
    """Publish a version (PATH: its newest), uploading it first if needed.

    The path's previous current version is expired.

    \b
    Example:
      repo publish reports/daily.csv
    """
    with app.repo() as r:
        f = resolve(r, ref, which="newest", as_path=as_path)
        f.publish()
    if as_json:
        echo_json({"file": file_doc(f)})
        return
    echo(f"published {shown(f.path)} (file {f.file_id})")


@click.command()
@click.argument("ref", metavar="ID|PATH")
@click.argument("tags", nargs=-1)
@click.option("--remove", is_flag=True, help="Remove the tags instead.")
@click.option("--path-tag", is_flag=True, help="Tag the path: every version, past and future.")
@click.option("--date", "date_text", metavar="DATETIME", help="Add date tags (ISO 8601, UTC).")
@click.option("--period", type=PERIODS, help="Date-tag granularity (default day).")
@as_path_option
@json_option()
@pass_app
def tag(
    app: App,
    ref: str,
    tags: tuple[str, ...],
    remove: bool,
    path_tag: bool,
    date_text: str | None,
    period: str | None,
    as_path: bool,
    as_json: bool,
) -> None:
    """Add (or --remove) TAGs on a version (PATH: its newest version).

    \b
    Examples:
      repo tag reports/daily.csv sales region=eu
      repo tag reports/daily.csv --date 2026-11-25T18:00 --period hour
      repo tag reports/daily.csv --path-tag --remove draft
    """
    # Tags to remove may be any recorded before today's rules (`tags.validate_tag`).
    names = tags_with_dates(tags, when=_when(date_text), period=period, new=not remove)
    if not names:
        raise UsageError("no tags given", hint="name tags, or use --date/--period")
    with app.repo() as r:
        f = resolve(r, ref, which="newest", as_path=as_path)
        if remove:
            had = set(f.path_tags if path_tag else f.file_tags)
            lacking = [n for n in names if n not in had]
            where = f"path {f.path}" if path_tag else f"{f.path} (file {f.file_id})"
            if len(lacking) == len(names):
                raise UsageError(
                    f"{shown(where)} has no tag {', '.join(shown(n) for n in lacking)}",
                    hint=f"see its tags with: repo show {f.file_id}",
                )
            for name in lacking:
                echo(f"Note: {shown(where)} had no tag {shown(name)}", err=True)
            names = [n for n in names if n not in lacking]
        action = {
            (False, False): f.tag,
            (True, False): f.untag,
            (False, True): f.tag_path,
            (True, True): f.untag_path,
        }[(remove, path_tag)]
        action(*names)
        if as_json:
            echo_json(
                {
                    "file": file_doc(f, tags=r.tags_of([f])[f.file_id]),
                    "path_tag": path_tag,
                    "removed" if remove else "added": names,
                }
            )
            return
    target = f"path {f.path}" if path_tag else f"{f.path} (file {f.file_id})"
    verb = "removed from" if remove else "added to"
    echo(f"{len(names)} tag(s) {verb} {target}: {', '.join(names)}")


@click.command()
@click.argument("ref", metavar="PATH|ID")
@click.option("-o", "--output", "dest", metavar="DEST", help="File or directory; - for stdout.")
@click.option("-f", "--force", is_flag=True, help="Overwrite DEST if it exists.")
@click.option(
    "--cache/--no-cache",
    "keep_cached",
    default=None,
    help="Also keep a copy in this host's cache (default: only when writing to stdout).",
)
@as_path_option
@json_option()
@pass_app
def get(
    app: App,
    ref: str,
    dest: str | None,
    force: bool,
    keep_cached: bool | None,
    as_path: bool,
    as_json: bool,
) -> None:
    """Copy the current version of PATH out of the repository, verified.

    DEST defaults to the path's file name in the current directory. A version this
    host has cached is copied from the cache; one it has not is downloaded straight
    into DEST (or to stdout and into the cache in the same pass).

    \b
    Examples:
      repo get reports/daily.csv -o /tmp/daily.csv
      repo get reports/daily.csv -o - | wc -l
    """
    if as_json and dest == "-":
        raise click.UsageError("--json prints to stdout, where -o - writes the file: choose one")
    with app.repo() as r:
        f = resolve(r, ref, which="current", as_path=as_path)
        bar = ByteBar("downloading", total=f.size)
        try:
            if dest == "-":
                cache = keep_cached is not False
                f.write_to(sys.stdout.buffer, progress=bar.listener, keep_cached=cache)
                sys.stdout.buffer.flush()
                return
            written = f.save_as(
                dest or ".", overwrite=force, progress=bar.listener, keep_cached=bool(keep_cached)
            )
        finally:
            bar.close()
    if as_json:
        echo_json({"file": file_doc(f), "written_to": str(written)})
        return
    echo(f"saved {shown(str(written))} ({human_size(f.size)}, file {f.file_id})")


@click.command()
@click.argument("ref", metavar="PATH|ID")
@as_path_option
@pass_app
def cat(app: App, ref: str, as_path: bool) -> None:
    """Write the current version of PATH to standard output, verified.

    \b
    Example:
      repo cat reports/daily.csv | head
    """
    with app.repo() as r:
        f = resolve(r, ref, which="current", as_path=as_path)
        bar = ByteBar("downloading", total=f.size)
        try:
            f.write_to(sys.stdout.buffer, progress=bar.listener)
        finally:
            bar.close()
        sys.stdout.buffer.flush()
