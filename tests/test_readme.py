"""The README's examples run as written, in the order a reader meets them.

How the README's code blocks are taken:

- ```` ```python ```` blocks run with `exec`, one after the other in one shared namespace
  (the later blocks use the `import repo` of the first, as a reader's session would).
- ```` ```sh ```` blocks run in bash (`set -euo pipefail`), with the `repo` of this
  interpreter's environment first on PATH: a failing command fails the test.
- ```` ```json ```` blocks are configurations: each must load (`repo.load_config`).
- A block right after a line ``<!-- no-test: REASON -->`` is not run: installing software,
  `make` targets, and what needs PostgreSQL or S3. The reason is required.

Everything runs in one working directory on a throwaway embedded default (`$REPO_HOME`
and `$HOME` point into the test's temporary directory: tests/conftest.py's autouse
isolation). The examples name a directory of the reader's, `./out`; the test makes one
with two files in it. Nothing else is prepared: the quick start writes its own
`daily.csv`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import repo

if TYPE_CHECKING:
    from collections.abc import Iterator

README = Path(__file__).parents[1] / "README.md"
BIN = Path(sys.executable).parent
BASH = shutil.which("bash") or "/bin/bash"
_NO_TEST = re.compile(r"<!-- no-test: (\S.*?) -->")


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # of the opening fence, 1-based
    skipped_because: str | None


def code_blocks(text: str) -> Iterator[Block]:
    """The fenced code blocks of a Markdown text, in order."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = lines[i]
        if not fence.startswith("```"):
            i += 1
            continue
        start = i
        i += 1
        while not lines[i].startswith("```"):
            i += 1
        before = next((s for s in reversed(lines[:start]) if s.strip()), "")
        match = _NO_TEST.fullmatch(before.strip())
        yield Block(
            language=fence[3:].strip(),
            code="\n".join(lines[start + 1 : i]) + "\n",
            line=start + 1,
            skipped_because=match[1] if match else None,
        )
        i += 1


def _run_sh(block: Block, cwd: Path) -> None:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run(
        [BASH, "-x", "-c", "set -euo pipefail\n" + block.code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, f"README.md:{block.line} failed:\n{out.stderr}"


def _run_python(block: Block, namespace: dict[str, Any]) -> None:
    exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)  # noqa: S102 - the README's own examples


def run_examples(text: str, cwd: Path) -> list[Block]:
    """Run the examples of `text` in `cwd`; the blocks run, in order."""
    namespace: dict[str, Any] = {"__name__": "readme"}
    ran = []
    for block in code_blocks(text):
        if block.skipped_because is not None:
            continue
        if block.language == "python":
            _run_python(block, namespace)
        elif block.language == "sh":
            _run_sh(block, cwd)
        elif block.language == "json":
            repo.load_config(json.loads(block.code))
        else:
            pytest.fail(f"README.md:{block.line}: no way to run a {block.language!r} block")
        ran.append(block)
    return ran


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "out" / "a.txt").write_text("a\n")
    (work / "out" / "b.txt").write_text("b\n")
    monkeypatch.chdir(work)
    return work


def test_the_readme_examples_run_as_written(workdir: Path) -> None:
    assert (BIN / "repo").exists(), "the repo command is installed beside this interpreter"
    ran = run_examples(README.read_text(encoding="utf-8"), workdir)
    # A block that stops being run (a new no-test mark, a new language) shows up here.
    assert [b.language for b in ran] == ["sh", "json", "sh", "python", "python", "python"]
    # They ran on the embedded default under the test's $REPO_HOME, nowhere else.
    with repo.Repo() as r:
        assert r.config.is_embedded
        stored = {f.path for f in r.list("*", state="all")}
        assert {"reports/daily.csv", "runs/42/a.txt", "reports/visits.csv"} <= stored
        assert "logs/date.txt" not in stored  # `repo purge` took it


def test_every_block_that_is_not_run_says_why() -> None:
    blocks = list(code_blocks(README.read_text(encoding="utf-8")))
    assert blocks
    for block in blocks:
        if block.skipped_because is None:
            assert block.language in ("python", "sh", "json"), block
    skipped = [b for b in blocks if b.skipped_because]
    assert all(b.skipped_because.strip() for b in skipped)  # type: ignore[union-attr]


def test_the_readme_shows_the_test_command_ci_runs() -> None:
    """.ci/run runs `make test`, "the test command written in README.md"."""
    text = README.read_text(encoding="utf-8")
    development = text.split("\n## Development\n", 1)[1]
    first = next(code_blocks(development))
    assert first.code.splitlines()[0].startswith("make test ")


def test_a_broken_example_fails_the_run(tmp_path: Path, workdir: Path) -> None:
    """The runner is no rubber stamp: a failing command, a raising Python line or an
    invalid configuration each fail it, and a no-test block is not run."""
    cases = {
        "```sh\nrepo cat no/such/file.csv\n```\n": "README.md:1 failed",
        "```sh\nrepo cat no/such/file.csv | head -n 1\n```\n": "README.md:1 failed",
        "```python\nimport repo\nrepo.Repo().current('no/such/file.csv')\n```\n": "no/such",
        '```json\n{"database": "sqlite:///x.db", "colour": 1}\n```\n': "colour",
        "```text\nhello\n```\n": "no way to run a 'text' block",
    }
    for text, expected in cases.items():
        with pytest.raises((AssertionError, pytest.fail.Exception, repo.RepoError)) as info:
            run_examples(text, workdir)
        assert expected in str(info.value), text
    marker = tmp_path / "ran"
    skipped = f"<!-- no-test: needs S3 -->\n\n```sh\ntouch {marker}\n```\n"
    assert run_examples(skipped, workdir) == []
    assert not marker.exists()
    run_examples(f"```sh\ntouch {marker}\n```\n", workdir)
    assert marker.exists()
