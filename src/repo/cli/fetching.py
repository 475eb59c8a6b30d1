"""`repo fetch`: many files into the cache (and out to a directory) at once."""

from __future__ import annotations

import click

from .app import App, pass_app
from .bars import ByteBar
from .options import json_option, workers_option
from .output import echo, echo_json, file_doc, human_size

__all__ = ["fetch"]


@click.command()
@click.argument("pattern", required=False)
@click.option("--any", "any_", multiple=True, metavar="TAG", help="At least one of these.")
@click.option("--all", "all_", multiple=True, metavar="TAG", help="Every one of these.")
@click.option("--exclude", multiple=True, metavar="TAG", help="None of these.")
@click.option(
    "-o", "--output", "dest", type=click.Path(file_okay=False), help="Also copy them here."
)
@click.option("-f", "--force", is_flag=True, help="Overwrite files already in the output.")
@workers_option("downloads")
@json_option()
@pass_app
def fetch(
    app: App,
    pattern: str | None,
    any_: tuple[str, ...],
    all_: tuple[str, ...],
    exclude: tuple[str, ...],
    dest: str | None,
    force: bool,
    workers: int,
    as_json: bool,
) -> None:
    """Bring the current versions of many files into this host's cache, verified,
    downloading in parallel; with -o, also copy each to DIR/<its path>.

    Choose them by tags (as `repo find`), by a glob PATTERN (as `repo list`), or both.

    \b
    Examples:
      repo fetch --all sales --any day=2026-11-25 -o ./in
      repo fetch 'models/*' --workers 32
    """
    if pattern is None and not (any_ or all_ or exclude):
        raise click.UsageError("say which files: a PATTERN, tags (--any/--all/--exclude), or both")
    with app.repo() as r:
        chosen = r.find(any=any_, all=all_, exclude=exclude, pattern=pattern)
        bar = ByteBar("fetching")
        try:
            report = r.fetch(
                chosen, dest=dest, overwrite=force, workers=workers, progress=bar.listener
            )
        finally:
            bar.close()
    if as_json:
        echo_json(
            {
                "files": [file_doc(f) for f in report.files],
                "file_count": len(report.files),
                "downloaded": report.downloaded,
                "cached": report.cached,
                "bytes": report.bytes,
                "written": {path: str(target) for path, target in report.written.items()},
            }
        )
        return
    where = f"; copied to {dest}" if dest is not None else ""
    echo(
        f"{len(report.files)} files, {human_size(report.bytes)}: {report.downloaded} downloaded, "
        f"{report.cached} already cached{where}"
    )
