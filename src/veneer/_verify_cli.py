"""``veneer verify``: sample cached entries, reload them from the source, report divergence."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ._sync._cache import Cache
from .verify import verify


def _load_function(spec: str) -> Callable[[str], Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter("use module.path:function", param_hint="--reload")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot import {spec}: {exc}", param_hint="--reload") from None
    if not callable(function):
        raise click.BadParameter(f"{spec} is not callable", param_hint="--reload")
    return function  # type: ignore[no-any-return]


@click.command()
@click.option("--redis", "redis_url", required=True, help="Redis URL of the cache.")
@click.option("--namespace", required=True, help="Cache namespace to check.")
@click.option(
    "--reload",
    "reload_spec",
    required=True,
    help="module:function that returns the source value for a key.",
)
@click.option("--sample", default=100, show_default=True, help="Keys to check (at most 1000).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--max-divergence",
    type=float,
    default=None,
    help="Exit non-zero when the diverging share is above this (e.g. 0.001), for CI.",
)
def verify_command(
    redis_url: str,
    namespace: str,
    reload_spec: str,
    sample: int,
    fmt: str,
    max_divergence: float | None,
) -> None:
    """Reload a sample of recently cached keys from the source and report divergence."""
    reload = _load_function(reload_spec)
    with Cache.from_url(redis_url, namespace=namespace, l1_size=0, broadcast=False) as cache:
        report = verify(cache, reload, sample=sample)
    if fmt == "json":
        data = asdict(report) | {"divergence": report.divergence}
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
    if max_divergence is not None and report.divergence > max_divergence:
        raise SystemExit(1)
