"""MkDocs hooks for the documentation site (mkdocs.yml names this file under `hooks:`).

The site is `docs/` plus pages made at build time, so that nothing is written twice:

- the repository's own Markdown files that live outside `docs/` (README.md as the home
  page, CHANGELOG.md, bench/README.md, LICENSE), with their relative links mapped to
  the site's pages;
- the configuration reference, from `repo.settings.SETTINGS` (the list the loader and
  `repo config --show` use);
- the CLI reference: each command's `--help`, drawn from the click definitions;
- the Python API reference: one mkdocstrings entry per name in `repo.__all__`.

Links between the pages of `docs/` are left as they are: they work on
GitHub, and `mkdocs build --strict` fails on one that points nowhere.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click
from mkdocs.structure.files import File

import repo
from repo.cli import cli
from repo.settings import markdown_rows

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[1]

#: Files of the repository outside docs/ that the site shows, and the page each becomes.
OUTSIDE_PAGES = {
    "README.md": "index.md",
    "CHANGELOG.md": "changelog.md",
    "bench/README.md": "bench/index.md",
    "LICENSE": "license.md",
}
CONFIGURATION_PAGE = "configuration.md"
CLI_PAGE = "cli-reference.md"
API_PAGE = "api.md"

#: A Markdown link or image target: `](target)` or `](target "title")`.
_LINK = re.compile(r"\]\(([^)\s]+)((?:\s+\"[^\"]*\")?)\)")


def _repository_path(page_uri: str) -> str:
    """Where the page's text lives in the repository (relative to the root)."""
    for source, uri in OUTSIDE_PAGES.items():
        if uri == page_uri:
            return source
    return f"docs/{page_uri}"


def map_links(markdown: str, page_uri: str) -> str:
    """The Markdown with each relative link written for the page's place in the site.

    A link is relative to the file the text comes from (README.md links `docs/cli.md`);
    on the site it must be relative to the page (`index.md`, so `cli.md`). Links into
    `docs/` and to the files in OUTSIDE_PAGES are mapped; others are left for MkDocs to
    judge (under --strict, one that points nowhere fails the build).
    """
    source_dir = posixpath.dirname(_repository_path(page_uri))
    page_dir = posixpath.dirname(page_uri)

    def mapped(match: re.Match[str]) -> str:
        target, title = match.group(1), match.group(2)
        if "://" in target or target.startswith(("#", "/", "mailto:")):
            return match.group(0)
        path, hash_, fragment = target.partition("#")
        in_repository = posixpath.normpath(posixpath.join(source_dir, path))
        if in_repository in OUTSIDE_PAGES:
            site_uri = OUTSIDE_PAGES[in_repository]
        elif in_repository.startswith("docs/"):
            site_uri = in_repository.removeprefix("docs/")
        else:
            return match.group(0)
        relative = posixpath.relpath(site_uri, page_dir or ".")
        return f"]({relative}{hash_}{fragment}{title})"

    return _LINK.sub(mapped, markdown)


def configuration_markdown() -> str:
    """The configuration reference: every key, its type, default and environment override."""
    lines = [
        "# Configuration reference",
        "",
        "Every key a configuration file may hold (JSON; where the file is found: the",
        "[home page](index.md#configuration)). A variable in the environment column, when",
        "set and not empty, wins over the file. Unknown keys are an error that names them.",
        "`repo config --show` prints the settings in effect and where each came from.",
        "",
        "| key | type | default | environment | meaning |",
        "|---|---|---|---|---|",
    ]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
        for row in markdown_rows()
    ]
    return "\n".join(lines) + "\n"


def commands(
    command: click.Command = cli, parent: click.Context | None = None, name: str = "repo"
) -> Iterator[click.Context]:
    """A context for the command and for each of its visible subcommands, depth first."""
    settings = {**command.context_settings, "terminal_width": 88, "max_content_width": 88}
    ctx = click.Context(command, info_name=name, parent=parent, **settings)
    yield ctx
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):  # in the order `--help` lists them
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, ctx, sub_name)


def cli_markdown() -> str:
    """The CLI reference: every command's help, as `repo COMMAND --help` prints it."""
    lines = [
        "# CLI reference",
        "",
        "Every command and option of `repo`, drawn from the command definitions: the text",
        "`repo COMMAND --help` prints. Which library call each command makes, and the",
        "`--json` document shapes: [Commands and library calls](cli.md).",
    ]
    for ctx in commands():
        lines += ["", f"## {ctx.command_path}", "", "```text", ctx.get_help(), "```"]
    return "\n".join(lines) + "\n"


def _api_group(name: str) -> str:
    if name.endswith("Error"):
        return "Errors"
    if name in ("Repo", "RepoFile", "Session", "Config", "ProgressListener"):
        return "Repository and files"
    if name[0].isupper():
        return "Reports and records"
    return "Functions"


def api_markdown() -> str:
    """The Python API reference: `::: repo.NAME` for each public name, grouped."""
    groups: dict[str, list[str]] = {
        "Repository and files": [],
        "Functions": [],
        "Reports and records": [],
        "Errors": [],
    }
    for name in repo.__all__:
        if name != "__version__":
            groups[_api_group(name)].append(name)
    lines = [
        "# Python API reference",
        "",
        "Everything `import repo` exports (`repo.__all__`), from the docstrings. The guide",
        "to using it is on the [home page](index.md#python-api). `repo.__version__` is the",
        f"package version (`{repo.__version__}`).",
    ]
    for title, names in groups.items():
        lines += ["", f"## {title}"]
        lines += [f"\n::: repo.{name}" for name in names]
    return "\n".join(lines) + "\n"


def _outside_page(source: str) -> str:
    text = (ROOT / source).read_text(encoding="utf-8")
    if source.endswith(".md"):
        return text
    return f"# {source}\n\n```text\n{text}```\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the pages made from outside docs/ and from the code."""
    generated = {uri: _outside_page(source) for source, uri in OUTSIDE_PAGES.items()}
    generated[CONFIGURATION_PAGE] = configuration_markdown()
    generated[CLI_PAGE] = cli_markdown()
    generated[API_PAGE] = api_markdown()
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Page, **_: object) -> str:
    """Map each relative link to its page on the site."""
    return map_links(markdown, page.file.src_uri)
