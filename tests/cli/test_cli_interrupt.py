"""Ctrl-C says what it left behind: nothing, for a command of one transaction (tested in
test_cli_naming); what it finished, for one that commits as it goes (`repo replicate`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING

import pytest

import repo
from conftest import write_config
from harness.proxy import FaultProxy
from replica_stores import directory_and_far
from repo.cli import INTERRUPTED, interrupted_line
from repo.cli.interrupts import FORCED, PATIENCE, WAITING

if TYPE_CHECKING:
    from pathlib import Path

    from harness.s3servers import S3Server


def _started(
    proxy: FaultProxy, cfg: Path, tmp_path: Path, *args: str, waiting_for: str
) -> subprocess.Popen[bytes]:
    """`repo ARGS` in its own process, once a request for `waiting_for` reached `proxy`."""
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("REPO_CFG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "repo", "--config", str(cfg), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not any(waiting_for in target for _m, target, _h in proxy.received):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"no request for {waiting_for} came: {proc.communicate()}")
        time.sleep(0.05)
    return proc


def test_each_command_says_what_ctrl_c_left() -> None:
    assert interrupted_line("add") == INTERRUPTED
    assert interrupted_line(None) == INTERRUPTED
    assert interrupted_line("replicate") == (
        "the work it finished is kept; `repo replicate` again does the rest."
    )


@pytest.mark.s3
def test_ctrl_c_during_replicate_keeps_what_it_copied_and_a_rerun_finishes(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server
) -> None:
    with FaultProxy(moto_server.endpoint_url) as proxy:
        config = directory_and_far(tmp_path, sqlite_url, moto_server, proxy.endpoint_url)
        with repo.Repo(config) as r:
            for name in ("a.txt", "b.txt", "c.txt"):
                r.add_file(name).touch(name.encode()).publish()
        cfg = write_config(tmp_path / "cfg.json", config)
        # b.txt's copy hangs on its way into `far`, long enough to be interrupted there.
        proxy.delay_requests(8, method="PUT", path="b.txt", count=None)
        proc = _started(proxy, cfg, tmp_path, "replicate", waiting_for="b.txt")
        try:
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert err.decode().splitlines()[-1] == (
            "Interrupted: the work it finished is kept; `repo replicate` again does the rest."
        )
        assert "Traceback" not in err.decode()
        proxy.reset()
        with repo.Repo(config) as r:
            report = r.replicate()
            assert report.ok, report.as_dict()
            assert report.checked == 3
            assert r.verify(deep=True).ok
            copies = r.copies(r.list("*"))
        assert sorted((c.store, c.state) for cs in copies.values() for c in cs) == sorted(
            [("main", "verified"), ("far", "verified")] * 3
        )


@pytest.mark.s3
def test_a_second_ctrl_c_quits_at_once_while_a_request_hangs(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server
) -> None:
    bucket = moto_server.create_bucket(f"t-{uuid.uuid4().hex[:16]}")
    with FaultProxy(moto_server.endpoint_url) as proxy:
        config = {
            "store": f"s3://{bucket}/repo",
            "s3_endpoint_url": proxy.endpoint_url,
            "s3_access_key": moto_server.access_key,
            "s3_secret_key": moto_server.secret_key,
            "s3_region": moto_server.region,
            "database": sqlite_url,
            "local_root": str(tmp_path / "local"),
        }
        cfg = write_config(tmp_path / "cfg.json", config)
        (tmp_path / "a.txt").write_bytes(b"alpha")
        # The upload's answer hangs far longer than anyone waits for Ctrl-C.
        proxy.delay_requests(30, method="PUT", path="a.txt", count=None)
        proc = _started(proxy, cfg, tmp_path, "add", "a.txt", waiting_for="a.txt")
        try:
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            time.sleep(PATIENCE + 1.5)  # the first is not acted on: the request hangs
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=60)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
        text = err.decode()
        assert proc.returncode == 130, text
        assert took < 15, took  # not the 30 s the request hangs
        assert [line for line in text.splitlines() if line] == [WAITING, FORCED]
        proxy.reset()
    with repo.Repo({**config, "s3_endpoint_url": moto_server.endpoint_url}) as r:
        assert r.list("*", state="all") == []  # the catalog is unchanged
