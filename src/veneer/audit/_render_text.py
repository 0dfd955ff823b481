"""The terminal report: rich tables, worst first."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ._model import AuditReport, Finding, PrefixReport, Severity

__all__ = ["render_text", "size"]

STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}
MAX_PREFIX_ROWS = 25


def size(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _share(share: float | None, ci: tuple[float, float] | None, exact: bool) -> str:
    if share is None:
        return "n/a"
    if exact or ci is None:
        return f"{share:.0%}"
    return f"{share:.0%} ({ci[0]:.0%}-{ci[1]:.0%})"


def _header(report: AuditReport) -> Table:
    s = report.sampling
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("target", report.target)
    nodes = ", ".join(
        f"{n.address} ({n.role}, {n.server_name} {n.version}"
        + (f", {n.managed_service})" if n.managed_service else ")")
        for n in report.server.nodes
    )
    grid.add_row(report.server.topology, nodes or "no node answered")
    if s.complete:
        keys = f"all {s.keys_sampled:,} keys read"
    else:
        keys = f"{s.keys_sampled:,} of {s.keys_total:,} keys sampled"
        if s.no_ttl_keys_ci95 is not None and s.no_ttl_keys_share is not None:
            lo, hi = s.no_ttl_keys_ci95
            keys += f"; keys without TTL {s.no_ttl_keys_share:.1%} (95% CI {lo:.1%}-{hi:.1%})"
            if s.no_ttl_keys_share_exact is not None:
                keys += f", exact {s.no_ttl_keys_share_exact:.1%} from INFO"
    grid.add_row("keys", keys)
    grid.add_row(
        "cost",
        f"{s.commands_sent:,} commands in {s.duration_s:.1f} s = {s.ops_per_s:,.0f}/s "
        f"(budget {s.budget_ops_per_s:,.0f}/s, {s.backoffs} back-offs)",
    )
    if s.interrupted:
        grid.add_row("status", Text("interrupted: partial report", style="bold yellow"))
    return grid


def _findings(findings: list[Finding]) -> Table:
    table = Table(
        title="Findings (worst first)", box=box.SIMPLE_HEAVY, expand=True, title_justify="left"
    )
    table.add_column("severity", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("where", overflow="fold", max_width=40)
    table.add_column("finding and what to do", ratio=1)
    for f in findings:
        body = Text(f.summary)
        body.append("\n" + f.advice, style="dim")
        table.add_row(Text(f.severity.value, style=STYLE[f.severity]), f.id, f.where, body)
    return table


def _prefixes(prefixes: list[PrefixReport], exact: bool) -> Table:
    table = Table(
        title=f"Prefixes (by memory, top {MAX_PREFIX_ROWS})"
        if len(prefixes) > MAX_PREFIX_ROWS
        else "Prefixes (by memory)",
        box=box.SIMPLE,
        expand=True,
        title_justify="left",
    )
    table.add_column("pattern", overflow="fold")
    table.add_column("db", justify="right")
    table.add_column("keys", justify="right")
    table.add_column("memory", justify="right")
    table.add_column("no TTL (keys)", justify="right")
    table.add_column("no TTL (memory)", justify="right")
    table.add_column("types")
    table.add_column("nodes", justify="right")
    for p in prefixes[:MAX_PREFIX_ROWS]:
        keys = f"{p.keys_estimated:,}" if exact else f"~{p.keys_estimated:,} ±{p.keys_margin95:,}"
        no_ttl = _share(p.no_ttl_keys_share, p.no_ttl_keys_ci95, exact)
        style = (
            "red" if p.no_ttl_keys_share >= 0.5 else ("yellow" if p.no_ttl_keys_share > 0 else "")
        )
        table.add_row(
            p.pattern,
            str(p.db),
            keys,
            size(p.bytes_estimated),
            Text(no_ttl, style=style),
            _share(p.no_ttl_bytes_share, p.no_ttl_bytes_ci95, exact),
            ", ".join(f"{t} {n}" for t, n in p.types.items()),
            str(len(p.nodes)),
        )
    return table


def render_text(report: AuditReport, console: Console) -> None:
    """Print the report: header, findings, prefixes, blind spots."""
    parts: list[Table | Text] = [_header(report)]
    if report.findings:
        parts.append(_findings(report.findings))
    else:
        parts.append(Text("No findings.", style="green"))
    if report.prefixes:
        parts.append(_prefixes(report.prefixes, report.sampling.complete))
    if report.blind_spots:
        text = Text("Not visible to this audit:\n", style="bold")
        for b in report.blind_spots:
            text.append(f"  - {b}\n", style="")
        parts.append(text)
    console.print(Group(*parts))
