"""The documentation site builds with `mkdocs build --strict`, and its references are
complete: every command of `repo`, every option, every public name, every setting.

One build per test module (about 5 s): mkdocs.yml and the hooks in tools/docs_site.py,
exactly as `make docs` runs them. Under --strict a link to a missing page or anchor, a
docstring mkdocstrings cannot read or a page left out of the navigation fails the build.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pytest

import repo
from repo.settings import SETTINGS

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).parents[1]


def _tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_site = _tool("docs_site")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr
    return out


def text_of(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def sections(page: Path) -> dict[str, str]:
    """The page's text under each heading, keyed by the heading's id."""
    parts = re.split(r'<h[1-6] id="([^"]+)"', page.read_text(encoding="utf-8"))
    return {
        parts[i]: html.unescape(re.sub(r"<[^>]+>", "", parts[i + 1]))
        for i in range(1, len(parts), 2)
    }


def test_cli_reference_has_every_command_with_every_option(site: Path) -> None:
    by_id = sections(site / "cli-reference.html")
    contexts = list(docs_site.commands())
    paths = {ctx.command_path for ctx in contexts}

    assert {"repo", "repo add", "repo cache status", "repo host decommission", "repo thaw"} <= paths
    assert "repo ctl" not in paths  # hidden: the seed's spelling
    for ctx in contexts:
        section = by_id[ctx.command_path.replace(" ", "-")]
        assert f"Usage: {ctx.command_path}" in section
        for param in ctx.command.get_params(ctx):
            if isinstance(param, click.Option) and not param.hidden:
                for name in param.opts:
                    assert name in section, f"{ctx.command_path}: {name} not in the reference"


def test_cli_reference_covers_every_command_click_knows() -> None:
    def walk(command: click.Command, path: str) -> set[str]:
        found = {path}
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                found |= walk(sub, f"{path} {name}")
        return found

    from repo.cli import cli

    assert {ctx.command_path for ctx in docs_site.commands()} == walk(cli, "repo")


def test_api_reference_has_every_public_name(site: Path) -> None:
    page = (site / "api.html").read_text(encoding="utf-8")
    documented = set(re.findall(r'id="repo\.(\w+)"', page))

    missing = {name for name in repo.__all__ if name != "__version__"} - documented
    assert not missing, f"not in the API reference: {sorted(missing)}"
    assert "repo.__version__" in text_of(site / "api.html")
    # Members come along: the facade's methods, with their docstrings.
    assert {"repo.Repo.find", "repo.Repo.add", "repo.RepoFile.publish"} <= {
        f"repo.{m}" for m in re.findall(r'id="repo\.([\w.]+)"', page)
    }
    # Fields with their `#:` comments (griffe-sphinx).
    fields = sections(site / "api.html")
    assert "too few backups were taken" in fields["repo.GcReport.waiting_for_backups"]


def test_configuration_reference_has_every_setting_and_override(site: Path) -> None:
    text = text_of(site / "configuration.html")

    for setting in SETTINGS:
        assert setting.key in text
        if setting.env:
            assert f"${setting.env}" in text


def test_pages_from_outside_docs_are_on_the_site(site: Path) -> None:
    assert "turns Amazon S3" in text_of(site / "index.html")  # README.md, the home page
    assert "Unreleased" in text_of(site / "changelog.html")
    assert "MIT" in text_of(site / "license.html")
    # README.md links docs/postgres-and-s3.md; on the home page that is a sibling page.
    assert 'href="postgres-and-s3.html"' in (site / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("page", "link", "expected"),
    [
        ("index.md", "docs/postgres-and-s3.md", "postgres-and-s3.md"),
        ("index.md", "docs/cli.md#files", "cli.md#files"),
        ("index.md", "CHANGELOG.md", "changelog.md"),
        ("how-it-works.md", "../README.md", "index.md"),
        ("benchmarks.md", "../bench/README.md", "bench/index.md"),
        ("bench/index.md", "../docs/bench/startup.md", "startup.md"),
        ("bench/startup.md", "../../bench/README.md", "index.md"),
        ("security.md", "how-it-works.md", "how-it-works.md"),
        ("index.md", "src/repo/settings.py", "src/repo/settings.py"),  # left for --strict
        ("index.md", "https://example.com/a.md", "https://example.com/a.md"),
        ("index.md", "#rules", "#rules"),
    ],
)
def test_links_are_mapped_from_the_repository_to_the_site(
    page: str, link: str, expected: str
) -> None:
    assert docs_site.map_links(f"see [it]({link}).", page) == f"see [it]({expected})."
