"""Hosts that serve more than one repository (issue 15): two repositories never share a
`local_root`, so one's `repo cache prune` can never drop the other's copies."""

from __future__ import annotations

import io
import json
import stat
from typing import TYPE_CHECKING, Any

import pytest

import repo
from repo.local_owner import MARKER

if TYPE_CHECKING:
    from pathlib import Path


def _config(tmp_path: Path, name: str, catalog_url: str, **extra: Any) -> dict[str, Any]:
    store = tmp_path / f"store-{name}"
    store.mkdir(exist_ok=True)
    database = catalog_url if name == "a" else f"sqlite:///{tmp_path}/catalog-{name}.db"
    return {"store": store.as_uri(), "database": database, "host_name": "shared", **extra}


def _cache_one(config: dict[str, Any], path: str) -> str:
    with repo.Repo(config) as r:
        rf = r.add(path, io.BytesIO(path.encode()), publish=True)  # a stream: kept cached
        assert r.cache.cache_path(rf.key).exists()
        return rf.key


def test_repositories_without_a_local_root_each_get_their_own(
    tmp_path: Path, catalog_url: str
) -> None:
    a = _config(tmp_path, "a", catalog_url)
    b = _config(tmp_path, "b", catalog_url)
    key_a = _cache_one(a, "a.txt")
    _cache_one(b, "b.txt")
    with repo.Repo(b) as rb:
        rb.prune_cache()
        rb.clear_cache()
    with repo.Repo(a) as ra:
        assert ra.cache.cache_path(key_a).exists()  # b's housekeeping never saw it
        assert ra.config.local_root != repo.load_config(b).local_root


def test_a_local_root_that_belongs_to_another_repository_is_refused(
    tmp_path: Path, catalog_url: str
) -> None:
    shared = str(tmp_path / "local")
    a = _config(tmp_path, "a", catalog_url, local_root=shared)
    b = _config(tmp_path, "b", catalog_url, local_root=shared)
    key_a = _cache_one(a, "a.txt")
    with pytest.raises(repo.ConfigError) as caught:
        repo.Repo(b)
    assert caught.value.message == (
        f"local_root {shared} belongs to another repository (store {a['store']}); "
        "two repositories must not share a cache"
    )
    assert caught.value.hint is not None
    assert "'local_root' of its own" in caught.value.hint
    with repo.Repo(a) as ra:
        assert ra.cache.cache_path(key_a).exists()


def test_a_catalog_recreated_over_the_same_store_takes_its_cache_over(
    tmp_path: Path, catalog_url: str
) -> None:
    a = _config(tmp_path, "a", catalog_url, local_root=str(tmp_path / "local"))
    _cache_one(a, "a.txt")
    repo.destroy_catalog(a)
    with repo.Repo(a) as r:  # a new catalog, a new identity, the same store
        identity = r.session.repository_id
        r.add("b.txt", io.BytesIO(b"b"), publish=True)
    marker = json.loads((tmp_path / "local" / MARKER).read_text())
    assert (marker["repository_id"], marker["store"]) == (identity, a["store"])
    mode = stat.S_IMODE((tmp_path / "local" / MARKER).stat().st_mode)
    assert mode == 0o600  # the cache is its user's alone, and so is its marker


@pytest.mark.parametrize(
    "planted",
    [b"", b"not json", b"[]", b'{"repository_id": 7}', b'{"store": "x"}', b"{" * 10_000],
    ids=["empty", "text", "list", "number", "no-id", "huge"],
)
def test_a_marker_that_is_not_ours_is_never_taken_for_ours(
    tmp_path: Path, catalog_url: str, planted: bytes
) -> None:
    root = tmp_path / "local"
    root.mkdir()
    (root / MARKER).write_bytes(planted)
    with pytest.raises(repo.ConfigError) as caught:
        repo.Repo(_config(tmp_path, "a", catalog_url, local_root=str(root)))
    assert caught.value.message == (
        f"{root / MARKER} does not say which repository owns this local_root"
    )
    assert (root / MARKER).read_bytes() == planted  # left as it was


def test_an_unmarked_cache_of_another_repository_is_not_claimed(
    tmp_path: Path, catalog_url: str
) -> None:
    """A cache made before markers existed is claimed only if its copies are ours."""
    shared = tmp_path / "local"
    b = _config(tmp_path, "b", catalog_url, local_root=str(shared))
    _cache_one(b, "b.txt")
    (shared / MARKER).unlink()  # as an older version left it
    a = _config(tmp_path, "a", catalog_url, local_root=str(shared))
    with pytest.raises(repo.ConfigError, match="looks like another repository's cache"):
        repo.Repo(a)
    assert not (shared / MARKER).exists()
    with repo.Repo(b) as r:  # its own repository claims it again
        assert r.current("b.txt").read_bytes() == b"b.txt"
    assert json.loads((shared / MARKER).read_text())["store"] == b["store"]
