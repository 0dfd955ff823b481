"""``veneer sessions purge`` and ``veneer sessions stats``: maintenance on the database alone."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ._tables import SessionTables

__all__ = ["sessions"]


def _open(dsn: str, table: str, schema: str | None) -> tuple[sa.Engine, SessionTables]:
    """The engine and tables, or a one-line error: 2 for a bad URL or a missing table, 3 for
    a database that does not answer (the exit codes of every ``veneer`` command)."""
    import sqlalchemy as sa

    from .._cli_support import EXIT_USAGE, CommandFailed, database_problem
    from ..integrations.outbox import sqlalchemy_url
    from ._tables import session_tables

    problem = database_problem(dsn)
    if problem is not None:
        raise CommandFailed(*problem)
    engine = sa.create_engine(sqlalchemy_url(dsn))
    try:
        with engine.connect() as conn:
            found = sa.inspect(conn).has_table(table, schema=schema)
    except BaseException:
        engine.dispose()
        raise
    if not found:
        engine.dispose()
        raise CommandFailed(
            f"no table {table!r} in this database: create it with "
            "veneer.sessions.create_tables(engine) (or tables_ddl()), or pass --table",
            EXIT_USAGE,
        )
    return engine, session_tables(name=table, schema=schema)


_db = click.option("--db", "dsn", required=True, envvar="VENEER_DB", help="Database URL.")
_table = click.option("--table", default="veneer_sessions", show_default=True)
_schema = click.option("--schema", default=None, help="Schema of the tables.")


@click.group()
def sessions() -> None:
    """Maintenance of the session tables (veneer.sessions)."""


@sessions.command()
@_db
@_table
@_schema
@click.option("--batch", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option(
    "--pause", type=click.FloatRange(min=0), default=0.0, show_default=True,
    help="Seconds to sleep between batches.",
)  # fmt: skip
def purge(dsn: str, table: str, schema: str | None, batch: int, pause: float) -> None:
    """Delete expired sessions in bounded batches (one short transaction each)."""
    from ._maintenance import purge_expired

    engine, tables = _open(dsn, table, schema)
    console = Console(stderr=True)
    try:
        with console.status("purging expired sessions...") as status:
            deleted = purge_expired(
                engine,
                tables,
                batch=batch,
                pause=pause,
                progress=lambda n: status.update(f"purging expired sessions... {n} deleted"),
            )
    finally:
        engine.dispose()
    click.echo(f"deleted {deleted} expired session(s) from {table}")


@sessions.command()
@_db
@_table
@_schema
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def stats(dsn: str, table: str, schema: str | None, fmt: str) -> None:
    """Count live, expired, anonymous and authenticated sessions."""
    from ._maintenance import session_counts

    engine, tables = _open(dsn, table, schema)
    try:
        counts = session_counts(engine, tables)
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(counts, sort_keys=True))
        return
    view = Table(title=f"sessions in {table}")
    view.add_column("what")
    view.add_column("count", justify="right")
    for key, value in counts.items():
        view.add_row(key.replace("_", " "), f"{value:,}")
    Console().print(view)
