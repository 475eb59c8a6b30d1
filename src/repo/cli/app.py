"""What every command shares: the global options and opening the repository."""

from __future__ import annotations

import gc
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from ..config import load_config
from ..errors import UsageError
from ..paths import without_dot_slash
from .output import shown

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..config import Config
    from ..file import RepoFile
    from ..repository import Repo

__all__ = ["App", "freeze_heap", "parse_ref", "pass_app", "resolve"]

#: Set by `repo.cli.main`: this process is the `repo` command, not a program (or a test
#: runner) that calls the CLI in its own process and lives on after it.
OWN_PROCESS = False


def freeze_heap() -> None:
    """In the `repo` process only: put every object made so far (most of them the
    modules just imported) out of the garbage collector's reach. Its full collections
    walk every tracked object: with SQLAlchemy, botocore and their kind loaded that is
    hundreds of thousands, walked during a transfer and again, in vain, at exit (0.1 to
    0.2 s of every command measured here). Not in someone else's process: what it
    freezes is never collected there."""
    if OWN_PROCESS:
        gc.freeze()


@dataclass
class App:
    """Global options, parsed once by the group and handed to each command."""

    config_path: str | None = None
    verbose: int = 0
    debug: bool = False
    #: The command was given ``--json``: its errors are JSON too.
    json: bool = False

    def config(self) -> Config:
        return load_config(self.config_path)

    @contextmanager
    def repo(self) -> Iterator[Repo]:
        """The repository; commits when the command succeeds, rolls back otherwise."""
        # Imported here, not above: a command that opens no repository (`--help`,
        # `config --show`) then loads neither the catalog's database layer nor a store.
        from ..repository import Repo

        freeze_heap()
        with Repo(self.config()) as r:
            yield r

    def setup_logging(self) -> None:
        level = logging.WARNING
        if self.debug or self.verbose >= 2:
            level = logging.DEBUG
        elif self.verbose == 1:
            level = logging.INFO
        handler = logging.StreamHandler()
        handler.setFormatter(_ShownFormatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("repo")
        root.handlers[:] = [handler]
        root.setLevel(level)


class _ShownFormatter(logging.Formatter):
    """Log lines name paths and hosts too: each line `shown`, like all output."""

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(shown(line) for line in super().format(record).split("\n"))


pass_app = click.make_pass_decorator(App, ensure=True)


def parse_ref(ref: str, *, as_path: bool = False) -> int | str:
    """A command's PATH|ID argument: all digits is a file id (unless `as_path`), anything
    else a path (``./a.csv``, a shell habit, is a.csv)."""
    if not ref:
        raise UsageError("expected a file id or a path, got an empty string")
    if ref.isascii() and ref.isdigit() and not as_path:
        return int(ref)
    return without_dot_slash(ref)


def resolve(r: Repo, ref: str, *, which: str, as_path: bool = False) -> RepoFile:
    """The version a PATH|ID argument names (`parse_ref`). For a path, `which` picks
    ``newest`` (any state) or ``current``."""
    target = parse_ref(ref, as_path=as_path)
    if isinstance(target, int):
        return r.file(target)
    if which == "current":
        return r.current(target)
    return r.newest(target)
