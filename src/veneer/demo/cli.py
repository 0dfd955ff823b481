"""``veneer demo``: the incidents of Redis-for-everything, replayed on a naive stack and on
veneer side by side, with what each one cost measured."""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from contextlib import ExitStack
from typing import Any

import click
from rich.console import Console

from .._cli_support import CommandFailed, database_problem, redis_problem
from .._cli_support import redis_url as valid_redis_url
from .._errors import ConfigurationError
from .._url import mask_url


def _require(problem: tuple[str, int] | None) -> None:
    if problem is not None:
        raise CommandFailed(f"{problem[0]}; nothing was changed", problem[1])


def _start_server(stack: ExitStack, console: Console, label: str) -> Any:
    from ._embedded import EmbeddedRedis

    try:
        server = stack.enter_context(EmbeddedRedis())
    except (ConfigurationError, RuntimeError, OSError) as exc:
        raise CommandFailed(f"cannot start a private redis-server: {exc}", 3) from None
    console.print(
        f"[dim]started a private redis-server for the {label} stack ({server.binary}, "
        f"pid {server.pid}) on {server.url}",
        soft_wrap=True,
    )
    return server


def _remove_namespace_keys(url: str, namespace: str) -> int:
    """The demo's keys on a Redis it was given, found by SCAN (incremental, never KEYS)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    removed = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"*{namespace}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += int(client.unlink(*batch))
                batch = []
        if batch:
            removed += int(client.unlink(*batch))
    finally:
        client.close()
    return removed


@click.command()
@click.option(
    "--duration", type=click.FloatRange(min=5), default=60.0, show_default=True,
    help="About how long the run takes (phases scale with it; each gets at least 2 s).",
)  # fmt: skip
@click.option(
    "--redis",
    "redis_url",
    help="Run the veneer stack on this Redis (faults it cannot inject are skipped).",
)
@click.option(
    "--db",
    "dsn",
    help="SQLAlchemy URL of the veneer stack's database (default: a temporary SQLite).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="json: the report on stdout, the rest on stderr.")  # fmt: skip
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write a self-contained HTML report to this file.")  # fmt: skip
@click.option(
    "--keep-tables", is_flag=True, help="Leave the demo's tables in --db (to inspect them)."
)
def demo(
    duration: float,
    redis_url: str | None,
    dsn: str | None,
    fmt: str,
    html_file: str | None,
    keep_tables: bool,
) -> None:
    """Replay the incidents of Redis-for-everything on a naive stack and on veneer.

    A small web shop (product pages, sessions, view counters, a rate limit, a
    feature flag, price changes) runs against two stacks at once, each with its
    own private redis-server and database: "naive" keeps sessions, counters and
    the flag only in Redis and caches with cache-aside; "veneer" keeps them in
    the database and uses Redis as a layer. Phases: steady, a blocking client
    (KEYS *, LRANGE), Redis hung (SIGSTOP), killed and restarted empty, an
    eviction storm, writes racing reads, a large payload. Every figure is
    measured (docs/demo.md says how). Everything the demo starts is stopped at
    the end, also after Ctrl-C.
    """
    console = Console(stderr=fmt == "json")
    render_html: Any = None
    if html_file is not None:
        # Loaded by name: the renderer is its own module (and may be missing from a build).
        try:
            render_html = importlib.import_module("veneer.demo._html").render_html
        except ImportError:
            raise CommandFailed("--html is not available yet in this version", 2) from None
        folder = os.path.dirname(os.path.abspath(html_file))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            # Said before a minute of running, not after.
            raise CommandFailed(f"--html: cannot write to {folder}; nothing was started", 2)
    if redis_url is not None:
        _require(redis_problem(valid_redis_url(redis_url)))
    if dsn is not None:
        _require(database_problem(dsn))
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        raise CommandFailed(
            "veneer demo needs SQLAlchemy: pip install 'veneer[sqlalchemy]'", 2
        ) from None

    from ._engine import DemoConfig, phase_plan, run_demo
    from ._faults import Target
    from ._live import LiveView
    from ._report import build_report, render_table

    cfg = DemoConfig(duration=duration, drop_veneer_tables=not keep_tables)
    live: LiveView | None = None
    try:
        with ExitStack() as stack:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="veneer-demo-"))
            naive_server = _start_server(stack, console, "naive")
            targets: dict[str, Target] = {"naive": Target(naive_server.url, naive_server)}
            stack.callback(targets["naive"].close)
            if redis_url is None:
                veneer_server = _start_server(stack, console, "veneer")
                targets["veneer"] = Target(veneer_server.url, veneer_server)
            else:
                targets["veneer"] = Target(redis_url, None)
                stack.callback(_remove_namespace_keys, redis_url, cfg.namespace)
            stack.callback(targets["veneer"].close)
            cfg.naive_url = targets["naive"].url
            cfg.veneer_url = targets["veneer"].url
            cfg.naive_dsn = f"sqlite:///{os.path.join(folder, 'naive.db')}"
            cfg.veneer_dsn = dsn or f"sqlite:///{os.path.join(folder, 'veneer.db')}"
            plan = phase_plan(duration)
            console.print(
                f"[dim]each stack: {cfg.products:,} products, {cfg.users:,} users logged in, "
                f"{cfg.rate:.0f} requests/s; phases: "
                + ", ".join(f"{p.name} {s:.1f} s" for p, s in plan),
                soft_wrap=True,
            )
            if fmt == "text" and console.is_terminal:
                live = LiveView(console, plan)
                stack.enter_context(live)
            run = run_demo(
                cfg,
                targets,
                on_tick=None if live is None else live.update,
                register=stack.callback,
                say=lambda text: console.print(f"[dim]{text}", soft_wrap=True),
            )
            run["interval_s"] = cfg.interval
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: every process and server the demo started is stopped")
        sys.exit(130)
    setup = {
        "redis": "two private redis-server (embedded)"
        if redis_url is None
        else f"naive: a private redis-server; veneer: {mask_url(redis_url)}",
        "db": "temporary SQLite"
        if dsn is None
        else f"naive: temporary SQLite; veneer: {mask_url(dsn)}",
    }
    report = build_report(run, duration=duration, setup=setup, stacks=("naive", "veneer"))
    if html_file is not None:
        with open(html_file, "w", encoding="utf-8") as out:
            out.write(render_html(report))
        console.print(f"[dim]wrote the HTML report to {html_file}")
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
    else:
        render_table(report, console)
