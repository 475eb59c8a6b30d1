"""The ``repo`` command: a thin click shell over the library (parsing and formatting only)."""

from __future__ import annotations

import sys

import click

from ..demo import run_demo
from ..errors import RepoError

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="repo")
def cli() -> None:
    """Distributed, verified file repository on S3 (or a local directory)."""


@cli.command()
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Configuration file (default: $REPO_CFG, ~/.repo_cfg, else the embedded default).",
)
def demo(config: str | None) -> None:
    """Add, tag, publish, find and read back a few files, printing each step.

    Example: repo demo
    """
    run_demo(click.echo, config=config)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RepoError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"Try: {exc.hint}", err=True)
        sys.exit(1)
