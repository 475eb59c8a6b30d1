"""Asking before something cannot be undone: the one way every command does it.

A question needs a person to answer it. Off a terminal (a script, a pipe, cron) nobody
can, and reading the answer from a pipe would take whatever happens to be there: the
command stops instead, saying to pass ``--yes``.
"""

from __future__ import annotations

import sys

import click

from ..errors import UsageError

__all__ = ["confirm", "on_terminal", "refuse_off_terminal"]


def on_terminal() -> bool:
    """Whether a person can answer (standard input is a terminal)."""
    return sys.stdin.isatty()


def refuse_off_terminal(what: str) -> None:
    """Stop before anything is done when nobody can confirm `what`."""
    if not on_terminal():
        raise UsageError(f"not on a terminal, so nothing can confirm {what}: pass --yes")


def confirm(question: str, *, what: str) -> None:
    """Ask `question` on stderr; `click.Abort` (``Aborted!``, exit 1) unless the answer
    is yes. Off a terminal, a one-line error saying to pass ``--yes``."""
    refuse_off_terminal(what)
    click.confirm(question, abort=True, err=True)
