"""Small-object S3 data path: `S3Store` (obstore) against raw boto3 and raw obstore.

Starts ``rclone serve s3`` on 127.0.0.1 (the test harness's `RcloneS3Server`), writes
``--objects`` files of ``--size`` bytes to a temp dir, and measures in one run:

* sequential puts: ``S3Store.put_file`` (ours: obstore put with ``If-None-Match: *`` plus
  the md5/ETag check), boto3 ``put_object`` (the baseline) and bare ``obstore.put`` (the
  lower bound: what obstore costs without our checks);
* sequential gets: ``S3Store.get_into`` a ``BytesIO`` (md5 while reading) against boto3
  ``get_object()["Body"].read()``;
* concurrent puts: ``S3Store.put_file`` against boto3 ``put_object`` from a
  ``ThreadPoolExecutor(8)`` (one shared client each).

Each benchmark handles every object once, split into ``--rounds`` rounds; the benchmarks
of a group take turns round by round (A,B,C then C,B,A ...), so drift on a noisy machine
lands on all of them alike. The numbers that mean something are the ratios against boto3
in the same run; absolute rates are only this machine at this moment.

Client CPU is ``time.process_time()``: every thread of this process, obstore's Rust
runtime included, and not the server, which runs in its own process (its CPU is read
from /proc and reported separately).

Usage: .venv/bin/python bench/store_data_path.py [--objects N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import boto3  # noqa: E402
import obstore  # noqa: E402
from botocore.config import Config as BotoConfig  # noqa: E402
from obstore.store import S3Store as ObStore  # noqa: E402

from harness.s3servers import RcloneS3Server  # noqa: E402
from repo.stores.s3 import S3Store  # noqa: E402

DEFAULT_OUTPUT = ROOT / "docs" / "bench" / "store_data_path.md"
THREADS = 8
WARMUP = 50

Item = tuple[str, Path]  # (object key, local file)
Runner = Callable[[Sequence[Item]], None]


@dataclass
class Bench:
    """One benchmark: a name, what it runs, and the totals of its rounds."""

    group: str
    label: str
    run: Runner
    baseline: bool = False
    requests: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    server_cpu: float | None = 0.0
    round_rates: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.wall

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.requests

    @property
    def server_cpu_ms(self) -> float | None:
        return None if self.server_cpu is None else 1000 * self.server_cpu / self.requests


class ServerCpu:
    """CPU seconds used so far by the S3 server process (Linux /proc), or None."""

    def __init__(self, server: RcloneS3Server) -> None:
        # The harness keeps its Popen private; the pid is all we need and is read-only use.
        proc = getattr(server, "_proc", None)
        self.stat = Path(f"/proc/{proc.pid}/stat") if proc is not None else None
        self.tick = os.sysconf("SC_CLK_TCK")

    def __call__(self) -> float | None:
        if self.stat is None:
            return None
        try:
            # Fields after the ")" that closes the command name; utime and stime are 14 and 15.
            fields = self.stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self.tick


def measure(bench: Bench, items: Sequence[Item], server_cpu: ServerCpu) -> None:
    s0 = server_cpu()
    c0 = time.process_time()
    t0 = time.perf_counter()
    bench.run(items)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    s1 = server_cpu()
    bench.requests += len(items)
    bench.wall += wall
    bench.cpu += cpu
    if s0 is None or s1 is None or bench.server_cpu is None:
        bench.server_cpu = None
    else:
        bench.server_cpu += s1 - s0
    bench.round_rates.append(len(items) / wall)


def run_group(
    benches: Sequence[Bench],
    items_for: Callable[[Bench, int, int, int], Sequence[Item]],
    n: int,
    rounds: int,
    server_cpu: ServerCpu,
) -> None:
    """Warm every benchmark up, then run them round by round, alternating the order."""
    for bench in benches:
        bench.run(items_for(bench, -1, 0, min(WARMUP, n)))
    bounds = [n * r // rounds for r in range(rounds + 1)]
    for r in range(rounds):
        order = benches if r % 2 == 0 else list(reversed(benches))
        for bench in order:
            measure(bench, items_for(bench, r, bounds[r], bounds[r + 1]), server_cpu)


# -- the benchmarks ----------------------------------------------------------------------


def boto3_client(server: RcloneS3Server) -> Any:
    """boto3 set up as `S3Store` sets up its own (multipart) client, for a fair baseline."""
    config = BotoConfig(
        region_name=server.region,
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=2 * THREADS,
        connect_timeout=10,
        read_timeout=60,
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=config,
    )


def raw_obstore(server: RcloneS3Server, bucket: str) -> Any:
    return ObStore(
        bucket,
        endpoint=server.endpoint_url,
        region=server.region,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


def make_benches(
    store: S3Store, client: Any, ob: Any, bucket: str, pool_ours: Any, pool_boto: Any
) -> tuple[list[Bench], list[Bench], list[Bench]]:
    def ours_put(items: Sequence[Item]) -> None:
        for key, path in items:
            store.put_file(key, path)

    def boto3_put(items: Sequence[Item]) -> None:
        for key, path in items:
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    def obstore_put(items: Sequence[Item]) -> None:
        for key, path in items:
            obstore.put(ob, key, path.read_bytes())

    def ours_get(items: Sequence[Item]) -> None:
        for key, _ in items:
            store.get_into(key, io.BytesIO())

    def boto3_get(items: Sequence[Item]) -> None:
        for key, _ in items:
            client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def ours_put_threads(items: Sequence[Item]) -> None:
        for _ in pool_ours.map(lambda item: store.put_file(*item), items):
            pass

    def boto3_put_threads(items: Sequence[Item]) -> None:
        def put(item: Item) -> None:
            client.put_object(Bucket=bucket, Key=item[0], Body=item[1].read_bytes())

        for _ in pool_boto.map(put, items):
            pass

    puts = [
        Bench("put", "S3Store.put_file (ours)", ours_put),
        Bench("put", "boto3 put_object", boto3_put, baseline=True),
        Bench("put", "obstore.put, bare (lower bound)", obstore_put),
    ]
    gets = [
        Bench("get", "S3Store.get_into BytesIO (ours)", ours_get),
        Bench("get", "boto3 get_object().read()", boto3_get, baseline=True),
    ]
    threaded = [
        Bench(f"put, {THREADS} threads", "S3Store.put_file (ours)", ours_put_threads),
        Bench(f"put, {THREADS} threads", "boto3 put_object", boto3_put_threads, baseline=True),
    ]
    return puts, gets, threaded


# -- report ------------------------------------------------------------------------------


def machine_info(args: argparse.Namespace, argv: Sequence[str]) -> list[str]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = f" ({line.split(':', 1)[1].strip()})"
                break
    except OSError:
        pass
    try:
        rclone = subprocess.run(
            [str(Path(sys.executable).parent / "rclone"), "version"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.splitlines()[0]
    except (OSError, IndexError):
        rclone = "rclone (version unknown)"
    command = shlex.join([".venv/bin/python", "bench/store_data_path.py", *argv])
    return [
        f"- code: {code_version()}",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}){cpu_model}, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; obstore {version('obstore')}; "
        f"boto3 {version('boto3')}, botocore {version('botocore')}",
        f"- server: {rclone} (`serve s3`, `--etag-hash MD5`) on 127.0.0.1, same machine",
        f"- workload: {args.objects} objects of {args.size} bytes per benchmark, "
        f"in {args.rounds} interleaved rounds, after {min(WARMUP, args.objects)} warm-up "
        "requests each",
    ]


def code_version() -> str:
    """The commit, plus what differs from it under src/: the code these numbers are for."""

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
    # The data path spans the stores package (s3.py, s3_put.py, s3_download.py, ...):
    # name the content of all of it, not one file.
    diff = git("diff", "HEAD", "--", "src/repo/stores")
    stores = hashlib.sha1(diff.encode(), usedforsecurity=False).hexdigest()[:10]
    changed = ", ".join(line[3:] for line in dirty)
    return f"commit {commit} with uncommitted changes in {changed} (stores/ diff sha1 {stores})"


def table(groups: Sequence[Sequence[Bench]]) -> list[str]:
    lines = [
        "| benchmark | objects/s | objects/s per round | client CPU ms/req "
        "| server CPU ms/req | objects/s vs boto3 | client CPU vs boto3 |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for benches in groups:
        base = next(b for b in benches if b.baseline)
        for b in benches:
            server = "n/a" if b.server_cpu_ms is None else f"{b.server_cpu_ms:.2f}"
            spread = f"{min(b.round_rates):.0f}-{max(b.round_rates):.0f}"
            rate_ratio = "1 (baseline)" if b.baseline else f"{b.rate / base.rate:.2f}x"
            cpu_ratio = "1 (baseline)" if b.baseline else f"{b.cpu_ms / base.cpu_ms:.2f}x"
            lines.append(
                f"| {b.group}: {b.label} | {b.rate:.0f} | {spread} | {b.cpu_ms:.3f} "
                f"| {server} | {rate_ratio} | {cpu_ratio} |"
            )
    return lines


def report(args: argparse.Namespace, argv: Sequence[str], groups: Sequence[Sequence[Bench]]) -> str:
    return "\n".join(
        [
            "# Store data path: small objects",
            "",
            "Written by `bench/store_data_path.py` (see `bench/README.md`); do not edit by "
            "hand, rerun it. Only the ratios against boto3 (measured in the same run, against "
            "the same server, in interleaved rounds) carry over to other machines; the "
            "absolute numbers are this machine at this moment.",
            "",
            *machine_info(args, argv),
            "",
            *table(groups),
            "",
            "- *objects/s vs boto3*: above 1 is faster than boto3. "
            "*client CPU vs boto3*: below 1 is cheaper.",
            "- *client CPU*: `time.process_time()` of the benchmark process (all threads, "
            "obstore's Rust runtime included) per request; the server runs in another process, "
            "its CPU (from /proc) is the *server CPU* column.",
            "- Every put reads its file from local disk (page cache) inside the timed loop; "
            "`S3Store.put_file` also computes the md5 and compares it with the ETag, "
            "`S3Store.get_into` computes the md5 of what it reads.",
            "",
        ]
    )


# -- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Example: .venv/bin/python bench/store_data_path.py --objects 500 --no-write",
    )
    parser.add_argument("--objects", type=int, default=2000, help="objects per benchmark")
    parser.add_argument("--size", type=int, default=4096, help="bytes per object")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results file")
    parser.add_argument("--no-write", action="store_true", help="print only; keep the file")
    args = parser.parse_args(argv)
    if args.objects < args.rounds or args.size < 0 or args.rounds < 1:
        parser.error("need --objects >= --rounds >= 1 and --size >= 0")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    server = RcloneS3Server()
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="repo-bench-") as tmp:
            files = []
            for i in range(args.objects):
                path = Path(tmp) / f"obj-{i:06d}"
                path.write_bytes(os.urandom(args.size))
                files.append(path)
            groups = bench_all(server, files, args.rounds)
    finally:
        server.stop()
    text = report(args, argv, groups)
    print(text)
    if not args.no_write:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"written to {args.output} ({time.perf_counter() - started:.0f} s in all)")
    return 0


def bench_all(server: RcloneS3Server, files: Sequence[Path], rounds: int) -> list[list[Bench]]:
    bucket = server.create_bucket(f"bench-{uuid.uuid4().hex[:12]}")
    store = S3Store(
        f"s3://{bucket}",
        endpoint_url=server.endpoint_url,
        region=server.region,
        access_key=server.access_key,
        secret_key=server.secret_key,
    )
    client = boto3_client(server)
    ob = raw_obstore(server, bucket)
    server_cpu = ServerCpu(server)
    n = len(files)
    try:
        with (
            ThreadPoolExecutor(THREADS, thread_name_prefix="bench-ours") as pool_ours,
            ThreadPoolExecutor(THREADS, thread_name_prefix="bench-boto3") as pool_boto,
        ):
            puts, gets, threaded = make_benches(store, client, ob, bucket, pool_ours, pool_boto)
            names = {id(b): f"b{i}" for i, b in enumerate([*puts, *threaded])}

            def put_items(bench: Bench, r: int, lo: int, hi: int) -> list[Item]:
                # A fresh key for every put: objects are never overwritten.
                tag = "warm" if r < 0 else f"r{r}"
                return [(f"{names[id(bench)]}/{tag}/{i:06d}", files[i]) for i in range(lo, hi)]

            def get_items(bench: Bench, r: int, lo: int, hi: int) -> list[Item]:
                # Both readers read the objects the first put benchmark wrote.
                return [(f"b0/r{r if r >= 0 else 0}/{i:06d}", files[i]) for i in range(lo, hi)]

            run_group(puts, put_items, n, rounds, server_cpu)
            run_group(gets, get_items, n, rounds, server_cpu)
            run_group(threaded, put_items, n, rounds, server_cpu)
    finally:
        store.close()
        client.close()
    return [puts, gets, threaded]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
