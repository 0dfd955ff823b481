"""``veneer demo``: the same skewed read load through no cache, naive cache-aside and veneer."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import ExitStack
from dataclasses import asdict

import click
from rich.console import Console
from rich.table import Table

from .._cli_support import CommandFailed, database_problem, redis_problem
from .._cli_support import redis_url as valid_redis_url
from .._errors import ConfigurationError
from .._url import mask_url
from ._embedded import EmbeddedRedis
from ._scenario import ScenarioResult, run_all


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _require(problem: tuple[str, int] | None) -> None:
    if problem is not None:
        raise CommandFailed(f"{problem[0]}; nothing was changed", problem[1])


def render(results: list[ScenarioResult], console: Console) -> None:
    table = Table(title="veneer demo: one skewed read load, three ways", title_justify="left")
    for column in ("strategy", "source queries", "L1 hit", "Redis hit", "p50", "p99"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for r in results:
        table.add_row(
            r.name,
            f"{r.source_queries:,}",
            _pct(r.l1_hit_ratio),
            _pct(r.l2_hit_ratio),
            f"{r.p50_us:,.0f} us",
            f"{r.p99_us:,.0f} us",
        )
    console.print(table)


@click.command()
@click.option("--redis", "redis_url", help="Use this Redis instead of a private redis-server.")
@click.option("--db", "dsn", help="SQLAlchemy URL of the source (default: a temporary SQLite).")
@click.option(
    "--products", type=click.IntRange(min=1), default=2_000, show_default=True,
    help="Rows in the source.",
)  # fmt: skip
@click.option(
    "--reads", type=click.IntRange(min=1), default=20_000, show_default=True,
    help="Reads per strategy.",
)  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def demo(redis_url: str | None, dsn: str | None, products: int, reads: int, fmt: str) -> None:
    """Run a skewed read workload through no cache, naive cache-aside and veneer.

    With no options it starts a private redis-server on a free loopback port and
    seeds a temporary SQLite database, and stops and removes both at the end. A
    Redis given with --redis gets the demo's keys removed at the end; a database
    given with --db gets its two demo tables dropped.
    """
    console = Console(stderr=fmt == "json")
    given_redis = redis_url is not None
    # Everything the demo needs is checked before anything is seeded or started.
    if redis_url is not None:
        _require(redis_problem(valid_redis_url(redis_url)))
    if dsn is not None:
        _require(database_problem(dsn))
    with ExitStack() as stack:
        if redis_url is None:
            try:
                server = stack.enter_context(EmbeddedRedis())
            except (ConfigurationError, RuntimeError, OSError) as exc:
                raise CommandFailed(f"cannot start a private redis-server: {exc}", 3) from None
            redis_url = server.url
            console.print(f"[dim]started a private redis-server ({server.binary}) on {redis_url}")
        if dsn is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="veneer-demo-"))
            dsn = f"sqlite:///{os.path.join(folder, 'source.db')}"
        console.print(
            f"[dim]source {mask_url(dsn)}: {products:,} products, {reads:,} Zipf reads per strategy"
        )
        results, removed = run_all(dsn, redis_url, products=products, reads=reads)
    if given_redis:
        console.print(f"[dim]removed the demo's {removed:,} keys from {mask_url(redis_url)}")
    if fmt == "json":
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        render(results, console)
        console.print(
            "[dim]veneer serves hot keys in process (no round trip) and loads each key once; "
            "naive cache-aside pays a Redis round trip on every read."
        )
