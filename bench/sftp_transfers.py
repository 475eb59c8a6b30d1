"""Large transfers to an ``sftp://`` store against `scp` and `rsync` over the same sshd.

    .venv/bin/python bench/sftp_transfers.py                 # 256 MiB x 3 rounds (~1.5 min)
    .venv/bin/python bench/sftp_transfers.py --mib 512 --rounds 3  # ~3 min

Starts the test harness's throwaway OpenSSH server (tests/harness/sshd.py: 127.0.0.1, a
free port, key-only logins as the unprivileged test account when run as root; needs
scripts/ensure-sshd) and times, for one file of `--mib` MiB, each round: up with the
store's `put_file` (``cat`` over an exec channel, as for an account with a shell, md5 in
the same pass, then the server's ``md5sum`` of the stored bytes before the rename), the
same store made to use pipelined SFTP writes and a read-back (as for an SFTP-only
account), `scp` and `rsync`; then down into an empty place with the store's `get_into`
(pipelined SFTP reads for every account, hashed as the bytes arrive), `scp` and
`rsync`. The tools take turns in an order that reverses every round. Each is a command
of its own, timed with process start, SSH handshake included (the store's runs in
a `python -c` of this venv), with its CPU seconds (user + system) and peak RSS from
`wait4`; the server's CPU (sshd, md5sum) is not counted for anyone. `scp` verifies
nothing beyond SSH's per-packet MACs (OpenSSH 9 speaks SFTP underneath); `rsync` checks
a whole-file checksum it computes on both ends; the store checks md5 on both ends.

The report (`docs/bench/sftp_transfers.md`) gives every command, the median rates and
the ratios per round (ours / peer's rate, same round).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import ROOT, git_describe, version_of

from harness.sshd import SshServer, sshd_missing

MiB = 1024 * 1024
DEFAULT_OUTPUT = ROOT / "docs" / "bench" / "sftp_transfers.md"
#: The store as it runs (cat over an exec channel, this account has a shell), and as it
#: runs for an SFTP-only account (pipelined SFTP requests, uploads read back).
OURS = ("store", "store (SFTP)")


def ours_for(direction: str) -> tuple[str, ...]:
    """Downloads are SFTP reads for every account: one run of them is enough."""
    return OURS if direction == "up" else OURS[:1]


#: The store's side, run as a command of its own: put or get one file.
_STORE_RUNNER = """
import sys
from pathlib import Path
from repo.stores.sftp import SftpStore
direction, url, key_file, known, key, local, how = sys.argv[1:]
store = SftpStore(url, key_file=key_file, known_hosts=known)
if how == "sftp":
    store._session.commands = False  # as for an account that may run no command
try:
    if direction == "up":
        store.put_file(key, Path(local))
    else:
        with open(local, "wb") as out:
            store.get_into(key, out)
finally:
    store.close()
"""


@dataclass
class Sample:
    round: int
    direction: str
    tool: str
    wall: float
    cpu: float
    rss_mb: float


class SftpBench:
    def __init__(self, server: SshServer, mib: int, work: Path) -> None:
        self.server = server
        self.mib = mib
        self.work = work
        self.root = server.new_root()
        self.ssh = [
            "-i",
            str(server.key_file),
            "-o",
            f"UserKnownHostsFile={server.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]
        self.remote = f"{server.user}@{server.host}"
        self.source = work / "source.bin"
        with open(self.source, "wb") as out:
            for _ in range(mib):
                out.write(os.urandom(MiB))

    def command(self, tool: str, direction: str, name: str) -> list[str]:
        """The argv that moves the file `name` (up from `source`, down to work/name)."""
        remote_path = f"{self.root}/{name}"
        local = str(self.work / name)
        if tool in OURS:
            url = self.server.url(self.root)
            return [
                sys.executable,
                "-c",
                _STORE_RUNNER,
                direction,
                url,
                str(self.server.key_file),
                str(self.server.known_hosts),
                name,
                str(self.source) if direction == "up" else local,
                "sftp" if tool == "store (SFTP)" else "default",
            ]
        if tool == "scp":
            up = [str(self.source), f"{self.remote}:{remote_path}"]
            down = [f"{self.remote}:{remote_path}", local]
            return [
                "scp",
                "-q",
                "-P",
                str(self.server.port),
                *self.ssh,
                *(up if direction == "up" else down),
            ]
        ssh = " ".join(["ssh", "-p", str(self.server.port), *self.ssh])
        up = [str(self.source), f"{self.remote}:{remote_path}"]
        down = [f"{self.remote}:{remote_path}", local]
        return ["rsync", "-q", "-e", ssh, *(up if direction == "up" else down)]

    def timed(self, argv: list[str]) -> tuple[float, float, float]:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"failed: {argv[0]} {' '.join(argv[1:4])}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024

    def round(self, number: int, tools: list[str]) -> list[Sample]:
        samples = []
        for direction in ("up", "down"):
            for tool in tools:
                if tool not in ours_for(direction) and tool in OURS:
                    continue
                name = f"{tool.replace(' (SFTP)', '-sftp')}-{number}.bin"
                if direction == "down":
                    (self.work / name).unlink(missing_ok=True)
                wall, cpu, rss = self.timed(self.command(tool, direction, name))
                samples.append(Sample(number, direction, tool, wall, cpu, rss))
                if direction == "down":
                    got = self.work / name
                    if got.stat().st_size != self.mib * MiB:
                        raise SystemExit(f"{tool} brought {got.stat().st_size} bytes down")
                    got.unlink()
        shutil.rmtree(self.root)  # the next round starts on an empty store
        self.server.make_dir(self.root)
        return samples


def report(samples: list[Sample], args: argparse.Namespace, tools: list[str]) -> str:
    mib = args.mib
    rate = {(s.round, s.direction, s.tool): mib / s.wall for s in samples}
    lines = [
        "# Large transfers to an `sftp://` store against `scp` and `rsync`",
        "",
        "Written by `bench/sftp_transfers.py`; do not edit by hand, rerun it. Method and "
        "caveats: the script's docstring and [`bench/README.md`](../../bench/README.md).",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; command: "
        f"`bench/sftp_transfers.py --mib {mib} --rounds {args.rounds}`",
        f"- code: {git_describe()}",
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
        f"- server: {_ssh_version()} (`/usr/sbin/sshd`, internal-sftp) "
        "on 127.0.0.1, same machine; the same server and key for every tool",
        f"- store: asyncssh {_asyncssh_version()}; peers: `scp` (OpenSSH), "
        f"{version_of(['rsync', '--version'])}",
        "",
        "## Every command",
        "",
        "| round | size | direction | tool | wall s | MiB/s | CPU s | peak RSS |",
        "|--:|--:|---|---|--:|--:|--:|--:|",
    ]
    for s in samples:
        lines.append(
            f"| {s.round} | {mib} MiB | {s.direction} | {s.tool} | {s.wall:.2f} | "
            f"{mib / s.wall:.0f} | {s.cpu:.2f} | {s.rss_mb:.0f} MB |"
        )
    lines += ["", "## Medians and ratios (ours / peer's rate, same round)", ""]
    lines += [
        "| direction | tool; ours / peer | median MiB/s (ours, or the peer's) | ratio per round | median ratio |",
        "|---|---|--:|---|--:|",
    ]
    rounds = sorted({s.round for s in samples})
    for direction in ("up", "down"):
        for tool in tools:
            if tool in OURS and tool not in ours_for(direction):
                continue
            med = statistics.median(rate[(r, direction, tool)] for r in rounds)
            if tool in OURS:
                lines.append(f"| {direction} | {tool} | {med:.0f} | - | - |")
                continue
            for ours in ours_for(direction):
                ratios = [rate[(r, direction, ours)] / rate[(r, direction, tool)] for r in rounds]
                per = ", ".join(f"{x:.2f}" for x in ratios)
                lines.append(
                    f"| {direction} | {ours} / {tool} | {med:.0f} | {per} | "
                    f"{statistics.median(ratios):.2f}x |"
                )
    if args.notes:
        lines += ["", Path(args.notes).read_text().strip()]
    return "\n".join(lines) + "\n"


def _ssh_version() -> str:
    done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().split(",")[0] or "OpenSSH"


def _asyncssh_version() -> str:
    import asyncssh

    return str(asyncssh.__version__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--notes", help="a Markdown file appended to the report")
    args = parser.parse_args()
    why = sshd_missing()
    if why:
        raise SystemExit(why)
    tools = [*OURS, "scp"] + (["rsync"] if shutil.which("rsync") else [])
    samples: list[Sample] = []
    with SshServer() as server:
        work = server.dir / "work"
        work.mkdir()
        bench = SftpBench(server, args.mib, work)
        for number in range(1, args.rounds + 1):
            order = tools if number % 2 else tools[::-1]
            samples += bench.round(number, order)
            print(f"round {number} done", file=sys.stderr)
    args.output.write_text(report(samples, args, tools))
    print(args.output.read_text())


if __name__ == "__main__":
    main()
