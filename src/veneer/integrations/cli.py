"""``veneer relay`` (drain the outbox) and ``veneer listen`` (apply trigger notifications)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.console import Console

__all__ = ["listen", "relay"]


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
@click.option("--redis", "redis_url", required=True, envvar="VENEER_REDIS", help="Redis URL.")
@click.option("--once", is_flag=True, help="Drain the outbox once and exit.")
@click.option(
    "--interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
    help="Seconds between passes.",
)  # fmt: skip
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--table", default="veneer_outbox", show_default=True, help="Outbox table.")
@click.option("--schema", default=None, help="Schema of the outbox table.")
@click.option(
    "--namespace", "namespaces", multiple=True, help="Only these namespaces (repeatable)."
)
@click.option("-v", "--verbose", is_flag=True, help="Log every pass that applied something.")
def relay(
    dsn: str,
    redis_url: str,
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
    is 1 when rows remain (Redis refused them).
    """
    from .outbox import OutboxRelay, outbox_table

    _setup_logging(verbose)
    console = Console(stderr=True)
    worker = OutboxRelay(
        dsn,
        redis_url,
        table=outbox_table(name=table, schema=schema),
        batch=batch,
        interval=interval,
        namespaces=namespaces or None,
    )
    try:
        if once:
            applied = worker.run_once()
            left = worker.backlog()
            click.echo(f"applied {applied} invalidation(s); {left} row(s) left")
            if left:
                console.print(f"[yellow]{left} row(s) not applied: is Redis reachable?[/]")
                raise SystemExit(1)
            return
        console.print(f"relay: draining {table} every {interval:g}s (Ctrl-C to stop)")
        with _stop_on_signals(worker.stop):
            worker.run_forever()
        console.print(f"relay: stopped after applying {worker.applied} row(s)")
    finally:
        worker.close()


@click.command()
@click.option("--db", "dsn", required=True, envvar="VENEER_DB", help="PostgreSQL DSN or URL.")
@click.option("--redis", "redis_url", required=True, envvar="VENEER_REDIS", help="Redis URL.")
@click.option("--channel", default="veneer_invalidate", show_default=True)
@click.option(
    "--resync", "resync", multiple=True,
    help="Invalidate this whole namespace on every (re)connect (repeatable).",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True)
def listen(dsn: str, redis_url: str, channel: str, resync: tuple[str, ...], verbose: bool) -> None:
    """Invalidate the keys that PostgreSQL triggers name (LISTEN/NOTIFY).

    Install the triggers with veneer.integrations.postgres.trigger_sql().
    Reconnects with backoff when the connection drops.
    """
    from .postgres import PgInvalidationListener

    _setup_logging(verbose)
    console = Console(stderr=True)
    worker = PgInvalidationListener(dsn, redis_url, channel=channel, resync_namespaces=resync)
    done = threading.Event()
    try:
        with _stop_on_signals(done.set):
            worker.start()
            if worker.wait_listening(timeout=30.0):
                click.echo(f"listening on channel {channel}")
            else:
                console.print("[yellow]not connected yet; retrying in the background[/]")
            while not done.wait(0.5):
                pass
    finally:
        worker.close()
        console.print(
            f"listen: stopped ({worker.received} notification(s), {worker.applied} applied, "
            f"{worker.queued} queued)"
        )
