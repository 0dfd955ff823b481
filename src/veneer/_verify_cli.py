"""``veneer verify``: sample cached entries, reload them from the source, report divergence."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ._cli_support import (
    EXIT_FAILED,
    EXIT_NOTHING_MEASURED,
    EXIT_UNREACHABLE,
    CommandFailed,
    redis_problem,
    redis_url,
)
from ._keys import validate_namespace


def _load_function(spec: str) -> Callable[[str], Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter("use module.path:function", param_hint="--reload")
    # As `python -m` and pytest do: the app's own modules import from where it runs.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(
            f"cannot import {spec}: {exc} (the current directory is on the import path; "
            "set PYTHONPATH for modules elsewhere)",
            param_hint="--reload",
        ) from None
    if not callable(function):
        raise click.BadParameter(f"{spec} is not callable", param_hint="--reload")
    return function  # type: ignore[no-any-return]


def _namespace(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return validate_namespace(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--redis", "redis_address", required=True, help="Redis URL of the cache.")
@click.option("--namespace", required=True, callback=_namespace, help="Cache namespace to check.")
@click.option(
    "--reload",
    "reload_spec",
    required=True,
    help="module:function that returns the source value for a key (imported from the "
    "current directory or PYTHONPATH).",
)
@click.option(
    "--sample",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="Keys to check (1 to 1000).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--max-divergence",
    type=click.FloatRange(0, 1),
    default=None,
    help="Exit 1 when the diverging share is above this (e.g. 0.001), for CI. Entries "
    "whose reload raised count as diverging.",
)
def verify_command(
    redis_address: str,
    namespace: str,
    reload_spec: str,
    sample: int,
    fmt: str,
    max_divergence: float | None,
) -> None:
    """Reload a sample of recently cached keys from the source and report divergence.

    Exit codes: 0 within --max-divergence, 1 above it, 2 bad usage, 3 Redis
    unreachable, 4 nothing checked (no recent fills in the namespace): a gate
    never passes on a check that measured nothing.
    """
    redis_url(redis_address)
    reload = _load_function(reload_spec)
    problem = redis_problem(redis_address)
    if problem is not None:
        raise CommandFailed(f"{problem[0]}; nothing was checked", problem[1])
    from ._sync._cache import Cache
    from .verify import verify

    with Cache.from_url(redis_address, namespace=namespace, l1_size=0, broadcast=False) as cache:
        report = verify(cache, reload, sample=sample)
    if fmt == "json":
        data = asdict(report) | {
            "divergence": report.divergence,
            "measured_nothing": report.measured_nothing,
        }
        click.echo(json.dumps(data, default=repr, indent=2))
    else:
        console = Console()
        console.print(
            f"namespace [bold]{report.namespace}[/]: {report.checked} entries checked "
            f"({report.sampled} sampled of {report.registry_size} recent fills), "
            f"{report.diverged} diverge ({report.divergence:.2%})"
        )
        if report.examples:
            table = Table("key", "cached", "source", title="examples")
            for d in report.examples:
                table.add_row(d.key, repr(d.cached)[:80], repr(d.source)[:80])
            console.print(table)
    if report.reload_errors:
        click.echo(
            f"veneer verify: {report.reload_errors} reload(s) raised, counted as diverging; "
            f"first: {report.first_error}",
            err=True,
        )
    if report.redis_errors:
        raise CommandFailed(
            f"{report.redis_errors} Redis call(s) failed during the run: the result is incomplete",
            EXIT_UNREACHABLE,
        )
    if report.measured_nothing:
        raise CommandFailed(
            f"nothing checked: namespace {namespace!r} has {report.registry_size} recent "
            "fill(s) and none of the sampled ones is still cached (is the namespace right, "
            "does the app fill it, is registry_every on?)",
            EXIT_NOTHING_MEASURED,
        )
    if max_divergence is not None and report.divergence > max_divergence:
        raise SystemExit(EXIT_FAILED)
