"""What replication costs: `repo replicate` against a plain copy of the same objects.

Starts two ``rclone serve s3`` servers on 127.0.0.1 (the test harness's), one per store,
as two providers would be. Each round makes fresh repositories (SQLite catalog, a bucket
on each server) holding ``--files`` small files, or one file of ``--large-mib`` MiB,
then, taking turns (A,B then B,A ...):

* ours: ``Repo.replicate()`` (numcopies 2): per batch of copies one claim committed in the
  catalog, the copies made by `replicate.WORKERS` threads (the source read, its md5
  checked, a create-only put checked by its ETag), one commit recording them verified;
  then the catalog's journal copied too;
* baseline: the same objects copied with boto3, ``get_object`` then ``put_object`` of the
  bytes in memory, nothing checked or recorded: one after the other (the first row), and
  with as many threads as ours (the second).

Then the same between two buckets of the first server, same credentials, where ours copies
on the server (CopyObject, checked by the copy's ETag), against boto3's ``copy_object``
of the same objects, with as many threads as ours.

Reported per small file (ms) and per GiB (s) for the large one, each as the ratio to the
baseline in the same run (bench/README.md: ratios within one run).

Usage: .venv/bin/python bench/replication.py [--files N] [--large-mib M] [--rounds R]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from store_data_path import code_version  # noqa: E402

import repo  # noqa: E402
from harness.s3servers import RcloneS3Server  # noqa: E402
from repo.replicate import WORKERS  # noqa: E402

DEFAULT_OUTPUT = ROOT / "docs" / "bench" / "replication.md"

#: What the rows compare, written under the table.
READING = [
    "## Reading the rows",
    "",
    "Ours is a whole `repo replicate` run: besides the copies it pays fixed costs the",
    "baselines do not (a commit and a journal object per batch of 64 copies for the",
    "claims and one for the verifications, a boto3 client made on first use for",
    "server-side copies, the catalog's journal copied into the second store), which",
    "weigh most where the copies are cheap. Small copies stream through obstore, which",
    "spends far less CPU per request than boto3: on 2 shared CPUs that, and the copies",
    "running in parallel, put ours below either boto3 baseline. A large file is read",
    "into a local file, its md5 checked, then uploaded in parts and checked by its",
    "ETag: two passes over the disk the in-memory baseline does not make. A server-side",
    "copy is one boto3 CopyObject request per copy, as in its baseline, checked by the",
    "copy's ETag; on 127.0.0.1 it is not faster than streaming small files (the",
    "network costs nothing here, and botocore's CPU does); against a distant server it",
    "saves the bytes' round trip through this host. Timings on a shared machine vary",
    "from round to round: compare ratios within a run (bench/README.md).",
    "",
]


def _config(tmp: Path, a: RcloneS3Server, b: RcloneS3Server) -> dict[str, Any]:
    """Two stores, the second on server `b` (which may be `a`: then CopyObject applies)."""
    name = uuid.uuid4().hex[:12]
    bucket_a, bucket_b = a.create_bucket(f"a-{name}"), b.create_bucket(f"b-{name}")
    return {
        "store": f"s3://{bucket_a}/repo",
        "database": f"sqlite:///{tmp}/{name}.db",
        "local_root": str(tmp / f"local-{name}"),
        "s3_endpoint_url": a.endpoint_url,
        "s3_access_key": a.access_key,
        "s3_secret_key": a.secret_key,
        "s3_region": a.region,
        "stores": {
            "second": {
                "url": f"s3://{bucket_b}/repo",
                "s3_endpoint_url": b.endpoint_url,
                "s3_access_key": b.access_key,
                "s3_secret_key": b.secret_key,
            }
        },
        "numcopies": 2,
    }


def _repository(tmp: Path, a: RcloneS3Server, b: RcloneS3Server, files: int, mib: int) -> Any:
    """A fresh repository holding `files` small files, or one file of `mib` MiB; its
    second store on server `b`."""
    config = _config(tmp, a, b)
    with repo.Repo(config) as r:
        if files:
            tree = tmp / f"tree-{uuid.uuid4().hex[:8]}"
            tree.mkdir()
            for i in range(files):
                (tree / f"{i:05}.bin").write_bytes(os.urandom(4096))
            r.add_tree(tree, prefix="small", publish=True)
        if mib:
            large = tmp / f"large-{mib}.bin"
            if not large.exists():
                large.write_bytes(os.urandom(mib << 20))
            r.add("large.bin", large, publish=True)
        r.commit()
    return config


def _plain(
    a: RcloneS3Server,
    b: RcloneS3Server,
    config: dict[str, Any],
    prefix: str,
    *,
    threads: int = 1,
    on_server: bool = False,
) -> float:
    """Seconds to copy every object under `prefix` of the first bucket into a new bucket
    on server `b` with boto3, in `threads` threads: a GET then a PUT of the bytes, or
    with `on_server` (`b` is `a`) one CopyObject."""
    source = config["store"][len("s3://") :].split("/")[0]
    dest = b.create_bucket(f"c-{uuid.uuid4().hex[:12]}")
    ca, cb = a.client(), b.client()
    try:
        keys = [
            o["Key"]
            for page in ca.get_paginator("list_objects_v2").paginate(Bucket=source, Prefix=prefix)
            for o in page.get("Contents", [])
        ]

        def one(key: str) -> None:
            if on_server:
                cb.copy_object(Bucket=dest, Key=key, CopySource={"Bucket": source, "Key": key})
                return
            body = ca.get_object(Bucket=source, Key=key)["Body"].read()
            cb.put_object(Bucket=dest, Key=key, Body=body)

        start = time.perf_counter()
        if threads == 1:
            for key in keys:
                one(key)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(one, keys))
        return time.perf_counter() - start
    finally:
        ca.close()
        cb.close()


def _replicate(config: dict[str, Any]) -> float:
    with repo.Repo(config) as r:
        start = time.perf_counter()
        report = r.replicate()
        took = time.perf_counter() - start
        if not report.ok:
            raise SystemExit(f"replication failed: {report.as_dict()}")
    return took


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    a, b = RcloneS3Server(), RcloneS3Server()
    a.start()
    b.start()
    names = [
        f"{who} {what}"
        for what in ("small", "large", "server small", "server large")
        for who in ("ours", "plain")
    ]
    timings: dict[str, list[float]] = {k: [] for k in [*names, "plain small threads"]}
    small_prefix, large_prefix = "repo/data/small/", "repo/data/large.bin"
    try:
        with tempfile.TemporaryDirectory(prefix="repo-bench-") as tmp_name:
            tmp = Path(tmp_name)
            for round_no in range(args.rounds):
                small = _repository(tmp, a, b, args.files, 0)
                large = _repository(tmp, a, b, 0, args.large_mib)
                twin_small = _repository(tmp, a, a, args.files, 0)
                twin_large = _repository(tmp, a, a, 0, args.large_mib)
                steps: list[tuple[str, Any]] = [
                    ("ours small", lambda c=small: _replicate(c)),
                    ("plain small", lambda c=small: _plain(a, b, c, small_prefix)),
                    (
                        "plain small threads",
                        lambda c=small: _plain(a, b, c, small_prefix, threads=WORKERS),
                    ),
                    ("ours large", lambda c=large: _replicate(c)),
                    ("plain large", lambda c=large: _plain(a, b, c, large_prefix)),
                    ("ours server small", lambda c=twin_small: _replicate(c)),
                    (
                        "plain server small",
                        lambda c=twin_small: _plain(
                            a, a, c, small_prefix, on_server=True, threads=WORKERS
                        ),
                    ),
                    ("ours server large", lambda c=twin_large: _replicate(c)),
                    (
                        "plain server large",
                        lambda c=twin_large: _plain(a, a, c, large_prefix, on_server=True),
                    ),
                ]
                if round_no % 2:
                    steps.reverse()
                for name, step in steps:
                    timings[name].append(step())
    finally:
        a.stop()
        b.stop()
    med = {k: statistics.median(v) for k, v in timings.items()}
    per_file = {k: t / args.files * 1000 for k, t in med.items() if "small" in k}
    per_gib = {k: t / (args.large_mib / 1024) for k, t in med.items() if "large" in k}

    def row(what: str, ours: str, plain: str, unit: str, table: dict[str, float]) -> str:
        ratio = table[ours] / table[plain]
        return f"| {what} | {table[ours]:.2f} {unit} | {table[plain]:.2f} {unit} | {ratio:.2f}x |"

    lines = [
        "# Replication cost: `repo replicate` against a plain copy",
        "",
        "Written by `bench/replication.py` (see its docstring for what is timed).",
        "",
        f"- code: {code_version()}",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{shlex.join(['.venv/bin/python', 'bench/replication.py', *argv])}`",
        f"- machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; two `rclone serve s3` on 127.0.0.1",
        f"- workload: {args.files} files of 4 KiB and one of {args.large_mib} MiB per round, "
        f"{args.rounds} interleaved rounds; medians; ours with {WORKERS} copy threads",
        "",
        "| what | ours | plain copy | ratio |",
        "|---|---|---|---|",
        row("per small file", "ours small", "plain small", "ms", per_file),
        row(
            f"per small file, plain copy in {WORKERS} threads too",
            "ours small",
            "plain small threads",
            "ms",
            per_file,
        ),
        row("per GiB (one large file)", "ours large", "plain large", "s", per_gib),
        row(
            f"server-side, per small file (copy_object in {WORKERS} threads)",
            "ours server small",
            "plain server small",
            "ms",
            per_file,
        ),
        row(
            "server-side, per GiB (one large file, one copy_object)",
            "ours server large",
            "plain server large",
            "s",
            per_gib,
        ),
        "",
        "Rounds (seconds): "
        + "; ".join(f"{k}: {', '.join(f'{t:.2f}' for t in v)}" for k, v in timings.items()),
        "",
        *READING,
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
