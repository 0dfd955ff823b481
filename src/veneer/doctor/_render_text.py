"""The terminal report: the recommendations first, then the numbers behind them."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from ..audit import Severity
from ._advice import size_label
from ._model import DoctorReport

__all__ = ["render_text"]

STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_text(report: DoctorReport, console: Console) -> None:
    """Print ``report`` as tables on ``console``."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    s, t = report.server, report.traffic
    grid.add_row("target", f"{report.target} ({report.node}, Redis {s.version})")
    grid.add_row("loopback", report.loopback)
    grid.add_row(
        "traffic",
        f"{t.commands_sent:,} commands in {t.duration_s:.1f} s ({t.ops_per_s:,.0f}/s, busiest "
        f"second {t.busiest_second:,}; budget {t.budget_ops_per_s:,.0f}/s), "
        f"{t.payload_bytes / 1e6:.1f} MB of payload, {t.backoffs} back-offs"
        + (", ladder cut short (busy server)" if t.gentle else ""),
    )
    if report.interrupted:
        grid.add_row("interrupted", "Ctrl-C: partial figures")
    console.print(grid)

    recs = Table(title="Recommendations", box=box.SIMPLE_HEAD, expand=True)
    recs.add_column("severity", no_wrap=True)
    recs.add_column("id", no_wrap=True)
    recs.add_column("finding and advice")
    for r in report.recommendations:
        recs.add_row(
            f"[{STYLE[r.severity]}]{r.severity.value}[/]", r.id, f"{r.summary}\n[dim]{r.advice}[/]"
        )
    console.print(recs)

    rtt = Table(title="Round trips (PING, ms)", box=box.SIMPLE_HEAD)
    for col in ("", "samples", "p50", "p99", "min", "max", "spread"):
        rtt.add_column(col, justify="right")
    for name, p in (("target", report.rtt), ("loopback", report.loopback_rtt)):
        if p is not None:
            rtt.add_row(
                name, str(p.samples), _ms(p.p50_ms), _ms(p.p99_ms), _ms(p.min_ms),
                _ms(p.max_ms), _ms(p.spread_ms),
            )  # fmt: skip
    console.print(rtt)

    tp = Table(title="Throughput on one connection (median round trip)", box=box.SIMPLE_HEAD)
    for col in ("value", "GET ms", "GET/s", "MB/s", "loopback ms", "MGET", "MGET ms",
                "values/s", "MB/s ", "loopback ms "):  # fmt: skip
        tp.add_column(col, justify="right")
    for x in report.throughput:
        tp.add_row(
            size_label(x.size_bytes), _ms(x.get_ms), f"{x.get_ops_per_s:,.0f}",
            f"{x.get_mb_s:,.1f}", _ms(x.loopback_get_ms), f"x{x.mget_batch}", _ms(x.mget_ms),
            f"{x.mget_values_per_s:,.0f}", f"{x.mget_mb_s:,.1f}", _ms(x.loopback_mget_ms),
        )  # fmt: skip
    console.print(tp)

    load = Table.grid(padding=(0, 2))
    load.add_column(style="bold")
    load.add_column()
    if s.cpu is not None:
        which = "main thread" if s.cpu.per_thread else "process (no per-thread figures)"
        load.add_row("CPU", f"{s.cpu.main_thread:.0%} of a core ({which}) over {s.cpu.window_s} s")
    if s.busy is not None:
        load.add_row("busy", f"{s.busy:.0%} of the window running commands (INFO commandstats)")
    if s.connected_clients is not None:
        load.add_row(
            "clients",
            f"{s.connected_clients:,} connected besides the doctor, {s.blocked_clients or 0} "
            f"blocked, maxclients {s.maxclients or 0:,}",
        )
    if s.ops_per_s:
        series = ", ".join(f"{v:,.0f}" for v in s.ops_per_s)
        load.add_row("ops/s", f"{series} ({s.ops_trend})")
    if s.net_output_mb_s is not None:
        load.add_row("output", f"{s.net_output_mb_s:,.2f} MB/s sent by the server")
    console.print(load)
    if s.top_commands:
        cmds = Table(
            title=f"Command costs ({s.top_commands_scope}, INFO commandstats)", box=box.SIMPLE_HEAD
        )
        for col in ("command", "calls", "usec", "usec/call", "share"):
            cmds.add_column(col, justify="right")
        for c in s.top_commands:
            cmds.add_row(
                c.command, f"{c.calls:,}", f"{c.usec:,}", f"{c.usec_per_call:,.1f}",
                f"{c.share:.0%}",
            )  # fmt: skip
        console.print(cmds)
    for spot in report.blind_spots:
        console.print(f"[dim]blind spot: {spot}[/]")
