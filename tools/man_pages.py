"""Man pages for `repo` and each of its commands, drawn from the click definitions.

    python tools/man_pages.py man/        # what `make man` runs

writes `repo.1`, `repo-add.1`, `repo-cache-status.1`, ... (one per visible command,
groups and their subcommands alike). The pages are committed under man/ and the wheel
installs them into `share/man/man1/` (pyproject.toml, `[tool.setuptools.data-files]`), so
`man repo-add` works wherever the environment's `bin/` is on PATH, and pipx links them;
tests/test_man_pages.py fails when a page is missing or out of date.

Not click-man: it writes the help text into roff unescaped (click's `\\b` no-rewrap
marker goes through as a raw backspace, a line starting with `.` would be read as a
request), fills the examples into one line, and lists hidden commands as pages that it
does not write.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

import repo
from repo.cli import cli

if TYPE_CHECKING:
    from collections.abc import Iterator


def commands(
    command: click.Command = cli, parent: click.Context | None = None, name: str = "repo"
) -> Iterator[click.Context]:
    """A context for the command and for each of its visible subcommands, depth first."""
    ctx = click.Context(command, info_name=name, parent=parent, **command.context_settings)
    yield ctx
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):  # in the order `--help` lists them
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, ctx, sub_name)


def page_name(ctx: click.Context) -> str:
    """`repo cache status` -> `repo-cache-status`."""
    return ctx.command_path.replace(" ", "-")


def escape(text: str) -> str:
    """Text as roff reads it literally: backslashes and minus signs escaped, and a line
    that would start with a control character (`.` or `'`) guarded."""
    lines = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").split("\n"):
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def description(help_text: str) -> list[str]:
    """Click's help text as roff paragraphs: filled, except blocks click keeps as written
    (a paragraph that starts with the `\\b` marker: examples, lists)."""
    out: list[str] = []
    for paragraph in inspect.cleandoc(help_text.split("\f")[0]).split("\n\n"):
        out.append(".PP")
        if paragraph.startswith("\b"):
            out += [".nf", escape(paragraph.removeprefix("\b").strip("\n")), ".fi"]
        else:
            out.append(escape(" ".join(line.strip() for line in paragraph.splitlines())))
    return out


def man_page(ctx: click.Context) -> str:
    """The roff source of the command's page, section 1."""
    command = ctx.command
    summary = command.get_short_help_str(limit=200)
    lines = [
        f'.TH "{page_name(ctx).upper()}" "1" "" "repo {repo.__version__}" "repo manual"',
        ".SH NAME",
        f"{escape(page_name(ctx))} \\- {escape(summary)}",
        ".SH SYNOPSIS",
        f".B {escape(ctx.command_path)}",
        escape(" ".join(command.collect_usage_pieces(ctx))),
    ]
    if command.help:
        lines += [".SH DESCRIPTION", *description(command.help)]
    options = [
        p.get_help_record(ctx) for p in command.get_params(ctx) if isinstance(p, click.Option)
    ]
    records = [record for record in options if record is not None]
    if records:
        lines.append(".SH OPTIONS")
        for names, help_text in records:
            lines += [".TP", f"\\fB{escape(names)}\\fR", escape(help_text)]
    see_also = [f"{page_name(ctx.parent)}(1)"] if ctx.parent else []
    if isinstance(command, click.Group):
        lines.append(".SH COMMANDS")
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                lines += [
                    ".TP",
                    f"\\fB{escape(name)}\\fR",
                    escape(sub.get_short_help_str(limit=200)),
                ]
                see_also.append(f"{page_name(ctx)}-{name}(1)")
    if see_also:
        lines += [".SH SEE ALSO", ", ".join(f"\\fB{escape(p)}\\fR" for p in see_also)]
    return "\n".join(lines) + "\n"


def man_pages() -> dict[str, str]:
    """Every page, by file name."""
    return {f"{page_name(ctx)}.1": man_page(ctx) for ctx in commands()}


def write_man_pages(directory: Path) -> list[Path]:
    """Write every page into `directory` and remove pages of commands that are gone."""
    directory.mkdir(parents=True, exist_ok=True)
    pages = man_pages()
    for stale in directory.glob("repo*.1"):
        if stale.name not in pages:
            stale.unlink()
    written = []
    for name, text in pages.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/man_pages.py DIRECTORY")
    for path in write_man_pages(Path(sys.argv[1])):
        print(path)
