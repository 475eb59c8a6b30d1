"""The ``repo`` command: a thin click shell over the library (parsing and formatting only).

Exit codes: 0 success, 1 an error the user can act on (``Error: ...`` and, where it
helps, ``Try: ...`` on stderr), 2 bad usage (click's message), 3 `repo wait` timed out,
130 Ctrl-C. With
``--json``, an error is one JSON object on stderr instead: ``{"error": ..., "hint": ...}``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
import traceback
from typing import Any, NoReturn

import click

from ..errors import RepoError
from . import app as app_module
from .admin import config, create, ctl, demo, destroy
from .app import App, freeze_heap
from .archival import archive, thaw
from .backups import backup, restore
from .erase import purge
from .expiring import expire
from .fetching import fetch
from .files import add, cat, get, publish, tag, upload
from .housekeeping import cache, gc, host
from .interrupts import second_ctrl_c_quits
from .output import echo, shown
from .queries import find, history, list_files, show, status, wait
from .recovery import recover, verify
from .replication import drop, replicate, store

__all__ = ["INTERRUPTED", "cli", "interrupted_line", "main"]

logger = logging.getLogger(__name__)


#: What Ctrl-C leaves behind, said when it happens: the transaction is rolled back and
#: the objects it wrote are deleted on the way out (`Session.rollback`); where that
#: fails, a warning just above says so and names `repo gc --orphans`.
INTERRUPTED = "nothing recorded; objects it uploaded were deleted (or see above)."
#: Commands that commit as they go (each copy, purge, repair, move on its own): Ctrl-C
#: keeps what they finished, and running them again does the rest.
GOES_ON = ("archive", "gc", "recover", "replicate")


def interrupted_line(command: str | None) -> str:
    """What Ctrl-C left behind, for the command it stopped."""
    if command in GOES_ON:
        return f"the work it finished is kept; `repo {command}` again does the rest."
    return INTERRUPTED


class RepoGroup(click.Group):
    """Turns library errors into ``Error:`` / ``Try:`` lines and exit status 1.

    Done here rather than in `main` so that `click.testing.CliRunner` sees exactly what a
    user sees.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Seen before the command parses its own options, so that even click's usage
        # errors come out as JSON for a caller who asked for JSON.
        given = args[: args.index("--")] if "--" in args else args
        ctx.meta[_WANTS_JSON] = "--json" in given
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if not _wants_json(ctx):
                raise
            where = exc.ctx if isinstance(exc, click.UsageError) else None
            hint = f"see `{where.command_path} --help`" if where is not None else None
            _echo_error_json(exc.format_message(), hint)
            ctx.exit(exc.exit_code)
        except click.exceptions.Abort:
            if not _wants_json(ctx):
                raise
            _echo_error_json("aborted: nothing was changed", None)
            ctx.exit(1)
        except click.exceptions.Exit:
            raise
        except KeyboardInterrupt:
            # The command's transaction was rolled back on the way out (`App.repo`).
            left = interrupted_line(ctx.invoked_subcommand)
            if _wants_json(ctx):
                _echo_error_json(f"interrupted: {left}", None)
            else:
                echo("", err=True)
                echo(f"Interrupted: {left}", err=True)
            ctx.exit(130)  # what a shell reports for a command ended by SIGINT
        except RepoError as exc:
            self._report(ctx, exc, f"Error: {exc.message}", exc.hint)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                _reader_gone()
                ctx.exit(READER_GONE)
            self._report(ctx, exc, f"Error: {exc}", None)
        except Exception as exc:
            self._report(
                ctx,
                exc,
                f"Error: unexpected {type(exc).__name__}: {exc}",
                "run again with --debug and report the traceback",
            )
        raise AssertionError("unreachable")

    @staticmethod
    def _report(ctx: click.Context, exc: BaseException, line: str, hint: str | None) -> NoReturn:
        app = ctx.find_object(App)
        if app is not None and app.debug:
            traceback.print_exception(exc)
        else:
            logger.debug("command failed", exc_info=exc)
        if _wants_json(ctx):
            _echo_error_json(line.removeprefix("Error: "), hint)
            ctx.exit(1)
        # An error names what it is about (a path, a file name from disk): one line, shown.
        echo(shown(line), err=True)
        if hint:
            echo(f"Try: {shown(hint)}", err=True)
        ctx.exit(1)


_WANTS_JSON = "repo.json"

#: The exit status when whoever read the output stopped reading (`repo cat big | head`):
#: the status a shell reports for `cat` there, ended by SIGPIPE (128 + 13).
READER_GONE = 128 + signal.SIGPIPE


def _reader_gone() -> None:
    """Quietly: point standard output at /dev/null, so that flushing what is left on the
    way out raises nothing more (no "Broken pipe" message)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing to flush into a pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _wants_json(ctx: click.Context) -> bool:
    app = ctx.find_object(App)
    return bool(ctx.meta.get(_WANTS_JSON)) or (app is not None and app.json)


def _echo_error_json(message: str, hint: str | None) -> None:
    """The error as one line of JSON on stderr (the text as it is: JSON escapes it)."""
    click.echo(json.dumps({"error": message, "hint": hint}, ensure_ascii=True), err=True)


@click.group(cls=RepoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Configuration file (default: $REPO_CFG, ~/.repo_cfg, else the embedded default).",
)
@click.option("-v", "--verbose", count=True, help="Log what happens (-vv: more).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(package_name="s3-file-repo")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int, debug: bool) -> None:
    """Distributed, verified file repository on S3 (or a local directory).

    \b
    Example:
      repo add daily.csv --as reports/daily.csv --tag sales --publish
      repo find --all sales
      repo get reports/daily.csv -o -

    Shell completion (bash): eval "$(_REPO_COMPLETE=bash_source repo)"
    """
    app = ctx.ensure_object(App)
    app.config_path, app.verbose, app.debug = config_path, verbose, debug
    app.setup_logging()


def _late_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(App).config_path = value


#: One line per command for `repo --help`, short enough never to be cut off at 80 columns.
SUMMARIES = {
    "add": "Add local files as new versions.",
    "archive": "Move versions to an archival storage class (Glacier).",
    "backup": "Back the catalog up into the backup store.",
    "cache": "This host's cache of verified copies.",
    "cat": "Write a file's current version to standard output.",
    "config": "Show the configuration in effect (secrets masked).",
    "create": "Create the catalog (or upgrade it) and check the store.",
    "demo": "Add, tag, publish, find and read back a few files.",
    "destroy": "Drop the catalog.",
    "drop": "Delete a copy from one store, never below mincopies.",
    "expire": "Expire a version, or what a retention schedule drops.",
    "fetch": "Bring many files into this host's cache (and out).",
    "find": "Find files by tags.",
    "gc": "Purge what is no longer needed.",
    "get": "Copy a file's current version out, verified.",
    "history": "The versions of a path, one line each.",
    "host": "Hosts known to the catalog.",
    "list": "List files by path pattern.",
    "publish": "Publish a version.",
    "purge": "Delete a version now, whatever its state.",
    "recover": "Repair lost or damaged files from this host's cache.",
    "replicate": "Copy versions into the other stores, up to numcopies.",
    "restore": "Restore the catalog from its backups.",
    "show": "Every version of a path, in full.",
    "status": "Whether the catalog and store answer; counts.",
    "store": "The stores and what the catalog records in each.",
    "tag": "Add or remove tags.",
    "thaw": "Restore archived versions so they can be read.",
    "upload": "Upload and verify a version.",
    "verify": "Check the store against the catalog.",
    "wait": "Wait until a file matches a query.",
}

for _command in (
    create,
    destroy,
    ctl,
    config,
    demo,
    add,
    upload,
    publish,
    expire,
    tag,
    list_files,
    find,
    fetch,
    get,
    cat,
    show,
    history,
    status,
    gc,
    purge,
    cache,
    host,
    backup,
    restore,
    verify,
    recover,
    replicate,
    drop,
    store,
    archive,
    thaw,
    wait,
):
    # `--config` is also accepted after the command name (`repo list --config FILE`);
    # not on `ctl`, whose `--config` is the seed's "show the configuration".
    if _command is ctl:
        _command.hidden = True  # the seed's spelling: kept, out of the listing
        cli.add_command(_command)
        continue
    _command.short_help = SUMMARIES[str(_command.name)]
    _command.params.append(
        click.Option(
            ["--config", "command_config"],
            type=click.Path(dir_okay=False),
            metavar="FILE",
            expose_value=False,
            hidden=True,
            callback=_late_config,
        )
    )
    cli.add_command(_command)


def main() -> None:
    app_module.OWN_PROCESS = True
    try:
        with second_ctrl_c_quits():
            cli.main(prog_name="repo")
    finally:
        # The process ends here: the interpreter's last collections need not walk what
        # is left (files and connections were closed by the command).
        freeze_heap()
