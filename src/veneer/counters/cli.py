"""``veneer counters``: ``flush`` (the worker), ``verify`` (Redis vs the database) and
``create-tables``."""

from __future__ import annotations

import json
import logging

import click
from rich.console import Console
from rich.table import Table

from ..integrations.cli import _setup_logging, _stop_on_signals

__all__ = ["counters"]

log = logging.getLogger("veneer")

_db = click.option("--db", "dsn", required=True, envvar="VENEER_DB", help="Database URL or DSN.")
_redis = click.option("--redis", "redis_url", required=True, envvar="VENEER_REDIS",
                      help="Redis URL.")  # fmt: skip
_namespace = click.option("--namespace", required=True, help="The cache namespace of the app.")
_prefix = click.option("--table-prefix", "prefix", default="veneer_counter", show_default=True)
_schema = click.option("--schema", default=None, help="Schema of the counter tables.")


@click.group()
def counters() -> None:
    """Counters kept in the database, buffered in Redis (docs/counters.md)."""


@counters.command()
@_db
@_redis
@_namespace
@click.option("--counter", "names", multiple=True, help="Only these counters (repeatable).")
@click.option("--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              help="Seconds between passes.")  # fmt: skip
@click.option("--lease-ttl", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="A shard's lease: how long a dead flusher blocks its shards.")  # fmt: skip
@click.option("--once", is_flag=True, help="One pass, then exit (status 1 if it had errors).")
@_prefix
@_schema
@click.option("-v", "--verbose", is_flag=True)
def flush(
    dsn: str, redis_url: str, namespace: str, names: tuple[str, ...], interval: float,
    lease_ttl: float, once: bool, prefix: str, schema: str | None, verbose: bool,
) -> None:  # fmt: skip
    """Move buffered counters from Redis to the database, exactly once.

    Several workers may run: a lease per shard keeps two off one buffer. SIGTERM or
    Ctrl-C stops the worker after the pass in progress.
    """
    from .._sync._cache import Cache
    from ._sync._flusher import CounterFlusher
    from ._tables import counter_tables

    _setup_logging(verbose)
    console = Console(stderr=True)
    with Cache.from_url(redis_url, namespace=namespace, ttl=60) as cache:
        worker = CounterFlusher(
            cache, dsn, counters=names or None, tables=counter_tables(prefix=prefix, schema=schema),
            interval=interval, lease_ttl=lease_ttl,
        )  # fmt: skip
        try:
            if once:
                report = worker.run_once()
                click.echo(
                    f"flushed {report.applied} buffer(s), {report.increments} increment(s); "
                    f"{report.replays} replay(s), {report.compacted} journal row(s) compacted"
                )
                for error in report.errors:
                    console.print(f"[yellow]{error}[/]")
                if report.errors:
                    raise SystemExit(1)
                return
            console.print(f"counters flush: every {interval:g}s (SIGTERM or Ctrl-C to stop)")
            with _stop_on_signals(worker.request_stop):
                worker.run_forever()
            t = worker.totals
            console.print(
                f"counters flush: stopped after {worker.passes} pass(es): {t.applied} flush(es), "
                f"{t.increments} increment(s), {t.replays} replay(s)"
            )
        finally:
            worker.close()


@counters.command()
@_db
@_redis
@_namespace
@_prefix
@_schema
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("--max-at-risk", type=int, default=None,
              help="Exit with status 1 if more increments than this are not durable.")  # fmt: skip
def verify(
    dsn: str, redis_url: str, namespace: str, prefix: str, schema: str | None, fmt: str,
    max_at_risk: int | None,
) -> None:  # fmt: skip
    """Compare the totals Redis serves with the database's, and print the increments at risk
    now (acknowledged, not yet durable). Exit status 1 if cached totals diverge."""
    from .._sync._cache import Cache
    from ._tables import Engines, counter_tables
    from .verify import verify_counters

    engine, _ = Engines.build(dsn)
    try:
        with Cache.from_url(redis_url, namespace=namespace, ttl=60) as cache:
            report = verify_counters(cache, engine, counter_tables(prefix=prefix, schema=schema))
    finally:
        engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        table = Table(title=f"counters in namespace {namespace!r}")
        for column in ("counter", "mode", "at risk", "buffered", "claimed, not committed",
                       "claimed, committed", "keys", "cache checked", "diverged"):  # fmt: skip
            table.add_column(column, justify="left" if column in ("counter", "mode") else "right")
        for c in report.counters:
            table.add_row(
                c.name, c.mode, str(c.at_risk), str(c.buffered), str(c.claimed_uncommitted),
                str(c.claimed_committed), str(c.buffered_keys), str(c.cached_checked),
                str(c.cached_diverged),
            )  # fmt: skip
        console = Console()
        console.print(table)
        console.print(f"increments at risk now: {report.at_risk}")
        for warning in report.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
    if report.diverged or (max_at_risk is not None and report.at_risk > max_at_risk):
        raise SystemExit(1)


@counters.command("create-tables")
@click.option("--db", "dsn", default=None, envvar="VENEER_DB", help="Database URL or DSN.")
@_prefix
@_schema
@click.option("--ddl", "dialect", default=None, help="Print the DDL for this dialect instead.")
def create_tables(dsn: str | None, prefix: str, schema: str | None, dialect: str | None) -> None:
    """Create the counter tables (or print their DDL for your migrations)."""
    from ._tables import Engines, counter_tables, counters_ddl, create_counter_tables

    tables = counter_tables(prefix=prefix, schema=schema)
    if dialect is not None:
        click.echo(counters_ddl(tables, dialect))
        return
    if dsn is None:
        raise click.UsageError("--db is required to create the tables (or pass --ddl DIALECT)")
    engine, _ = Engines.build(dsn)
    try:
        create_counter_tables(engine, tables)
    finally:
        engine.dispose()
    click.echo(f"counter tables ready: {', '.join(t.name for t in tables.all)}")
