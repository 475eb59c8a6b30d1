"""The man pages: one per command, drawn from the click definitions, each naming its
options, and the committed ones under man/ (which the wheel installs) up to date."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pytest

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


man_pages = _tool("man_pages")


def test_a_page_per_command_and_subcommand() -> None:
    from repo.cli import cli

    expected = {"repo.1"}
    for name, command in cli.commands.items():
        if command.hidden:
            continue
        expected.add(f"repo-{name}.1")
        for sub in getattr(command, "commands", {}):
            expected.add(f"repo-{name}-{sub}.1")

    assert set(man_pages.man_pages()) == expected
    assert {"repo-add.1", "repo-cache-status.1", "repo-host-list.1"} <= expected


def test_each_page_names_its_options_and_arguments() -> None:
    pages = man_pages.man_pages()
    for ctx in man_pages.commands():
        page = pages[f"{man_pages.page_name(ctx)}.1"]
        for param in ctx.command.get_params(ctx):
            if isinstance(param, click.Option) and not param.hidden:
                for name in param.opts:
                    assert man_pages.escape(name) in page, f"{ctx.command_path}: {name}"
            elif isinstance(param, click.Argument):
                assert param.make_metavar(ctx) in page


def test_help_text_is_escaped_for_roff() -> None:
    escaped = man_pages.escape(".starts a request\n'so does this\nback\\slash -x")
    assert escaped == "\\&.starts a request\n\\&'so does this\nback\\eslash \\-x"
    page = man_pages.man_pages()["repo-gc.1"]
    assert "\b" not in page  # click's no-rewrap marker became .nf/.fi
    assert ".nf\nExamples:\n  repo gc \\-\\-dry\\-run\n" in page


def test_committed_pages_are_up_to_date(tmp_path: Path) -> None:
    written = man_pages.write_man_pages(tmp_path)

    committed = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "man").glob("*.1")}
    fresh = {p.name: p.read_text(encoding="utf-8") for p in written}
    assert committed == fresh, "man/ is out of date: run `make man` and commit man/"


def test_the_wheel_installs_the_committed_pages() -> None:
    # `pip wheel .` puts what this glob matches under <name>.data/data/share/man/man1/.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data_files = pyproject["tool"]["setuptools"]["data-files"]

    assert data_files["share/man/man1"] == ["man/*.1"]
    assert len(list((ROOT / "man").glob("*.1"))) == len(man_pages.man_pages())


GROFF = shutil.which("groff")


@pytest.mark.skipif(GROFF is None, reason="groff not installed")
def test_pages_render_without_roff_warnings() -> None:
    assert GROFF is not None
    pages = sorted(str(page) for page in (ROOT / "man").glob("*.1"))
    done = subprocess.run(
        [GROFF, "-man", "-Tutf8", "-ww", "-z", *pages],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
