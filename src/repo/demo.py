"""A short tour, run by ``repo demo`` (``make demo``): each step is one library call,
printed with the ``repo`` command that makes the same call, so the tour teaches the
command line as well as showing what the library does.

It runs in a throwaway repository of its own (a SQLite catalog and a directory store in a
new temporary directory), never in the one ``$REPO_CFG`` or ``~/.repo_cfg`` names: a
first try must not leave demo files in a shared catalog. Only a configuration named
explicitly (``repo --config FILE demo``) is written into. The directory is kept so the
printed commands can be tried against it; the last lines say how to remove it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .repository import Repo
from .units import human_size

if TYPE_CHECKING:
    from collections.abc import Callable

    from .file import RepoFile

__all__ = ["DemoPlace", "run_demo"]


@dataclass(frozen=True)
class DemoPlace:
    """Where a demo ran: its working directory (the input files, and for a throwaway
    repository the repository itself) and the configuration file its commands use."""

    directory: Path
    config_path: Path
    throwaway: bool


def run_demo(echo: Callable[[str], None], *, config: str | None = None) -> DemoPlace:
    """Add, tag, publish, find and read back files, printing each step and its command."""
    place = _make_place(config)
    try:
        _tour(echo, place)
    except BaseException:
        # Nothing was said about the directory yet, so nobody would remove it: a bad
        # --config or an interrupted demo must not leave one behind in /tmp each time.
        shutil.rmtree(place.directory, ignore_errors=True)
        raise
    return place


def _tour(echo: Callable[[str], None], place: DemoPlace) -> None:
    d = place.directory
    q = shlex.quote
    if place.throwaway:
        echo(f"A throwaway repository in {d}: a SQLite catalog and a directory store.")
        echo("Your own configuration ($REPO_CFG, ~/.repo_cfg) is not used.")
    else:
        echo(f"Writing into the repository configured in {place.config_path} (--config).")
    echo("Each step shows the repo command that does the same. To run them yourself:")
    echo(f"  $ cd {q(str(d))} && export REPO_CFG={q(str(place.config_path))}")
    echo("")

    today = datetime.now(UTC)
    day = f"{today:%Y-%m-%d}"
    daily, notes = d / "daily.csv", d / "notes.txt"
    with Repo(str(place.config_path)) as r:
        daily.write_text(f"day,visits\n{day},100\n", encoding="utf-8")
        first = r.add(
            "demo/reports/daily.csv",
            daily,
            tags=["demo", "report"],
            when=today,
            period="day",
            publish=True,
        )
        r.commit()
        _step(echo, 1, f"Added daily.csv as {first.path}, tagged, date-tagged, published:")
        echo(f"   {_described(first)}")
        _command(
            echo,
            "repo add daily.csv --as demo/reports/daily.csv --tag demo --tag report "
            f"--date {day} --publish",
        )

        notes.write_text("written by repo demo\n", encoding="utf-8")
        note = r.add("demo/notes.txt", notes, tags=["demo"], publish=True)
        note = r.newest(note.path).tag_path("team=ops")
        r.commit()
        _step(echo, 2, f"Added notes.txt as {note.path} and tagged its path (every version):")
        echo(f"   {_described(note)}, path tags {', '.join(note.path_tags)}")
        _command(echo, "repo add notes.txt --as demo/notes.txt --tag demo --publish")
        _command(echo, "repo tag demo/notes.txt --path-tag team=ops")

        daily.write_text(f"day,visits\n{day},150\n", encoding="utf-8")
        second = r.add(
            "demo/reports/daily.csv",
            daily,
            tags=["demo", "report", "revised"],
            when=today,
            period="day",
            publish=True,
        )
        r.commit()
        _step(echo, 3, f"Published a new version of {second.path}:")
        echo(f"   {_described(second)}; file {first.file_id} is now {first.refresh().state}")
        _command(
            echo,
            "repo add daily.csv --as demo/reports/daily.csv --tag demo --tag report "
            f"--tag revised --date {day} --publish",
        )

        found = r.find(all=["demo", "report"], exclude=["draft"])
        _step(echo, 4, "Found by tags: all of demo and report, but not draft:")
        echo(f"   {_listed(found)}")
        _command(echo, "repo find --all demo --all report --exclude draft")
        found = r.find(any=["team=ops", "revised"])
        echo(f"   any of team=ops and revised: {_listed(found)}")
        _command(echo, "repo find --any team=ops --any revised")

        current = r.current("demo/reports/daily.csv")
        with current.open() as fp:
            content = fp.read()
        _step(echo, 5, f"Read back {current.path}, verified, through this host's cache:")
        echo(f"   {content!r}")
        echo(f"   (the read-only verified copy: {current.local_path})")
        _command(echo, "repo cat demo/reports/daily.csv")

        history = r.history(current.path)
        _step(echo, 6, f"Every version of {current.path}, newest first:")
        echo("   " + ", ".join(f"file {v.file_id} {v.state}" for v in history))
        _command(echo, "repo show demo/reports/daily.csv")

        _step(echo, 7, "The current files under demo/:")
        echo(f"   {_listed(r.list('demo/*'))}")
        _command(echo, "repo list 'demo/*'")

        counts = r.status()
        _step(echo, 8, "What the catalog holds:")
        echo(
            "   "
            + ", ".join(
                f"{state} {n} file{'' if n == 1 else 's'} ({human_size(size)})"
                for state, (n, size) in counts.items()
            )
        )
        _command(echo, "repo status")

    echo("")
    echo(f"To run repo yourself: {_how_to_run()}")
    echo("Install it for everyday use: README.md, section Install (pipx install .).")
    if place.throwaway:
        echo(f"The demo repository stays in {d}; remove it with: rm -rf {q(str(d))}")
    else:
        echo(f"The demo's input files are in {d}; remove them with: rm -rf {q(str(d))}")


def _make_place(config: str | None) -> DemoPlace:
    directory = Path(tempfile.mkdtemp(prefix="repo-demo-")).resolve()
    if config is not None:
        return DemoPlace(directory, Path(config).expanduser().resolve(), throwaway=False)
    settings = {
        "store": (directory / "store").as_uri(),
        "database": f"sqlite:///{directory / 'catalog.db'}",
        "local_root": str(directory / "local"),
    }
    config_path = directory / "config.json"
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fp:
        json.dump(settings, fp, indent=4)
        fp.write("\n")
    return DemoPlace(directory, config_path, throwaway=True)


def _how_to_run() -> str:
    """How to start the `repo` that runs now: by name when that is the one on PATH, else
    by its path, since ``make demo`` runs it from a virtual environment not on PATH."""
    script = Path(sys.executable).parent / "repo"
    on_path = shutil.which("repo")
    if on_path is not None and Path(on_path).resolve() == script.resolve():
        return "repo --help (it is on your PATH)."
    if not script.exists():  # installed with its scripts elsewhere: name the interpreter
        return f"{shlex.quote(sys.executable)} -m repo --help"
    shown = script
    if script.is_relative_to(Path.cwd()):
        shown = script.relative_to(Path.cwd())
    activate = shown.parent / "activate"
    if not activate.exists():
        return f"{shlex.quote(str(shown))} --help"
    return (
        f"{shlex.quote(str(shown))} --help, or first "
        f"`source {shlex.quote(str(activate))}` (then plain repo)."
    )


def _step(echo: Callable[[str], None], number: int, text: str) -> None:
    echo(f"{number}. {text}")


def _command(echo: Callable[[str], None], command: str) -> None:
    echo(f"   $ {command}")


def _described(f: RepoFile) -> str:
    return f"file {f.file_id}, {human_size(f.size)}, {f.state}, md5 {f.md5}"


def _listed(files: list[RepoFile]) -> str:
    return ", ".join(f"{f.path} (file {f.file_id})" for f in files) or "nothing"
