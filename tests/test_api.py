"""The public surface: what `import repo` offers, pinned, and the error tree."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import repo
import repo.errors


def test_public_names_are_pinned() -> None:
    assert sorted(repo.__all__) == sorted(
        [
            "AddReport",
            "BackupReport",
            "CacheReport",
            "CacheStatus",
            "CacheVerifyReport",
            "CatalogError",
            "Config",
            "ConfigEntry",
            "ConfigError",
            "ConflictError",
            "CreateReport",
            "GcCategory",
            "GcReport",
            "HostCopy",
            "HostSummary",
            "ImmutableError",
            "InvalidPathError",
            "InvalidTagError",
            "NotFoundError",
            "PermissionDeniedError",
            "Repo",
            "RepoError",
            "RepoFile",
            "RestoreReport",
            "RolesReport",
            "ProgressListener",
            "RecoverReport",
            "StateError",
            "StatusReport",
            "StoreError",
            "UsageError",
            "VerificationError",
            "VerifyReport",
            "__version__",
            "create_repository",
            "create_roles",
            "date_tags",
            "describe_config",
            "destroy_catalog",
            "load_config",
            "restore_catalog",
            "status_report",
        ]
    )
    for name in repo.__all__:
        assert hasattr(repo, name)


def test_every_error_derives_from_repo_error_and_has_a_docstring() -> None:
    errors = [
        obj
        for _, obj in inspect.getmembers(repo.errors, inspect.isclass)
        if issubclass(obj, Exception) and obj.__module__ == "repo.errors"
    ]
    assert len(errors) >= 10
    for cls in errors:
        assert issubclass(cls, repo.RepoError), cls
        assert cls.__doc__ and "\n" not in cls.__doc__.strip(), cls
        assert cls.__name__ in (repo.errors.__doc__ or ""), f"{cls.__name__} missing from the tree"


def test_errors_carry_an_optional_hint() -> None:
    err = repo.NotFoundError("no such file", hint="check the path")
    assert str(err) == "no such file" and err.hint == "check the path"
    assert repo.StateError("x").hint is None


def test_repo_find_and_friends_have_the_seed_signatures() -> None:
    params = inspect.signature(repo.Repo.find).parameters
    assert list(params) == ["self", "any", "all", "exclude", "published"]
    assert params["published"].default is True
    assert list(inspect.signature(repo.RepoFile.tag_date).parameters) == ["self", "when", "type"]


def test_demo_runs_on_the_embedded_default(tmp_path: Path) -> None:
    env = dict(os.environ, REPO_HOME=str(tmp_path / "home"), HOME=str(tmp_path))
    env.pop("REPO_CFG", None)
    out = subprocess.run(
        [sys.executable, "-m", "repo", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "published a new version of demo/reports/daily.csv" in out.stdout
    assert "read back demo/reports/daily.csv: 'day,visits\\n" in out.stdout
    assert (tmp_path / "home" / "catalog.db").exists()
    # A second run works on the same catalog (new versions supersede the old ones).
    again = subprocess.run(
        [sys.executable, "-m", "repo", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr


def test_cli_reports_errors_in_one_line_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"store": "file:///tmp/x", "database": "sqlite:///x.db", "colour": 1}')
    env = dict(os.environ, HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "repo", "demo", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines[0].startswith("Error: ") and "colour" in lines[0]
    assert lines[1].startswith("Try: ")
    assert "Traceback" not in out.stderr
