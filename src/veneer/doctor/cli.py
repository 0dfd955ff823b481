"""``veneer doctor URL``: the command-line face of the doctor.

Exit codes: 0 done, 1 a recommendation at or above ``--fail-on``, 2 bad usage or
URL (or a refused login), 3 nothing answered, 130 interrupted (the partial report
is still printed).
"""

from __future__ import annotations

import sys

import click
from rich.console import Console

from .._cli_support import EXIT_FAILED, EXIT_UNREACHABLE
from .._errors import ConfigurationError
from .._url import parse_target
from ..audit import Severity
from ._render_text import render_text
from ._runner import DoctorError, DoctorOptions, run_doctor

__all__ = ["doctor"]

EXIT_INTERRUPTED = 130


def _sizes(text: str) -> tuple[int, ...]:
    units = {"k": 1000, "m": 1_000_000, "ki": 1024, "mi": 1 << 20}
    out = []
    for raw in text.split(","):
        item = raw.strip().lower().removesuffix("b")
        number = item.rstrip("kmi")
        unit = item[len(number) :]
        if not number.isdigit() or (unit and unit not in units):
            raise click.BadParameter(
                f"{raw.strip()!r} is not a size; use bytes or k, m, ki, mi (e.g. 100,10k,1mi)",
                param_hint="--sizes",
            )
        out.append(int(number) * units.get(unit, 1))
    return tuple(out)


@click.command("doctor")
@click.argument("url", envvar="VENEER_DOCTOR_URL")
@click.option(
    "--budget",
    type=click.FloatRange(min=1),
    default=1_000.0,
    show_default=True,
    help="Commands per second the doctor may send, every command counted.",
)
@click.option(
    "--bandwidth",
    "bandwidth_mb_s",
    type=click.FloatRange(min=0.1),
    default=25.0,
    show_default=True,
    help="Payload MB per second the throughput ladder may move (both directions).",
)
@click.option(
    "--window",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds over which RTT, CPU and ops/s are measured.",
)
@click.option("--pings", type=click.IntRange(min=2), default=200, show_default=True)
@click.option(
    "--sizes",
    default="100,1k,10k,100k,1mi",
    show_default=True,
    help="Payload sizes of the throughput ladder.",
)
@click.option(
    "--no-loopback", is_flag=True, help="Do not start a private redis-server as the reference."
)
@click.option("--loopback-url", help="Use this local server as the loopback reference.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--fail-on",
    type=click.Choice([s.value for s in Severity if s is not Severity.INFO]),
    help="Exit with status 1 when a recommendation at or above this severity exists.",
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
def doctor(
    url: str,
    budget: float,
    bandwidth_mb_s: float,
    window: float,
    pings: int,
    sizes: str,
    no_loopback: bool,
    loopback_url: str | None,
    fmt: str,
    fail_on: str | None,
    timeout: float,
) -> None:
    """Measure placement and throughput from this host, with plain recommendations.

    URL is redis://, rediss://, unix://, redis+sentinel://... (a cluster URL probes
    one node), or the VENEER_DOCTOR_URL environment variable. Read-only and paced:
    PING, ECHO and INFO only, at most --budget commands and --bandwidth MB per second,
    slower when Redis slows down.
    """
    try:
        parse_target(url)
        if loopback_url is not None:
            parse_target(loopback_url)
        options = DoctorOptions(
            budget=budget,
            bandwidth_mb_s=bandwidth_mb_s,
            window=window,
            pings=pings,
            sizes=_sizes(sizes),
            loopback=not no_loopback,
            loopback_url=loopback_url,
            timeout=timeout,
        )
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    click.echo(
        f"veneer doctor: measuring for about {window:g} s, then the payload ladder", err=True
    )
    try:
        report = run_doctor(url, options)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    except DoctorError as exc:
        click.echo(f"veneer doctor: {exc}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    if fmt == "json":
        click.echo(report.to_json().decode())
    else:
        out = Console()
        if not out.is_terminal:
            out = Console(width=140)
        render_text(report, out)
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if fail_on is not None and any(
        r.severity.rank >= Severity.parse(fail_on).rank for r in report.recommendations
    ):
        sys.exit(EXIT_FAILED)
