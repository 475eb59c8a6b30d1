"""The public surface: what `import repo` offers, pinned, and the error tree."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import repo
import repo.errors

if TYPE_CHECKING:
    from pathlib import Path


def test_public_names_are_pinned() -> None:
    assert sorted(repo.__all__) == sorted(
        [
            "AddReport",
            "ArchiveReport",
            "ArchivedError",
            "BackupReport",
            "CacheReport",
            "CacheStatus",
            "CacheVerifyReport",
            "CatalogBusyError",
            "CatalogError",
            "Config",
            "ConfigEntry",
            "ConfigError",
            "ConflictError",
            "CopiesReport",
            "CopyFinding",
            "CreateReport",
            "FetchReport",
            "Finding",
            "GcCategory",
            "GcReport",
            "HostCopy",
            "HostSummary",
            "ImmutableError",
            "InvalidPathError",
            "InvalidTagError",
            "KeepPolicy",
            "LocalDiskError",
            "LostFile",
            "NotFoundError",
            "PermissionDeniedError",
            "Repo",
            "RepoError",
            "RepoFile",
            "RestoreReport",
            "RolesReport",
            "ScheduleReport",
            "Scheduled",
            "ProgressListener",
            "PurgeReport",
            "Session",
            "RecoverReport",
            "ReplicateReport",
            "StateError",
            "StatusReport",
            "StoreCopy",
            "StoreError",
            "StoreSummary",
            "StoreSpec",
            "ThawReport",
            "ThawStatus",
            "UntrustedDataError",
            "UsageError",
            "VerificationError",
            "VerifyCategory",
            "VerifyReport",
            "__version__",
            "create_repository",
            "create_roles",
            "date_tags",
            "describe_config",
            "destroy_catalog",
            "load_config",
            "restorable_backups",
            "restore_catalog",
            "status_report",
        ]
    )
    for name in repo.__all__:
        assert hasattr(repo, name)


def _named_types(annotation: object) -> set[str]:
    """Class names in a (string) annotation such as ``list[RepoFile] | None``."""
    import re

    return set(re.findall(r"\b([A-Z][A-Za-z]+)\b", str(annotation)))


def test_every_type_a_public_call_returns_or_reports_is_exported() -> None:
    import dataclasses
    import typing

    exported = set(repo.__all__)
    import builtins
    import collections.abc
    import datetime
    import pathlib

    builtin = {
        name
        for module in (builtins, collections.abc, datetime, pathlib, typing)
        for name in dir(module)
    } | {"NoneType"}
    seen: set[str] = set()
    todo = [repo.Repo, repo.RepoFile]
    todo += [getattr(repo, n) for n in repo.__all__ if inspect.isfunction(getattr(repo, n))]
    while todo:
        obj = todo.pop()
        # A dataclass's class attributes named like its fields are their defaults (a
        # value such as "GLACIER", not a type); the fields' types are added below.
        defaults = (
            {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
        )
        members = (
            [
                m
                for name, m in vars(obj).items()
                if not name.startswith("_") and name not in defaults
            ]
            if inspect.isclass(obj)
            else [obj]
        )
        if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
            members += [f.type for f in dataclasses.fields(obj)]
        for member in members:
            if isinstance(member, property):
                member = member.fget
            if callable(member) and not inspect.isclass(member):
                # The annotation as written, never evaluated (a string, under `from
                # __future__ import annotations`): the names in it may be imported only
                # for type checking. Dataclass fields' types are such strings too.
                annotation = inspect.signature(member).return_annotation
                if annotation is inspect.Signature.empty:
                    annotation = ""
            else:
                annotation = member
            for name in _named_types(annotation) - builtin - seen:
                seen.add(name)
                # The session's parts: documented lower layers, reached through Repo.
                parts = {"Catalog", "Store", "LocalCache", "BackupPlace", "StagingArea"}
                parts |= {"CachedCopies", "FileRecord", "HostCopy", "Progress"}
                assert name in exported or name in parts, f"{name} is returned but not exported"
                if name in exported and inspect.isclass(getattr(repo, name)):
                    todo.append(getattr(repo, name))
    assert {"FetchReport", "Finding", "LostFile", "VerifyCategory"} <= seen


def test_every_error_derives_from_repo_error_and_has_a_docstring() -> None:
    errors = [
        obj
        for _, obj in inspect.getmembers(repo.errors, inspect.isclass)
        if issubclass(obj, Exception) and obj.__module__ == "repo.errors"
    ]
    assert len(errors) >= 10
    for cls in errors:
        assert issubclass(cls, repo.RepoError), cls
        assert cls.__doc__, cls
        assert "\n" not in cls.__doc__.strip(), cls
        assert cls.__name__ in (repo.errors.__doc__ or ""), f"{cls.__name__} missing from the tree"


def test_errors_carry_an_optional_hint() -> None:
    err = repo.NotFoundError("no such file", hint="check the path")
    assert str(err) == "no such file"
    assert err.hint == "check the path"
    assert repo.StateError("x").hint is None


def test_repo_find_and_friends_have_the_seed_signatures() -> None:
    params = inspect.signature(repo.Repo.find).parameters
    # The seed's, then `limit` (issue 17).
    assert list(params) == ["self", "any", "all", "exclude", "published", "pattern", "limit"]
    assert params["published"].default is True
    # Options are keyword-only: `find(any=[...])`, as the seed spells it.
    assert all(p.kind is p.KEYWORD_ONLY for name, p in params.items() if name != "self")
    for method in (repo.Repo.gc, repo.Repo.verify, repo.Repo.verify_cache, repo.Repo.recover):
        options = list(inspect.signature(method).parameters.values())[1:]
        assert options, method
        assert all(p.kind is p.KEYWORD_ONLY for p in options), method
    assert list(inspect.signature(repo.RepoFile.tag_date).parameters) == ["self", "when", "type"]


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
    assert lines[0].startswith("Error: ")
    assert "colour" in lines[0]
    assert lines[1].startswith("Try: ")
    assert "Traceback" not in out.stderr
