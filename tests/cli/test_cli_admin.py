"""create, destroy, ctl and config from the shell."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from typing import TYPE_CHECKING

import pytest

import repo
from conftest import CliRun, StoreTarget, write_config
from repo.catalog import SCHEMA_VERSION

if TYPE_CHECKING:
    from pathlib import Path


def test_create_is_safe_to_run_twice(cli: CliRun, repo_config: dict[str, str]) -> None:
    masked = repo.load_config(repo_config).masked_database_url()
    first = cli("create")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == (
        f"catalog {masked}: created (schema version {SCHEMA_VERSION})\n"
        f"store {repo_config['store']}: reachable\n"
    )
    again = cli("create")
    assert again.stdout.splitlines()[0] == (
        f"catalog {masked}: already exists, schema up to date (schema version {SCHEMA_VERSION})"
    )


def test_destroy_asks_first_and_never_touches_the_store(
    cli: CliRun, repo_config: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "f"
    src.write_text("keep me")
    assert cli("add", "keep/f", str(src), "--publish").exit_code == 0
    with repo.Repo(repo_config) as r:
        objects_before = sorted(o.key for o in r.store.list(r.store.key_prefix))
    assert objects_before

    unasked = cli("destroy", input="y\n")  # no terminal: an answer in a pipe is no answer
    assert (unasked.exit_code, unasked.stdout) == (1, "")
    assert unasked.stderr == (
        "Error: not on a terminal, so nothing can confirm destroying the catalog: pass --yes\n"
    )
    monkeypatch.setattr("repo.cli.prompts.on_terminal", lambda: True)
    declined = cli("destroy", input="n\n")
    assert declined.exit_code == 1
    assert "objects in " in declined.stderr
    assert "are NOT deleted" in declined.stderr
    assert declined.stderr.endswith("[y/N]: n\nAborted!\n")
    assert cli("cat", "keep/f").stdout == "keep me"  # still there

    done = cli("destroy", "--yes")
    assert done.exit_code == 0
    assert done.stdout == (
        f"catalog destroyed (1 file versions forgotten); data in {repo_config['store']} "
        "was not touched\n"
    )
    with repo.Repo(repo_config) as r:  # a fresh, empty catalog
        assert sorted(o.key for o in r.store.list(r.store.key_prefix)) == objects_before
        assert r.list("*", state="all") == []
    again = cli("ctl", "--destroy", "--yes")
    assert again.exit_code == 0
    assert again.stdout.startswith("catalog destroyed (0 file versions")


def test_ctl_is_the_seed_spelling(embedded_cli: CliRun) -> None:
    created = embedded_cli("ctl", "--create")
    assert created.exit_code == 0
    assert f"created (schema version {SCHEMA_VERSION})" in created.stdout
    shown = embedded_cli("ctl", "--config")
    assert shown.exit_code == 0
    assert shown.stdout.startswith("SETTING ")
    restore = embedded_cli("ctl", "--restore")
    assert restore.exit_code == 1
    lines = restore.stderr.splitlines()
    assert lines[0].startswith("Error: no complete backup in file://")
    assert lines[1] == (
        "Try: take one with `repo backup` while the catalog is there; if there should be "
        "some, check 'backup_s3_bucket' and the store settings"
    )
    nothing = embedded_cli("ctl")
    assert nothing.exit_code == 2


def test_config_show_masks_secrets_and_says_where_values_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write_config(
        tmp_path / "cfg.json",
        {
            "default_s3_bucket": "my-bucket",
            "s3_access_key": "AKIAEXAMPLEKEY",
            "s3_secret_key": "very-secret-value",
            "database": {"host": "db.example", "user": "u", "password": "db-password",
                         "database": "repo"},
        },
    )  # fmt: skip
    monkeypatch.setenv("REPO_CFG", str(cfg))
    result = CliRun(None, tmp_path)("config", "--show", "--json")
    assert result.exit_code == 0
    assert "very-secret-value" not in result.stdout
    assert "db-password" not in result.stdout
    settings = json.loads(result.stdout)["settings"]
    assert settings["store_url"] == {
        "value": "s3://my-bucket",
        "origin": f"{cfg} ($REPO_CFG): default_s3_bucket",
    }  # fmt: skip
    assert settings["s3_secret_key"]["value"] == "****"
    assert settings["s3_access_key"]["value"] == "AKIA****"
    assert settings["database_url"]["value"] == "postgresql+psycopg://u:***@db.example/repo"
    assert settings["host_name"]["origin"] == "default: this machine's host name"
    assert settings["s3_endpoint_url"] == {
        "value": None, "origin": "not set"
    }  # fmt: skip
    table = CliRun(None, tmp_path)("config")
    assert table.exit_code == 0
    assert "very-secret-value" not in table.stdout
    assert table.stdout.splitlines()[0].split() == ["SETTING", "VALUE", "FROM"]


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("store_url", ["rclone", "moto"], indirect=True)
def test_config_s3cmd_writes_a_private_file_that_real_s3cmd_can_use(
    cli: CliRun, store_url: StoreTarget, tmp_path: Path
) -> None:
    s3cmd = shutil.which("s3cmd")
    if s3cmd is None:
        if os.environ.get("REPO_TEST_ALLOW_MISSING_TOOLS") == "1":
            pytest.skip("s3cmd is not installed")
        pytest.fail("s3cmd is not on PATH: run scripts/ensure-tools", pytrace=False)
    src = tmp_path / "f.csv"
    src.write_text("x,y\n")
    assert cli("add", "shared/f.csv", str(src), "--publish").exit_code == 0

    dest = tmp_path / "s3cfg"
    written = cli("config", "--s3cmd", "-o", str(dest))
    assert written.exit_code == 0, written.stderr
    assert written.stdout == f"wrote {dest} (mode 0600); try: s3cmd -c {dest} ls\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600

    refused = cli("config", "--s3cmd", "-o", str(dest))
    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [
        f"Error: {dest} already exists",
        "Try: use --force to overwrite it",
    ]
    assert cli("config", "--s3cmd", "-o", str(dest), "--force").exit_code == 0

    listing = subprocess.run(
        [s3cmd, "-c", str(dest), "ls", "-r", f"s3://{store_url.bucket}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listing.returncode == 0, listing.stderr
    assert f"s3://{store_url.bucket}/{store_url.prefix}/data/shared/f.csv~" in listing.stdout


def test_config_s3cmd_on_a_local_store_explains(embedded_cli: CliRun) -> None:
    result = embedded_cli("config", "--s3cmd")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.splitlines()) == 2
