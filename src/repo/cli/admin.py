"""Commands that manage the repository itself: create, destroy, ctl, config, demo.

Each imports the library inside its body: `repo --help` and `repo config --show` start
without loading the catalog's database layer or the S3 clients (bench/startup.py).
"""

from __future__ import annotations

import click

from .app import App, pass_app
from .options import json_option, terminate_option
from .output import echo, echo_json, table
from .prompts import confirm

__all__ = ["config", "create", "ctl", "demo", "destroy"]

yes_option = click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")


def _create(
    app: App, roles: bool = False, role_name: str | None = None, *, as_json: bool = False
) -> None:
    from ..admin import create_repository

    rep = create_repository(app.config(), roles=roles, role_name=role_name)
    if as_json:
        echo_json(
            {
                "catalog": {
                    "url": rep.catalog,
                    "created": rep.created,
                    "schema_version": rep.schema_version,
                },
                "store": {"url": rep.store, "reachable": True},
                "roles": None
                if rep.roles is None
                else {
                    "read_only": rep.roles.read_only,
                    "read_write": rep.roles.read_write,
                    "created": list(rep.roles.created),
                },
            }
        )
        return
    verb = "created" if rep.created else "already exists, schema up to date"
    echo(f"catalog {rep.catalog}: {verb} (schema version {rep.schema_version})")
    echo(f"store {rep.store}: reachable")
    if rep.roles is not None:
        for role, what in (
            (rep.roles.read_only, "read-only"),
            (rep.roles.read_write, "read-write"),
        ):
            done = "created" if role in rep.roles.created else "exists, grants renewed"
            echo(f"role {role} ({what}): {done}")
        echo(
            "the roles cannot log in: grant one to each login user, e.g. "
            f"GRANT {rep.roles.read_only} TO some_user (docs/security.md)"
        )


def _destroy(app: App, yes: bool, terminate_others: bool = False, *, as_json: bool = False) -> None:
    from ..admin import destroy_catalog

    cfg = app.config()
    if not yes:
        confirm(
            f"Destroy the catalog at {cfg.masked_database_url()}? Every file's record, tag "
            f"and state is forgotten; objects in {cfg.store_url} are NOT deleted",
            what="destroying the catalog",
        )
    forgotten = destroy_catalog(cfg, terminate_others=terminate_others)
    if as_json:
        echo_json(
            {
                "catalog": cfg.masked_database_url(),
                "destroyed": forgotten is not None,
                "file_count": forgotten or 0,
                "store": {"url": cfg.store_url, "touched": False},
            }
        )
        return
    if forgotten is None:
        echo(f"no catalog at {cfg.masked_database_url()}; nothing to destroy")
        return
    echo(
        f"catalog destroyed ({forgotten} file versions forgotten); "
        f"data in {cfg.store_url} was not touched"
    )


def _show_config(app: App, as_json: bool) -> None:
    from ..config import describe_config

    entries = describe_config(app.config())
    if as_json:
        echo_json({"settings": {e.name: {"value": e.value, "origin": e.origin} for e in entries}})
        return
    rows = [(e.name, "-" if e.value is None else e.value, e.origin) for e in entries]
    echo(table(["SETTING", "VALUE", "FROM"], rows))


@click.command()
@click.option(
    "--roles",
    is_flag=True,
    help="Also create the PostgreSQL roles NAME_ro (read-only) and NAME_rw (read-write).",
)
@click.option(
    "--role-name",
    metavar="NAME",
    help="With --roles: the roles' common name (default: the database's name).",
)
@json_option()
@pass_app
def create(app: App, roles: bool, role_name: str | None, as_json: bool) -> None:
    """Create the catalog (or bring it up to date) and check the store answers.

    Safe to run again. Buckets must exist already. With --roles (PostgreSQL only, run as
    the catalog's owner with CREATEROLE), also create a read-only and a read-write group
    role and grant them their rights; docs/security.md has the matching S3 policies.

    \b
    Examples:
      repo create
      repo create --roles --role-name repo
    """
    if role_name is not None and not roles:
        raise click.UsageError("--role-name goes with --roles")
    _create(app, roles, role_name, as_json=as_json)


@click.command()
@yes_option
@terminate_option()
@json_option()
@pass_app
def destroy(app: App, yes: bool, terminate_others: bool, as_json: bool) -> None:
    """Drop the catalog. Data in the store is never deleted.

    Waits up to 30 s for other sessions holding the catalog, then names them and fails
    (or, with --terminate-others, ends them).

    \b
    Example:
      repo destroy --yes
    """
    _destroy(app, yes, terminate_others, as_json=as_json)


@click.command()
@click.option("--create", "action", flag_value="create", help="Same as `repo create`.")
@click.option("--destroy", "action", flag_value="destroy", help="Same as `repo destroy`.")
@click.option("--restore", "action", flag_value="restore", help="Restore from a backup.")
@click.option("--config", "action", flag_value="config", help="Same as `repo config --show`.")
@yes_option
@pass_app
def ctl(app: App, action: str | None, yes: bool) -> None:
    """The original spelling of the administration commands.

    \b
    Example:
      repo ctl --create
    """
    if action is None:
        raise click.UsageError("choose one of --create, --destroy, --restore, --config")
    if action == "create":
        _create(app)
    elif action == "destroy":
        _destroy(app, yes)
    elif action == "config":
        _show_config(app, as_json=False)
    else:
        from .backups import run_restore

        run_restore(app)


@click.command()
@click.option("--show", is_flag=True, help="Print the effective configuration (the default).")
@click.option("--s3cmd", is_flag=True, help="Write an s3cmd configuration for the store.")
@click.option("-o", "--output", "dest", metavar="FILE", help="With --s3cmd (default ~/.s3cfg).")
@click.option("-f", "--force", is_flag=True, help="With --s3cmd: overwrite FILE.")
@json_option()
@pass_app
def config(app: App, show: bool, s3cmd: bool, dest: str | None, force: bool, as_json: bool) -> None:
    """Show the effective configuration (secrets masked, and where each value came from),
    or write an s3cmd configuration that reaches the same store.

    \b
    Examples:
      repo config --show
      repo config --s3cmd -o ./s3cfg && s3cmd -c ./s3cfg ls
    """
    if show and s3cmd:
        raise click.UsageError("choose one of --show and --s3cmd")
    if not s3cmd and (dest or force):
        raise click.UsageError("--output and --force go with --s3cmd")
    if s3cmd:
        from ..s3cmd import write_s3cmd_config

        written = write_s3cmd_config(app.config(), dest, force=force)
        if as_json:
            echo_json({"written": str(written), "mode": "0600"})
            return
        echo(f"wrote {written} (mode 0600); try: s3cmd -c {written} ls")
        return
    _show_config(app, as_json)


@click.command()
@pass_app
def demo(app: App) -> None:
    """Add, tag, publish, find and read back a few files, printing each step.

    \b
    Example:
      repo demo
    """
    from ..demo import run_demo

    run_demo(echo, config=app.config_path)
