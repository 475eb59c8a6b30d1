"""The package's shape: layers that point one way (pyproject's import-linter contract), no
import cycles, and modules small enough to hold one idea."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "repo"

#: Modules allowed past ~400 lines, each with the one idea it holds.
LARGE_MODULES = {
    "cache.py": "the verified cache: downloads into it, hits, eviction, leftovers",
    "config.py": "loading a configuration: file, mapping or environment, then checks",
    "ingest.py": "adding content: one file or stream, or a tree through a worker pool",
    "repository.py": "the Repo facade: one short method per library capability, no logic",
    "settings.py": "the table of configuration keys: one entry per key, documentation included",
}
LINE_LIMIT = 400


def _lint_imports(*, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iteratively)."""
    adjacency = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(adjacency):
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            children = adjacency[node]
            if child < len(children):
                work.append((node, child + 1))
                nxt = children[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


def test_imports_keep_to_the_layers_of_pyproject() -> None:
    result = _lint_imports(cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layer_contract_catches_an_import_that_points_up(tmp_path: Path) -> None:
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy / "repo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    session = copy / "repo" / "session.py"
    # Only for type hints, which count too: the session must not know the facade.
    session.write_text(
        session.read_text()
        .replace(
            "from .store_set import StoreSet\n",
            "from .store_set import StoreSet\n\nif TYPE_CHECKING:\n"
            "    from .repository import Repo  # noqa: F401\n",
        )
        .replace("from typing import Any", "from typing import TYPE_CHECKING, Any")
    )
    result = _lint_imports(cwd=tmp_path, pythonpath=copy)
    assert result.returncode != 0
    assert "repo.session -> repo.repository" in result.stdout


def test_no_module_imports_itself_through_others() -> None:
    assert _cycles(grimp.build_graph("repo")) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(name)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.z", imported="a.x")
    assert _cycles(graph) == [["a.x", "a.y"]]


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_hold_one_idea(path: Path) -> None:
    name = str(path.relative_to(SRC))
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= LINE_LIMIT or name in LARGE_MODULES, (
        f"{name} has {lines} lines: split it, or name its one idea in LARGE_MODULES"
    )
