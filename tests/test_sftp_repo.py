"""A repository whose store is a directory on an SSH server (``sftp://``), end to end:
add, publish, get on another host (nothing cached), and garbage collection's orphan sweep
with the temporaries a killed upload leaves. The store contract itself runs on sftp in
tests/stores/test_store_contract.py; the whole suite does not (STORE_KINDS), for time.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from conftest import SFTP, make_store_target
from repo import Repo
from repo.errors import NotFoundError
from repo.integrity import ETAG
from repo.paths import make_key, new_version_token

if TYPE_CHECKING:
    from pathlib import Path

    from harness.sshd import SshServer


@pytest.fixture
def sftp_config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    target = make_store_target(request, SFTP, tmp_path)
    assert target.ssh_options
    return {
        "local_root": str(tmp_path / "local"),
        "store": target.url,
        "database": f"sqlite:///{tmp_path}/catalog.db",
        "host_name": "host-a",
        **target.ssh_options,
    }


def test_add_publish_and_get_on_another_host(sftp_config: dict[str, Any], tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "report.bin"
    src.write_bytes(data)
    with Repo(sftp_config) as r:
        f = r.add("reports/report.bin", src, tags=["q3"], publish=True)
        r.commit()
        assert r.store.head(f.key).size == len(data)
        assert f.verified_with == ETAG

    other = {**sftp_config, "host_name": "host-b", "local_root": str(tmp_path / "local-b")}
    with Repo(other) as r:
        current = r.current("reports/report.bin")
        assert current.read_bytes() == data
        out = current.save_as(tmp_path / "out.bin")
        assert out.read_bytes() == data


def test_gc_sweeps_orphans_and_killed_uploads_but_keeps_what_the_catalog_names(
    sftp_config: dict[str, Any], sshd_server: SshServer
) -> None:
    config = {**sftp_config, "orphan_grace_seconds": 0}
    with Repo(config) as r:
        kept = r.add_file("kept.txt").touch(b"kept").publish()
        r.commit()
        orphan = make_key(r.store.key_prefix, "orphans/o.bin", new_version_token())
        r.store.put_bytes(orphan, b"no row names me")
        root = r.store.bucket
        # What an upload killed midway leaves: a temporary file beside its object.
        killed = sshd_server.data / root.rsplit("/", 1)[1] / kept.key.rsplit("/", 1)[0]
        (killed / ".tmp-killed").write_bytes(b"half")
        old = datetime.now(UTC) - timedelta(days=2)
        os.utime(killed / ".tmp-killed", (old.timestamp(), old.timestamp()))

        report = r.gc(orphans=True, now=datetime.now(UTC) + timedelta(days=1))

        assert report.orphans.keys == [orphan]
        with pytest.raises(NotFoundError):
            r.store.head(orphan)
        assert not (killed / ".tmp-killed").exists()
        assert r.store.head(kept.key).size == 4
        assert r.current("kept.txt").read_bytes() == b"kept"


def test_an_ssh_store_holds_replicas_that_reads_fail_over_to_and_gc_deletes(
    sftp_config: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "main").mkdir()
    config = {
        **sftp_config,
        "store": (tmp_path / "main").as_uri(),
        "stores": {"ssh": sftp_config["store"]},
        "numcopies": 2,
        "expired_ttl_seconds": 0,
        "backups_before_purge": 0,
    }
    big = os.urandom(3 * 1024 * 1024 + 5)
    with Repo(config) as r:
        old = r.add_file("a.bin").touch(b"old").publish()
        r.add_file("big.bin").touch(big).publish()
        r.commit()
        assert r.replicate().copied == 2
        ssh = r.session.stores.named("ssh")
        old_copy = r.session.stores.copy_key(old.record, "ssh")
        assert ssh.head(old_copy).size == 3
        assert r.verify(deep=True).ok
        # The default store loses everything: another host reads from the SSH copies.
        for obj in (tmp_path / "main" / "data").iterdir():
            obj.chmod(0o600)
            obj.unlink()
    other = {**config, "host_name": "host-b", "local_root": str(tmp_path / "local-b")}
    with Repo(other) as r:
        assert r.current("big.bin").read_bytes() == big
        assert r.current("a.bin").read_bytes() == b"old"
        # A new version expires the old one; GC deletes its copy on the SSH server too.
        r.add_file("a.bin").touch(b"new").publish()
        r.commit()
        assert r.gc().expired.count == 1
        with pytest.raises(NotFoundError):
            r.session.stores.named("ssh").head(old_copy)
