"""Which repository path each local file named to `repo add` is stored under.

Copy tools (`cp`, `aws s3 cp`, `git add`, `dvc add`) take the local sources first, and
so does `repo add FILE...`: each file is stored under a name derived from it (its path
as given, cleaned, or its base name where that path is absolute or leads out of the
current directory), under a prefix if one is given, or under `--as NAME` when a single
file (or standard input) is added. The seed's spelling, `repo add PATH SOURCE` with the
repository path first, still works where it cannot be read the other way: PATH is no
local file and SOURCE is one (or ``-``). No argument list ever stores one file's bytes
under another file's name.
"""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING

from .errors import NotFoundError, UsageError
from .paths import without_dot_slash

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["STDIN", "derived_path", "pair_sources"]

#: The argument that means standard input.
STDIN = "-"


def derived_path(source: str, prefix: str = "") -> str:
    """The repository path the local file `source` is added under.

    ``./daily.csv`` is ``daily.csv``, ``out/a.csv`` is ``out/a.csv``; an absolute path or
    one leading out of the current directory (``../x.csv``) gives its base name, as `cp`
    does. Under `prefix` (``reports`` or ``reports/``) when one is given.
    """
    norm = os.path.normpath(source).replace(os.sep, "/")
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        norm = os.path.basename(norm)
    prefix = prefix.strip("/")
    return f"{prefix}/{norm}" if prefix else norm


def pair_sources(
    args: Sequence[str],
    *,
    as_name: str | None = None,
    prefix: str = "",
    exists: Callable[[str], bool] = os.path.lexists,
) -> list[tuple[str, str]]:
    """``(repository path, source)`` for each argument of ``repo add``, in order.

    Refuses, with a hint, what would be ambiguous or lossy: ``-`` without `as_name`,
    `as_name` with several sources, a directory (that is ``--recursive``), a source that
    is not there, and two sources that would be stored under one name.
    """
    if not args:
        raise UsageError(
            "name at least one local file to add",
            hint="repo add FILE... (or: some-job | repo add - --as logs/job.log)",
        )
    if (
        len(args) == 2
        and as_name is None
        and not prefix
        and args[0] != STDIN
        and not exists(args[0])
        and (args[1] == STDIN or exists(args[1]))
    ):
        return [(args[0], args[1])]  # the seed's PATH SOURCE: unambiguous here
    if as_name is not None:
        if len(args) != 1:
            raise UsageError(
                f"--as names one file, and {len(args)} were given",
                hint="drop --as to store each under its own name, or use --prefix",
            )
        if prefix:
            raise UsageError(
                "--as and --prefix do not go together", hint="put the prefix into the --as name"
            )
        _check_local(args[0])
        return [(without_dot_slash(as_name), args[0])]  # `--as ./notes.txt`: notes.txt
    if STDIN in args:
        raise UsageError(
            "- (standard input) needs a name", hint="some-job | repo add - --as logs/job.log"
        )
    missing = [source for source in args if not exists(source)]
    if missing:
        hint = "repo add takes local files first: repo add FILE... [--as NAME | --prefix P]"
        if len(args) == 2 and missing == [args[1]] and not prefix:
            # `cp` order, a file then the name to store it under: say how that is spelt.
            file, name = (shlex.quote(arg) for arg in args)
            hint = f"to store {file} as {name}: repo add {file} --as {name}"
        raise NotFoundError(
            f"local file{'s' if len(missing) > 1 else ''} not found: {', '.join(missing)}",
            hint=hint,
        )
    pairs = []
    for source in args:
        _refuse_directory(source)
        pairs.append((derived_path(source, prefix), source))
    seen: dict[str, str] = {}
    for name, source in pairs:
        if name in seen:
            raise UsageError(
                f"{seen[name]} and {source} would both be stored as {name}",
                hint="add them one at a time with --as NAME, or under different --prefix",
            )
        seen[name] = source
    return pairs


def _check_local(source: str) -> None:
    if source == STDIN:
        return
    if not os.path.lexists(source):
        raise NotFoundError(
            f"local file not found: {source}",
            hint="repo add takes local files first: repo add FILE... [--as NAME | --prefix P]",
        )
    _refuse_directory(source)


def _refuse_directory(source: str) -> None:
    if os.path.isdir(source):
        hint = f"add what it holds with: repo add --recursive {source}"
        raise UsageError(f"{source} is a directory", hint=hint)
