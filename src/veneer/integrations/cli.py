"""``veneer relay`` (drain the outbox) and ``veneer listen`` (apply trigger notifications)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console

from .._cli_support import (
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    CommandFailed,
    database_problem,
    postgres_problem,
    redis_problem,
    redis_url,
)
from .._keys import validate_namespace

__all__ = ["listen", "relay"]


def _namespaces(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    try:
        return tuple(validate_namespace(name) for name in value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT stop the worker gracefully (the batch in progress finishes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: object) -> None:
        stop()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@click.command()
@click.option("--db", "dsn", required=True, envvar="VENEER_DB", help="Database URL or DSN.")
@click.option("--redis", "redis_address", required=True, envvar="VENEER_REDIS", help="Redis URL.")
@click.option("--once", is_flag=True, help="Drain the outbox once and exit.")
@click.option(
    "--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
    help="Seconds between passes.",
)  # fmt: skip
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--table", default="veneer_outbox", show_default=True, help="Outbox table.")
@click.option("--schema", default=None, help="Schema of the outbox table.")
@click.option(
    "--namespace", "namespaces", multiple=True, callback=_namespaces,
    help="Only these namespaces (repeatable).",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="Log every pass that applied something.")
def relay(
    dsn: str,
    redis_address: str,
    once: bool,
    interval: float,
    batch: int,
    table: str,
    schema: str | None,
    namespaces: tuple[str, ...],
    verbose: bool,
) -> None:
    """Apply the invalidations left in the outbox table, at least once.

    Rows are deleted only after Redis applied them. With --once the exit status
    is 1 when rows remain (Redis refused them), 2 for bad usage (a bad URL, a
    missing outbox table) and 3 when Redis or the database cannot be reached.
    Without --once an unreachable Redis or database is reported and retried.
    """
    redis_url(redis_address)
    _setup_logging(verbose)
    console = Console(stderr=True)
    problems = [p for p in (database_problem(dsn), redis_problem(redis_address)) if p]
    if problems and (once or any(code != EXIT_UNREACHABLE for _, code in problems)):
        raise CommandFailed("; ".join(m for m, _ in problems), max(c for _, c in problems))
    # Signals are handled from here on: a SIGTERM while connecting stops at once too.
    stopping = threading.Event()
    workers: list[Any] = []

    def stop() -> None:
        stopping.set()
        for running in workers:
            running.stop()

    with _stop_on_signals(stop):
        for message, _ in problems:
            click.echo(f"veneer relay: {message}; retrying", err=True)

        from .outbox import OutboxRelay, outbox_table

        worker = OutboxRelay(
            dsn,
            redis_address,
            table=outbox_table(name=table, schema=schema),
            batch=batch,
            interval=interval,
            namespaces=namespaces or None,
        )
        workers.append(worker)
        if stopping.is_set():
            worker.stop()
        try:
            missing = None if problems else worker.missing_table()
            if missing:
                raise CommandFailed(missing, 2)
            if once:
                applied = worker.run_once()
                left = worker.backlog()
                click.echo(f"applied {applied} invalidation(s); {left} row(s) left")
                if left:
                    console.print(f"[yellow]{left} row(s) not applied: is Redis reachable?[/]")
                    raise SystemExit(EXIT_FAILED)
                return
            console.print(f"relay: draining {table} every {interval:g}s (Ctrl-C to stop)")
            worker.run_forever()
            console.print(f"relay: stopped after applying {worker.applied} row(s)")
        finally:
            worker.close()


@click.command()
@click.option("--db", "dsn", required=True, envvar="VENEER_DB", help="PostgreSQL DSN or URL.")
@click.option("--redis", "redis_address", required=True, envvar="VENEER_REDIS", help="Redis URL.")
@click.option("--channel", default="veneer_invalidate", show_default=True)
@click.option(
    "--resync", "resync", multiple=True, callback=_namespaces,
    help="Invalidate this whole namespace on every (re)connect (repeatable).",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True)
def listen(
    dsn: str, redis_address: str, channel: str, resync: tuple[str, ...], verbose: bool
) -> None:
    """Invalidate the keys that PostgreSQL triggers name (LISTEN/NOTIFY).

    Install the triggers with veneer.integrations.postgres.trigger_sql().
    A bad URL or DSN, a wrong password or a missing database exit 2 at once;
    a database or Redis that is down is reported and retried (invalidations are
    queued until Redis takes them). SIGTERM and Ctrl-C stop it at once.
    """
    redis_url(redis_address)
    _setup_logging(verbose)
    console = Console(stderr=True)
    problems = [p for p in (postgres_problem(dsn), redis_problem(redis_address)) if p]
    if any(code != EXIT_UNREACHABLE for _, code in problems):
        raise CommandFailed("; ".join(m for m, _ in problems), max(c for _, c in problems))
    done = threading.Event()
    with _stop_on_signals(done.set):
        for message, _ in problems:
            click.echo(f"veneer listen: {message}; retrying", err=True)

        from .postgres import PgInvalidationListener

        worker = PgInvalidationListener(
            dsn, redis_address, channel=channel, resync_namespaces=resync
        )
        try:
            if not done.is_set():
                worker.start()
            announced = False
            while not done.wait(0.1):
                if not announced and worker.listening:
                    click.echo(f"listening on channel {channel}")
                    announced = True
        finally:
            worker.close(timeout=1.0)
            console.print(
                f"listen: stopped ({worker.received} notification(s), {worker.applied} "
                f"applied, {worker.queued} queued)"
            )
