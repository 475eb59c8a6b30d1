"""What replication costs: `repo replicate` against a plain copy of the same objects.

Starts two ``rclone serve s3`` servers on 127.0.0.1 (the test harness's), one per store,
as two providers would be. Each round makes a fresh repository (SQLite catalog, a bucket
on each server) holding ``--files`` small files and one file of ``--large-mib`` MiB,
then, taking turns (A,B then B,A ...):

* ours: ``Repo.replicate()`` (numcopies 2): per copy a claim committed in the catalog, the
  source streamed to a local file with its md5 checked, a create-only put checked by its
  ETag, the copy recorded verified; then the catalog's journal copied too;
* baseline: the same objects copied with boto3, ``get_object`` then ``put_object`` of the
  bytes in memory, one after the other, nothing checked or recorded.

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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from store_data_path import code_version  # noqa: E402

import repo  # noqa: E402
from harness.s3servers import RcloneS3Server  # noqa: E402

DEFAULT_OUTPUT = ROOT / "docs" / "bench" / "replication.md"


def _config(tmp: Path, a: RcloneS3Server, b: RcloneS3Server) -> dict[str, Any]:
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
    """A fresh repository holding `files` small files, or one file of `mib` MiB."""
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


def _plain(a: RcloneS3Server, b: RcloneS3Server, config: dict[str, Any], prefix: str) -> float:
    """Seconds to copy every object under `prefix` of the first bucket into a new bucket
    on the second server with boto3, one after the other."""
    source = config["store"][len("s3://") :].split("/")[0]
    dest = b.create_bucket(f"c-{uuid.uuid4().hex[:12]}")
    ca, cb = a.client(), b.client()
    try:
        keys = [
            o["Key"]
            for page in ca.get_paginator("list_objects_v2").paginate(Bucket=source, Prefix=prefix)
            for o in page.get("Contents", [])
        ]
        start = time.perf_counter()
        for key in keys:
            body = ca.get_object(Bucket=source, Key=key)["Body"].read()
            cb.put_object(Bucket=dest, Key=key, Body=body)
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
    timings: dict[str, list[float]] = {
        k: [] for k in ("ours small", "plain small", "ours large", "plain large")
    }
    try:
        with tempfile.TemporaryDirectory(prefix="repo-bench-") as tmp_name:
            tmp = Path(tmp_name)
            for round_no in range(args.rounds):
                small_cfg = _repository(tmp, a, b, args.files, 0)
                large_cfg = _repository(tmp, a, b, 0, args.large_mib)
                steps = [
                    ("ours small", lambda c=small_cfg: _replicate(c)),
                    ("plain small", lambda c=small_cfg: _plain(a, b, c, "repo/data/small/")),
                    ("ours large", lambda c=large_cfg: _replicate(c)),
                    ("plain large", lambda c=large_cfg: _plain(a, b, c, "repo/data/large.bin")),
                ]
                if round_no % 2:
                    steps.reverse()
                for name, step in steps:
                    timings[name].append(step())
    finally:
        a.stop()
        b.stop()
    per_file = {
        k: statistics.median(v) / args.files * 1000 for k, v in timings.items() if "small" in k
    }
    per_gib = {
        k: statistics.median(v) / (args.large_mib / 1024)
        for k, v in timings.items()
        if "large" in k
    }
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
        f"{args.rounds} interleaved rounds; medians",
        "",
        "| what | ours | plain copy | ratio |",
        "|---|---|---|---|",
        f"| per small file | {per_file['ours small']:.2f} ms | {per_file['plain small']:.2f} ms "
        f"| {per_file['ours small'] / per_file['plain small']:.2f}x |",
        f"| per GiB (one large file) | {per_gib['ours large']:.2f} s | "
        f"{per_gib['plain large']:.2f} s | {per_gib['ours large'] / per_gib['plain large']:.2f}x |",
        "",
        "Rounds (seconds): "
        + "; ".join(f"{k}: {', '.join(f'{t:.2f}' for t in v)}" for k, v in timings.items()),
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
