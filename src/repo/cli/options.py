"""Options several commands share, defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import UsageError
from ..permissions import parse_mode
from ..transfers import DEFAULT_WORKERS
from .app import App

__all__ = ["MODE", "json_option", "terminate_option", "workers_option"]

F = TypeVar("F", bound=Callable[..., Any])


#: Which versions `list` and `find` look at: one spelling for both.
state_option = click.option(
    "--state",
    type=click.Choice(["unpublished", "published", "expired", "all"]),
    default="published",
    show_default=True,
    help="Which versions (published: the current ones).",
)

#: For commands taking PATH|ID: read an all-digit argument as a path.
as_path_option = click.option(
    "--path", "as_path", is_flag=True, help="Read the argument as a path even if all digits."
)


class _Mode(click.ParamType):  # type: ignore[type-arg]
    """Octal permission bits (``0640``), read by `repo.permissions.parse_mode`."""

    name = "mode"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_mode(str(value))
        except UsageError as exc:
            self.fail(f"{exc.message}; {exc.hint}" if exc.hint else exc.message, param, ctx)


MODE = _Mode()


def json_option(
    help: str = "One JSON object on stdout; errors as JSON on stderr.",
) -> Callable[[F], F]:
    """``--json``: print one JSON object instead of text (the command's ``as_json``).

    The flag also turns the command's errors into JSON (`cli.RepoGroup`): it is
    remembered on the `App` as soon as click parses it.
    """
    return click.option("--json", "as_json", is_flag=True, help=help, callback=_remember_json)


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.ensure_object(App).json = True
    return value


def workers_option(what: str) -> Callable[[F], F]:
    """``--workers N``: how many `what` run at once."""
    return click.option(
        "--workers",
        default=DEFAULT_WORKERS,
        show_default=True,
        type=click.IntRange(min=1),
        help=f"Parallel {what}.",
    )


def terminate_option() -> Callable[[F], F]:
    """``--terminate-others``: end the sessions that hold the catalog instead of failing."""
    return click.option(
        "--terminate-others",
        is_flag=True,
        help="End other sessions holding the catalog (their uncommitted work is rolled "
        "back) instead of failing after waiting 30 s for them.",
    )
