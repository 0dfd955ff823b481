"""A self-contained HTML report: inline CSS and SVG charts, no scripts, no external files.

Key names are data written by whoever can write to Redis, so every string is
escaped; the page carries no JavaScript at all, which also keeps it safe to
open from a CI artifact.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from ._model import AuditReport, PrefixReport, Severity
from ._render_text import size

__all__ = ["render_html"]

COLORS = {
    Severity.CRITICAL: "#7f1d1d",
    Severity.HIGH: "#dc2626",
    Severity.MEDIUM: "#d97706",
    Severity.LOW: "#0891b2",
    Severity.INFO: "#6b7280",
}
NO_TTL = "#dc2626"
WITH_TTL = "#16a34a"
MAX_BARS = 20
CHART_W = 760
LABEL_W = 260
BAR_H = 18

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#111}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sev{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px;white-space:nowrap}
.advice{color:#555;font-size:12px}code{font-size:12px;word-break:break-all}
.meta td:first-child{font-weight:600;width:9rem}svg text{font:12px system-ui,sans-serif}
"""


def _sev(s: Severity) -> str:
    return f'<span class="sev" style="background:{COLORS[s]}">{escape(s.value)}</span>'


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _label(text: str, limit: int = 38) -> str:
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def _memory_chart(prefixes: list[PrefixReport]) -> str:
    rows = [p for p in prefixes if p.bytes_estimated][:MAX_BARS]
    if not rows:
        return "<p>No memory figures (MEMORY USAGE not visible).</p>"
    top = max(p.bytes_estimated or 0 for p in rows) or 1
    scale = (CHART_W - LABEL_W - 80) / top
    parts = []
    for i, p in enumerate(rows):
        y = i * (BAR_H + 6)
        total = p.bytes_estimated or 0
        no_ttl = p.no_ttl_bytes_estimated or 0
        w_no, w_ttl = no_ttl * scale, (total - no_ttl) * scale
        parts.append(
            f'<text x="0" y="{y + 13}">{_label(p.pattern)}</text>'
            f'<rect x="{LABEL_W}" y="{y}" width="{w_no:.1f}" height="{BAR_H}" fill="{NO_TTL}">'
            f"<title>{escape(p.pattern)}: {size(no_ttl)} without TTL</title></rect>"
            f'<rect x="{LABEL_W + w_no:.1f}" y="{y}" width="{w_ttl:.1f}" height="{BAR_H}" '
            f'fill="{WITH_TTL}"><title>{escape(p.pattern)}: {size(total - no_ttl)} with TTL'
            "</title></rect>"
            f'<text x="{LABEL_W + w_no + w_ttl + 6:.1f}" y="{y + 13}">{size(total)}</text>'
        )
    height = len(rows) * (BAR_H + 6)
    return (
        f'<svg width="{CHART_W}" height="{height}" role="img" aria-label="memory per prefix">'
        + "".join(parts)
        + "</svg>"
        + f'<p class="advice"><span style="color:{NO_TTL}">■</span> without TTL '
        f'<span style="color:{WITH_TTL}">■</span> with TTL</p>'
    )


def _ttl_chart(prefixes: list[PrefixReport]) -> str:
    rows = prefixes[:MAX_BARS]
    if not rows:
        return "<p>No keys sampled.</p>"
    width = CHART_W - LABEL_W - 60
    parts = []
    for i, p in enumerate(rows):
        y = i * (BAR_H + 6)
        covered = 1 - p.no_ttl_keys_share
        lo, hi = 1 - p.no_ttl_keys_ci95[1], 1 - p.no_ttl_keys_ci95[0]
        color = WITH_TTL if covered >= 0.99 else (NO_TTL if covered < 0.5 else "#d97706")
        parts.append(
            f'<text x="0" y="{y + 13}">{_label(p.pattern)}</text>'
            f'<rect x="{LABEL_W}" y="{y}" width="{width}" height="{BAR_H}" fill="#eee"/>'
            f'<rect x="{LABEL_W}" y="{y}" width="{covered * width:.1f}" height="{BAR_H}" '
            f'fill="{color}">'
            f"<title>{escape(p.pattern)}: {covered:.1%} of keys expire</title></rect>"
        )
        if hi > lo:
            parts.append(
                f'<line x1="{LABEL_W + lo * width:.1f}" x2="{LABEL_W + hi * width:.1f}" '
                f'y1="{y + BAR_H / 2}" y2="{y + BAR_H / 2}" stroke="#111" stroke-width="2"/>'
            )
        parts.append(f'<text x="{LABEL_W + width + 6}" y="{y + 13}">{covered:.0%}</text>')
    height = len(rows) * (BAR_H + 6)
    return (
        f'<svg width="{CHART_W}" height="{height}" role="img" aria-label="TTL coverage per prefix">'
        + "".join(parts)
        + "</svg>"
        + '<p class="advice">Share of keys with a TTL; the line is the 95% interval.</p>'
    )


def _severity_chart(report: AuditReport) -> str:
    counts = Counter(f.severity for f in report.findings)
    order = sorted(Severity, key=lambda s: -s.rank)
    top = max(counts.values(), default=1) or 1
    parts = []
    for i, s in enumerate(order):
        y = i * (BAR_H + 6)
        w = counts.get(s, 0) / top * 300
        parts.append(
            f'<text x="0" y="{y + 13}">{s.value}</text>'
            f'<rect x="80" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{COLORS[s]}"/>'
            f'<text x="{86 + w:.1f}" y="{y + 13}">{counts.get(s, 0)}</text>'
        )
    return (
        f'<svg width="420" height="{len(order) * (BAR_H + 6)}" role="img" aria-label="findings">'
        + "".join(parts)
        + "</svg>"
    )


def render_html(report: AuditReport) -> str:
    """The report as one HTML page with its charts inline."""
    s = report.sampling
    exact = s.complete
    meta = [
        ("target", escape(report.target)),
        (
            report.server.topology,
            escape(", ".join(f"{n.address} ({n.role} {n.version})" for n in report.server.nodes)),
        ),
        (
            "keys",
            f"all {s.keys_sampled:,} read"
            if exact
            else f"{s.keys_sampled:,} of {s.keys_total:,} sampled (estimates with 95% intervals)",
        ),
        (
            "cost",
            f"{s.commands_sent:,} commands, {s.ops_per_s:,.0f}/s "
            f"(budget {s.budget_ops_per_s:,.0f}/s), {s.backoffs} back-offs",
        ),
        ("status", "interrupted: partial report" if s.interrupted else "complete"),
    ]
    findings_rows = "".join(
        f"<tr><td>{_sev(f.severity)}</td><td><code>{escape(f.id)}</code></td>"
        f"<td><code>{escape(f.where)}</code></td>"
        f'<td>{escape(f.summary)}<div class="advice">{escape(f.advice)}</div></td></tr>'
        for f in report.findings
    )
    prefix_rows = "".join(
        f"<tr><td><code>{escape(p.pattern)}</code></td><td class=num>{p.db}</td>"
        f"<td class=num>{p.keys_estimated:,}{'' if exact else f' ±{p.keys_margin95:,}'}</td>"
        f"<td class=num>{size(p.bytes_estimated)}</td>"
        f"<td class=num>{p.no_ttl_keys_share:.1%}</td>"
        f"<td class=num>{_pct(p.no_ttl_bytes_share)}</td>"
        f"<td>{escape(', '.join(f'{t} {n}' for t, n in p.types.items()))}</td></tr>"
        for p in report.prefixes
    )
    blind = "".join(f"<li>{escape(b)}</li>" for b in report.blind_spots)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>veneer audit: {escape(report.target)}</title><style>{_CSS}</style></head>
<body>
<h1>veneer audit</h1>
<table class="meta">{"".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in meta)}</table>
<h2>Findings</h2>
{_severity_chart(report)}
<table><tr><th>severity</th><th>check</th><th>where</th><th>finding and what to do</th></tr>
{findings_rows or '<tr><td colspan="4">No findings.</td></tr>'}</table>
<h2>Memory per prefix</h2>
{_memory_chart(report.prefixes)}
<h2>TTL coverage per prefix</h2>
{_ttl_chart(report.prefixes)}
<h2>Prefixes</h2>
<table><tr><th>pattern</th><th>db</th><th>keys</th><th>memory</th><th>no TTL (keys)</th>
<th>no TTL (memory)</th><th>types</th></tr>{prefix_rows}</table>
{f"<h2>Not visible to this audit</h2><ul>{blind}</ul>" if blind else ""}
</body></html>
"""
