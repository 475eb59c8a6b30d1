"""A store that does not answer is given up for the rest of a `repo replicate` run: a
dead store costs one failed copy per worker, not one per version (src/repo/replicate.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from conftest import CliRun, write_config
from harness.proxy import FaultProxy
from replica_stores import directory_and_far
from repo import Repo, replicate

if TYPE_CHECKING:
    from pathlib import Path

    from harness.s3servers import S3Server

pytestmark = pytest.mark.s3


def test_a_store_that_stops_answering_is_given_up_for_the_run(
    tmp_path: Path, sqlite_url: str, moto_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One copy at a time, two to a batch: the first failure is seen before the rest.
    monkeypatch.setattr(replicate, "WORKERS", 1)
    monkeypatch.setattr(replicate, "BATCH_COPIES", 2)
    with FaultProxy(moto_server.endpoint_url) as proxy:
        config = directory_and_far(
            tmp_path, sqlite_url, moto_server, proxy.endpoint_url, s3_timeout_seconds=1
        )
        names = [f"f{i}.txt" for i in range(6)]
        with Repo(config) as r:
            for name in names:
                r.add_file(name).touch(name.encode()).publish()
        proxy.fail_requests(503, count=None)  # `far` answers nothing but 503s
        run = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)
        done = run("replicate")
        sent = [target for _m, target, _s in proxy.requests if "/data/" in target]
        tried = {target.rsplit("/", 1)[-1].split("~")[0] for target in sent}
        proxy.reset()
        assert done.exit_code == 1
        # Only the first batch's copies were tried (the first one, then the second
        # refused at once); nothing after it was claimed or sent.
        assert tried == {"f0.txt"}, sent
        lines = done.stderr.splitlines()
        (warning,) = [line for line in lines if line.startswith("WARNING")]
        assert "store far: not answering, no more copies tried there in this run" in warning
        assert "Error: 6 versions still under-replicated:" in lines
        # Healthy again, the next run finishes everything.
        with Repo(config) as r:
            again = r.replicate()
            assert (again.ok, again.copied) == (True, 6)


def test_replicate_lists_twenty_versions_still_under_and_counts_the_rest(
    tmp_path: Path, sqlite_url: str
) -> None:
    (tmp_path / "main").mkdir()
    (tmp_path / "file").write_bytes(b"")
    config = {
        "store": (tmp_path / "main").as_uri(),
        "database": sqlite_url,
        "local_root": str(tmp_path / "local"),
        "stores": {"gone": (tmp_path / "file" / "gone").as_uri()},  # cannot be made
        "numcopies": 2,
    }
    with Repo(config) as r:
        for i in range(25):
            r.add_file(f"f{i:02}.txt").touch(b"x").publish()
    done = CliRun(write_config(tmp_path / "cfg.json", config), tmp_path)("replicate")
    assert done.exit_code == 1
    listed = [line for line in done.stderr.splitlines() if line.startswith("  ")]
    assert len(listed) == 21
    assert listed[-1] == "  ... and 5 more (`--json` lists every one)"
