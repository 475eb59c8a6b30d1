"""Configuration of several named stores and the replication policy (src/repo/named_stores.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from repo.config import load_config
from repo.errors import ConfigError
from repo.named_stores import StoreSpec, place

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "Sup3rSecret-r2-4411"


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "store": "s3://main-bucket/repo",
        "database": f"sqlite:///{tmp_path}/catalog.db",
        "s3_endpoint_url": "http://127.0.0.1:9000",
        "s3_access_key": "MAINKEY",
        "s3_secret_key": "main-secret",
    }
    config.update(extra)
    return config


def _error(tmp_path: Path, **extra: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, **extra))
    return f"{info.value}\n{info.value.hint or ''}"


def test_without_new_settings_there_is_one_store_named_main_and_one_copy(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path))
    assert config.store_names == ("main",)
    assert (config.numcopies, config.mincopies, config.replicate_on_publish) == (1, 1, "later")
    assert (dict(config.stores), dict(config.placement)) == ({}, {})
    assert config.for_store("main") is config


def test_a_store_object_brings_its_own_connection_and_inherits_the_rest(tmp_path: Path) -> None:
    config = load_config(
        _config(
            tmp_path,
            store_name="eu",
            stores={
                "us": "s3://us-bucket/repo/",
                "r2": {
                    "url": "s3://r2-bucket",
                    "s3_endpoint_url": "http://127.0.0.1:9100",
                    "s3_access_key": "R2KEY",
                    "s3_secret_key": SECRET,
                },
                "nas": (tmp_path / "nas").as_uri(),
            },
            numcopies=3,
            mincopies=2,
            placement={"raw/": "nas", "raw/big/": "r2"},
        )
    )
    assert config.store_names == ("eu", "us", "r2", "nas")
    us, r2, nas = (config.for_store(n) for n in ("us", "r2", "nas"))
    assert (us.store_url, us.s3_endpoint_url, us.s3_access_key) == (
        "s3://us-bucket/repo",
        "http://127.0.0.1:9000",
        "MAINKEY",
    )
    assert (r2.store_url, r2.s3_endpoint_url, r2.s3_access_key, r2.s3_secret_key) == (
        "s3://r2-bucket",
        "http://127.0.0.1:9100",
        "R2KEY",
        SECRET,
    )
    assert nas.store_url == (tmp_path / "nas").as_uri()
    assert config.stores["r2"] == StoreSpec(
        name="r2",
        url="s3://r2-bucket",
        s3_endpoint_url="http://127.0.0.1:9100",
        s3_access_key="R2KEY",
        s3_secret_key=SECRET,
    )
    assert SECRET not in repr(config)
    assert SECRET not in repr(config.stores)
    assert place("raw/big/x.bin", config.placement, "eu") == "r2"
    assert place("raw/x.bin", config.placement, "eu") == "nas"
    assert place("cooked/x.bin", config.placement, "eu") == "eu"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"stores": {"Main2": "s3://b"}}, "'Main2' is not a store name"),
        ({"store_name": "1st"}, "key 'store_name' must be 1-32 characters"),
        ({"stores": {"main": "s3://b"}}, "names the default store ('main') again"),
        ({"stores": {"b": "s3://main-bucket/other"}}, "is in the same bucket as store 'main'"),
        (
            {"stores": {"b": "s3://x/1", "c": "s3://x/2"}},
            "key 'stores.c' is in the same bucket as store 'b'",
        ),
        ({"stores": {"b": "ftp://x"}}, "key 'stores.b' must start with s3://, file:// or sftp://"),
        ({"stores": {"b": {"s3_region": "x"}}}, "key 'stores.b': the store's 'url' is missing"),
        ({"stores": {"b": {"url": "s3://x", "sse": 1}}}, "unknown key(s) 'sse'"),
        ({"stores": {"b": 5}}, "key 'stores.b' must be a string or an object"),
        ({"numcopies": 2, "mincopies": 3, "stores": {"b": "s3://x"}}, "is more than 'numcopies'"),
        ({"numcopies": 2}, "asks for 2 copies in distinct stores, but 1 is configured"),
        ({"mincopies": 0}, "key 'mincopies' must be at least 1"),
        ({"replicate_on_publish": "soon"}, "must be 'now' (before publish returns) or 'later'"),
        ({"placement": {"raw/": "nowhere"}}, "names store 'nowhere', which is not configured"),
        ({"placement": {"/raw": "main"}}, "a prefix must be the start of a repository path"),
    ],
)
def test_a_bad_store_setting_is_a_one_line_error_naming_the_key(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    assert message in _error(tmp_path, **extra)


def test_an_ssh_store_can_be_one_of_the_stores(tmp_path: Path) -> None:
    config = load_config(
        _config(tmp_path, stores={"ssh": "sftp://backup@127.0.0.1:2222/srv/repo/"})
    )
    assert config.store_names == ("main", "ssh")
    assert config.for_store("ssh").store_url == "sftp://backup@127.0.0.1:2222/srv/repo"
    text = _error(tmp_path, stores={"ssh": f"sftp://backup:{SECRET}@127.0.0.1/srv/repo"})
    assert "key 'stores.ssh' must not carry credentials" in text
    assert SECRET not in text


def test_credentials_in_a_store_url_or_a_bad_secret_are_never_echoed(tmp_path: Path) -> None:
    text = _error(tmp_path, stores={"b": f"s3://AKIA:{SECRET}@bucket"})
    assert "key 'stores.b' must not carry credentials" in text
    assert SECRET not in text
    text = _error(tmp_path, stores={"b": {"url": "s3://x", "s3_secret_key": [SECRET]}})
    assert "key 'stores.b.s3_secret_key' must be a string, got a list" in text
    assert SECRET not in text
