"""Start-up time of the `repo` command: this tree against the tree before issue 17.

Runs, as separate processes with the project's venv python, ``repo --version``,
``repo --help``, ``repo config --show`` and a warm ``repo cat`` of a cached 4 KiB file
on the embedded default (SQLite catalog, directory store), once with the ``--after``
commit's ``src/`` (default HEAD) and once with the ``--before`` commit's, each checked
out into a temporary ``git worktree`` and put first on ``PYTHONPATH``. Both run over one repository, made
and warmed before timing.

The two trees take turns command by command, in interleaved rounds (before, after then
after, before ...), so drift on a busy machine lands on both alike. The numbers that
mean something are the ratios in the same run: this machine's absolute start-up times
are only this machine at this moment.

Both trees run from bytecode, as an installed package does: the processes get a
``PYTHONPYCACHEPREFIX`` of their own (with writing allowed) and a warm-up round fills
it, so neither pays for compiling its sources.

Usage: .venv/bin/python bench/startup.py [--rounds R] [--before REV] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "bench" / "startup.md"
#: The parent of the first start-up change of issue 17 (lazy imports, 6e64d25).
BEFORE = "241b93b"
#: The path the warm `cat` reads, and its size.
CAT_PATH, CAT_SIZE = "bench/four.bin", 4096

COMMANDS: dict[str, list[str]] = {
    "repo --version": ["--version"],
    "repo --help": ["--help"],
    "repo config --show": ["config", "--show"],
    "repo cat (warm, 4 KiB)": ["cat", CAT_PATH],
}
#: The packages whose import time the report adds up (`-X importtime`, own time of each
#: of their modules); the rest is the standard library's and other packages'.
PACKAGES = ("sqlalchemy", "repo", "click", "platformdirs")


@dataclass
class Tree:
    """One version of the code: where its `src/` is, and its times per command."""

    name: str
    src: Path
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)


def run_once(tree: Tree, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, from `wait4`) of one `python -m repo` process."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "repo", *argv],
        env={**env, "PYTHONPATH": str(tree.src)},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{tree.name}: repo {shlex.join(argv)} failed: {err}")
    if proc.stderr:
        proc.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


def output_of(tree: Tree, argv: list[str], env: dict[str, str], cwd: Path) -> bytes:
    done = subprocess.run(
        [sys.executable, "-m", "repo", *argv],
        env={**env, "PYTHONPATH": str(tree.src)},
        cwd=cwd,
        capture_output=True,
        check=True,
    )
    return done.stdout


def import_costs(tree: Tree, argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, int]:
    """µs spent importing the modules of each of `PACKAGES` (and of everything else, and
    in all) in one ``-X importtime`` run: the sum of each module's own time."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "repo", *argv],
        env={**env, "PYTHONPATH": str(tree.src)},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    costs = dict.fromkeys((*PACKAGES, "everything else", "in all"), 0)
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header
        package = parts[2].strip().split(".")[0]
        own = int(parts[0])
        costs[package if package in PACKAGES else "everything else"] += own
        costs["in all"] += own
    return costs


def bench(args: argparse.Namespace, tmp: Path) -> tuple[Tree, Tree, dict[str, dict[str, int]]]:
    # Both trees from commits, in worktrees: not the shared working tree, where others'
    # uncommitted changes would be measured too.
    worktrees = {"before": tmp / "before", "after": tmp / "after"}
    for name, rev in (("before", args.before), ("after", args.after)):
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktrees[name]), rev],
            check=True,
            capture_output=True,
        )
    try:
        before = Tree("before", worktrees["before"] / "src")
        after = Tree("after", worktrees["after"] / "src")
        common = {k: v for k, v in os.environ.items() if not k.startswith(("REPO_", "PYTHON"))}
        common.update(HOME=str(tmp), PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
        # A repository per tree: a newer tree upgrades the catalog's schema, which the
        # older one then refuses to open.
        envs = {
            t.name: {**common, "REPO_HOME": str(tmp / f"home-{t.name}")} for t in (before, after)
        }
        content = os.urandom(CAT_SIZE)
        (tmp / "four.bin").write_bytes(content)
        for tree in (before, after):  # the warm-up: bytecode written, the copy cached
            env = envs[tree.name]
            output_of(tree, ["add", "four.bin", "--as", CAT_PATH, "--publish"], env, tmp)
            for argv in COMMANDS.values():
                run_once(tree, argv, env, tmp)
            if output_of(tree, ["cat", CAT_PATH], env, tmp) != content:
                raise SystemExit(f"{tree.name}: repo cat returned other bytes")
        for r in range(args.rounds):
            for label, argv in COMMANDS.items():
                order = (before, after) if r % 2 == 0 else (after, before)
                for tree in order:
                    wall, cpu = run_once(tree, argv, envs[tree.name], tmp)
                    tree.wall.setdefault(label, []).append(wall)
                    tree.cpu.setdefault(label, []).append(cpu)
        cat = COMMANDS["repo cat (warm, 4 KiB)"]
        costs = {t.name: import_costs(t, cat, envs[t.name], tmp) for t in (before, after)}
        return before, after, costs
    finally:
        for worktree in worktrees.values():
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                check=False,
                capture_output=True,
            )


# -- report ------------------------------------------------------------------------------


def commit_of(rev: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or rev


def code_version() -> str:
    """The commit, plus what differs from it under src/: the checkout running this."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
            )
        except OSError:
            return ""
        return done.stdout.rstrip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = git("status", "--porcelain", "--", "src").splitlines()
    if not dirty:
        return f"commit {commit}, src/ clean"
    return f"commit {commit} with uncommitted changes in " + ", ".join(d[3:] for d in dirty)


def machine_info(args: argparse.Namespace, argv: list[str]) -> list[str]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = f" ({line.split(':', 1)[1].strip()})"
                break
    except OSError:
        pass
    command = shlex.join([".venv/bin/python", "bench/startup.py", *argv])
    return [
        f"- code: after = commit {commit_of(args.after)}, before = commit "
        f"{commit_of(args.before)} (each a git worktree); the script from {code_version()}",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}){cpu_model}, "
        f"{platform.system()} {platform.release()}; load average before the run "
        f"{os.getloadavg()[0]:.2f}",
        f"- Python {platform.python_version()}; SQLAlchemy {version('sqlalchemy')}; "
        f"click {version('click')}; platformdirs {version('platformdirs')}",
        f"- workload: each command {args.rounds} times per tree, the trees taking turns, "
        "after one warm-up round; embedded default (SQLite catalog, directory store) in a "
        "temporary REPO_HOME",
    ]


def ms(values: list[float]) -> str:
    return " ".join(f"{v * 1000:.0f}" for v in values)


def tables(before: Tree, after: Tree) -> list[str]:
    lines = [
        "| command | before: wall ms, median | after: wall ms, median | after / before, wall "
        "| before: CPU ms, median | after: CPU ms, median | after / before, CPU |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for label in COMMANDS:
        bw, aw = statistics.median(before.wall[label]), statistics.median(after.wall[label])
        bc, ac = statistics.median(before.cpu[label]), statistics.median(after.cpu[label])
        lines.append(
            f"| `{label}` | {bw * 1000:.0f} | {aw * 1000:.0f} | {aw / bw:.2f}x "
            f"| {bc * 1000:.0f} | {ac * 1000:.0f} | {ac / bc:.2f}x |"
        )
    lines += ["", "Every round's wall time, ms (round 1 first):", ""]
    lines += ["| command | tree | wall ms per round |", "|---|---|---|"]
    for label in COMMANDS:
        for tree in (before, after):
            lines.append(f"| `{label}` | {tree.name} | {ms(tree.wall[label])} |")
    return lines


def import_table(costs: dict[str, dict[str, int]]) -> list[str]:
    lines = [
        "| modules of | before: ms | after: ms |",
        "|---|--:|--:|",
    ]
    for name in costs["before"]:
        b, a = costs["before"][name], costs["after"][name]
        shown = [f"{v / 1000:.0f}" if v else "none imported" for v in (b, a)]
        label = name if " " in name else f"`{name}`"
        lines.append(f"| {label} | {shown[0]} | {shown[1]} |")
    return lines


def report(
    args: argparse.Namespace,
    argv: list[str],
    before: Tree,
    after: Tree,
    costs: dict[str, dict[str, int]],
) -> str:
    return "\n".join(
        [
            "# Start-up time of the `repo` command",
            "",
            "Written by `bench/startup.py` (see `bench/README.md`); do not edit by hand, "
            "rerun it. Only the ratios (the two trees measured in the same run, in "
            "interleaved rounds) carry over to other machines; the absolute numbers are "
            "this machine at this moment.",
            "",
            *machine_info(args, argv),
            "",
            *tables(before, after),
            "",
            "- *wall*: from starting the process to its exit; *CPU*: its user + system "
            "time (`wait4`), which a busy neighbour disturbs less than wall time.",
            "- Below 1 is faster. Both trees run from bytecode (a `PYTHONPYCACHEPREFIX` "
            "filled by the warm-up round).",
            "",
            "Where a warm `repo cat` spends its imports, from one `-X importtime` run per "
            "tree: each module's own import time, added up by package (`-X importtime` "
            "itself slows imports down; one run, so only the shares mean much):",
            "",
            *import_table(costs),
            "",
        ]
    )


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Example: .venv/bin/python bench/startup.py --rounds 5 --no-write",
    )
    parser.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--before", default=BEFORE, help=f"the baseline (default {BEFORE})")
    parser.add_argument("--after", default="HEAD", help="the code measured (default HEAD)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results file")
    parser.add_argument("--no-write", action="store_true", help="print only; keep the file")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("need --rounds >= 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="repo-bench-startup-") as tmp:
        before, after, costs = bench(args, Path(tmp))
    text = report(args, argv, before, after, costs)
    print(text)
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"written to {args.output} ({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
