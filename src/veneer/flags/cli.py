"""``veneer flags list | show | set | history``: the flags tables from the command line.

Reads and writes go to the database (the truth). ``set`` with ``--redis``
publishes the change after its commit, as the library does; without it, running
processes see the change at their next database check (``check_interval``).
"""

from __future__ import annotations

import getpass
import json
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ._sql import FlagChange
    from ._tables import FlagTables

__all__ = ["flags"]


def _open(dsn: str, prefix: str, schema: str | None) -> tuple[sa.Engine, FlagTables]:
    """The engine and tables, or a one-line error: 2 for a bad URL or missing tables, 3 for
    a database that does not answer (the exit codes of every ``veneer`` command)."""
    import sqlalchemy as sa

    from .._cli_support import EXIT_USAGE, CommandFailed, database_problem
    from ..integrations.outbox import sqlalchemy_url
    from ._tables import flag_tables

    problem = database_problem(dsn)
    if problem is not None:
        raise CommandFailed(*problem)
    engine = sa.create_engine(sqlalchemy_url(dsn))
    tables = flag_tables(prefix=prefix, schema=schema)
    try:
        with engine.connect() as conn:
            found = sa.inspect(conn).has_table(tables.state.name, schema=schema)
    except BaseException:
        engine.dispose()
        raise
    if not found:
        engine.dispose()
        raise CommandFailed(
            f"no table {tables.state.name!r} in this database: create the flags tables with "
            "veneer.flags.create_tables(engine) (or tables_ddl()), or pass --prefix",
            EXIT_USAGE,
        )
    return engine, tables


def _fail(exc: BaseException) -> None:
    from .._cli_support import EXIT_USAGE, CommandFailed
    from ._errors import FlagNotFound, InvalidFlag

    if isinstance(exc, (InvalidFlag, FlagNotFound)):
        raise CommandFailed(str(exc), EXIT_USAGE) from None
    raise exc


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _actor() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:
        return "veneer-cli"


_db = click.option("--db", "dsn", required=True, envvar="VENEER_DB", help="Database URL.")
_prefix = click.option(
    "--prefix", default="veneer_flag", show_default=True, help="Prefix of the flags tables."
)
_schema = click.option("--schema", default=None, help="Schema of the tables.")
_format = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")


@click.group()
def flags() -> None:
    """Feature flags in the database (veneer.flags): list, show, set, history."""


@flags.command("list")
@_db
@_prefix
@_schema
@_format
def list_flags(dsn: str, prefix: str, schema: str | None, fmt: str) -> None:
    """List every flag with its switch, variants and rules."""
    from ._sync._store import FlagStore

    engine, tables = _open(dsn, prefix, schema)
    try:
        document = FlagStore(engine, tables).document()
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps({"version": document["version"], "flags": document["flags"]}))
        return
    view = Table(title=f"flags at version {document['version']}")
    for column in ("name", "enabled", "variants", "rules", "allow", "deny", "description"):
        view.add_column(column)
    for flag in document["flags"]:
        view.add_row(
            flag["name"],
            "on" if flag["enabled"] else "off",
            ", ".join(flag["variants"]),
            str(len(flag["rules"])),
            str(len(flag["allow"])),
            str(len(flag["deny"])),
            flag["description"],
        )
    Console().print(view)


@flags.command()
@click.argument("name")
@_db
@_prefix
@_schema
@_format
def show(name: str, dsn: str, prefix: str, schema: str | None, fmt: str) -> None:
    """Show one flag's whole definition."""
    from ._sync._store import FlagStore

    engine, tables = _open(dsn, prefix, schema)
    try:
        definition = FlagStore(engine, tables).definition(name)
    except Exception as exc:
        _fail(exc)
        raise
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(definition))
        return
    click.echo(json.dumps(definition, indent=2))


@flags.command("set")
@click.argument("name")
@_db
@_prefix
@_schema
@click.option("--enable/--disable", "enabled", default=None, help="Switch the flag on or off.")
@click.option(
    "--percentage", type=float, default=None,
    help="Replace the rules with one rollout: this share of subjects gets on_variant.",
)  # fmt: skip
@click.option("--allow", multiple=True, help="Subject always served on_variant (repeatable).")
@click.option("--deny", multiple=True, help="Subject always served off_variant (repeatable).")
@click.option("--description", default=None)
@click.option(
    "--definition", "definition_file", type=click.File("r"), default=None,
    help="A whole definition as JSON (a file, or - for stdin); replaces the flag.",
)  # fmt: skip
@click.option("--actor", default=None, help="Who, for the audit trail (default user@host).")
@click.option("--redis", "redis", default=None, envvar="VENEER_REDIS", help="Redis URL: publish.")
@click.option("--namespace", default=None, help="The cache namespace the applications use.")
@_format
def set_flag(
    name: str,
    dsn: str,
    prefix: str,
    schema: str | None,
    enabled: bool | None,
    percentage: float | None,
    allow: tuple[str, ...],
    deny: tuple[str, ...],
    description: str | None,
    definition_file: Any,
    actor: str | None,
    redis: str | None,
    namespace: str | None,
    fmt: str,
) -> None:
    """Create or change a flag (one transaction; the change is audited)."""
    from .._cli_support import EXIT_USAGE, CommandFailed, redis_problem, redis_url
    from ._model import Rule, flag_from_document

    fields: dict[str, Any] = {}
    if enabled is not None:
        fields["enabled"] = enabled
    if percentage is not None:
        fields["rules"] = [Rule(percentage=percentage)]
    if allow:
        fields["allow"] = list(allow)
    if deny:
        fields["deny"] = list(deny)
    if description is not None:
        fields["description"] = description
    whole: Any = None
    if definition_file is not None:
        if fields:
            raise click.UsageError("--definition replaces the whole flag: give no other field")
        try:
            document = json.load(definition_file)
        except ValueError as exc:
            raise CommandFailed(f"--definition is not JSON: {exc}", EXIT_USAGE) from None
        if isinstance(document, dict):
            document.setdefault("name", name)
            if document["name"] != name:
                raise CommandFailed(
                    f"--definition names flag {document['name']!r}, not {name!r}", EXIT_USAGE
                )
        try:
            whole = flag_from_document(document)
        except Exception as exc:
            _fail(exc)
    elif not fields:
        raise click.UsageError(
            "nothing to set: give --enable/--disable, --percentage, --allow, --deny, "
            "--description or --definition"
        )
    if (redis is None) != (namespace is None):
        raise click.UsageError("--redis and --namespace go together (the applications' cache)")
    if redis is not None:
        problem = redis_problem(redis_url(redis))
        if problem is not None:
            raise CommandFailed(*problem)
    engine, tables = _open(dsn, prefix, schema)
    cache: Any = None
    try:
        from ._sync._client import Flags

        if redis is not None:
            from .._sync._cache import Cache

            cache = Cache.from_url(redis, namespace=str(namespace), ttl=60)
        client = Flags(engine, cache, tables=tables)
        who = actor or _actor()
        try:
            change = client.set_flag(whole, actor=who) if whole else client.set_flag(
                name, actor=who, **fields
            )  # fmt: skip
        except Exception as exc:
            _fail(exc)
            raise
        published = client.status().publish_failures == 0 and cache is not None
    finally:
        if cache is not None:
            cache.close()
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(_change_json(change) | {"published": published}))
        return
    click.echo(f"{change.action}d flag {name!r}: version {change.version}")
    if not published:
        click.echo(
            "not published (no --redis, or Redis refused it): running processes see it at "
            "their next database check (check_interval)",
            err=True,
        )


@flags.command()
@click.argument("name", required=False)
@_db
@_prefix
@_schema
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@_format
def history(
    name: str | None, dsn: str, prefix: str, schema: str | None, limit: int, fmt: str
) -> None:
    """Show the audit trail (one flag's, or all), newest first."""
    from ._sync._store import FlagStore

    engine, tables = _open(dsn, prefix, schema)
    try:
        changes = FlagStore(engine, tables).history(name, limit)
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps([_change_json(c) for c in changes]))
        return
    view = Table(title=f"changes of {name!r}" if name else "flag changes")
    for column in ("version", "when", "flag", "action", "who", "what changed"):
        view.add_column(column)
    for change in changes:
        view.add_row(
            str(change.version),
            _when(change.changed_at),
            change.flag,
            change.action,
            change.actor or "-",
            _difference(change.old, change.new),
        )
    Console().print(view)
    if not changes:
        click.echo("no change recorded", err=True)


def _change_json(change: FlagChange) -> dict[str, Any]:
    return {
        "flag": change.flag,
        "version": change.version,
        "action": change.action,
        "changed_at": change.changed_at,
        "actor": change.actor,
        "old": change.old,
        "new": change.new,
    }


def _difference(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    if old is None or new is None:
        return "created" if old is None else "deleted"
    changed = [key for key in new if old.get(key) != new.get(key)]
    return ", ".join(changed) or "nothing"
