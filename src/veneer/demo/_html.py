"""The ``veneer demo --html`` report: one self-contained page, inline CSS and SVG.

The page fetches nothing: no CDN, no font, no script. A Content-Security-Policy of
``default-src 'none'`` makes that a property the browser enforces (anything the page
tried to load would be refused and logged as a console error, which
``scripts/check_demo_html.py`` fails on), not only a habit of this module.

The report dict (docs/demo.md, schema version 1) is read defensively: every figure
may be null or absent, a phase may be skipped, a timeline may be empty, and every
string is escaped, because ``--redis``/``--db`` put user-supplied text in it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from html import escape
from typing import Any

from ._schema import METRICS

__all__ = ["render_html"]

# A side is "hurt" in a cell when its figure is at least twice the other's and
# worse by at least this much: a 0.3 ms against 0.1 ms p50 is not an incident.
HURT_FLOOR = {"count": 1.0, "ms": 1.0, "per_s": 1.0, "bytes": 64 * 1024.0}
# Where more is only ever damage (errors, losses, latency), veneer being the worse
# side is marked too. Database load and bytes are costs veneer chooses to pay (the
# database answers while Redis is hung): marked only where naive pays more.
ALWAYS_DAMAGE = {"count", "ms"}
STACK_COLORS = {"naive": "#c2410c", "veneer": "#1d4ed8"}
OTHER_COLORS = ["#7c3aed", "#0f766e", "#a16207"]
ERROR_COLOR = "#dc2626"
DB_COLOR = "#475569"

CHART_W = 1040
LEFT = 70
RIGHT = 16
BAND_H = 24
LAT_H = 150
ERR_H = 60
DB_H = 80
GAP = 26
AXIS_H = 26

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:1100px;color:#111;
padding:0 1rem}
h1{font-size:1.45rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem;
border-bottom:1px solid #ddd}h3{font-size:1rem;margin:1.2rem 0 .2rem}
.setup{color:#444;margin:.2rem 0 1rem}.note{color:#555;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}.card{border:1px solid #ddd;border-radius:6px;
padding:.4rem .7rem;min-width:8rem}.card .k{font-size:12px;color:#555}
.card{flex:1 1 0}.card .v{font-variant-numeric:tabular-nums;white-space:nowrap}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{padding:3px 6px;border-bottom:1px solid #eee;vertical-align:top}
thead th{background:#f3f4f6;font-size:12px;text-align:right;font-weight:600}
thead th:first-child{text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.ph th{text-align:left;background:#f9fafb;border-top:2px solid #d1d5db;padding-top:6px}
tr.story td{color:#333;font-size:13px;border-bottom:none}
tr.stack th{text-align:left;font-weight:500;white-space:nowrap}
td.hurt{background:#fee2e2;color:#991b1b;font-weight:600}td.ok{background:#dcfce7}
td.worse{background:#fef3c7}.skip{color:#92400e;font-style:italic}
.span{color:#666;font-weight:400;font-size:12px;margin-left:.5rem}
.sw{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;vertical-align:-1px}
svg{max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#333}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 1rem}dt{font-weight:600}
dd{margin:0}table.checks{width:auto}table.checks th{text-align:left;font-weight:500}
code{font-size:12px;word-break:break-all}
"""


# ---- reading the report defensively -------------------------------------------


def _num(value: Any) -> float | None:
    """A finite number, or None for null, absent, a bool or anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return "" if value is None else escape(str(value))


def _stacks(report: dict[str, Any]) -> list[str]:
    named = [str(s) for s in _list(report.get("stacks"))]
    return named or ["naive", "veneer"]


def _metrics(report: dict[str, Any]) -> list[dict[str, str]]:
    given = [m for m in _list(report.get("metrics")) if isinstance(m, dict) and "key" in m]
    chosen = given or METRICS
    return [
        {"key": str(m["key"]), "label": str(m.get("label", m["key"])), "unit": str(m.get("unit"))}
        for m in chosen
    ]


def _label(report: dict[str, Any], stack: str) -> str:
    return str(_dict(report.get("stack_labels")).get(stack, stack))


def _color(stacks: list[str], stack: str) -> str:
    if stack in STACK_COLORS:
        return STACK_COLORS[stack]
    return OTHER_COLORS[stacks.index(stack) % len(OTHER_COLORS)]


# ---- figures -------------------------------------------------------------------


def _size(x: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= scale:
            return f"{x / scale:,.1f} {unit}"
    return f"{x:,.0f} B"


def fmt(value: Any, unit: str) -> str:
    """One figure as the table shows it; a dash for null."""
    x = _num(value)
    if x is None:
        return "–"
    if unit == "ms":
        return f"{x:,.0f} ms" if x >= 100 else f"{x:.1f} ms" if x >= 10 else f"{x:.2f} ms"
    if unit == "per_s":
        return f"{x:,.0f}/s" if x >= 100 else f"{x:.1f}/s"
    if unit == "bytes":
        return _size(x)
    if unit == "count":
        return f"{x:,.0f}"
    return f"{x:,.4g}"


def hurt_side(values: tuple[Any, Any], unit: str) -> int | None:
    """Which of two figures (0 or 1) shows damage the other does not, if either."""
    a, b = _num(values[0]), _num(values[1])
    if a is None or b is None:
        return None
    floor = HURT_FLOOR.get(unit, 0.0)
    if a >= 2 * b and a - b >= floor:
        return 0
    if b >= 2 * a and b - a >= floor:
        return 1
    return None


# ---- the header and the totals -------------------------------------------------


def _setup_line(report: dict[str, Any]) -> str:
    machine, setup = _dict(report.get("machine")), _dict(report.get("setup"))
    ran = []
    elapsed, duration = _num(report.get("elapsed_s")), _num(report.get("duration_s"))
    if elapsed is not None:
        ran.append(f"Ran {elapsed:.1f} s")
        if duration is not None:
            ran.append(f"of a {duration:g} s scenario")
    where = [
        f"{_text(machine['cpus'])} CPUs" if machine.get("cpus") is not None else "",
        f"Python {_text(machine['python'])}" if machine.get("python") else "",
        f"Redis {_text(machine['redis'])}" if machine.get("redis") else "",
        _text(machine.get("platform")),
    ]
    servers = [
        f"Redis: {_text(setup['redis'])}" if setup.get("redis") else "",
        f"database: {_text(setup['db'])}" if setup.get("db") else "",
    ]
    head = " ".join(ran)
    machine_text = ", ".join(w for w in where if w)
    sentence = f"{head} on {machine_text}." if head and machine_text else head or machine_text
    served = "; ".join(s for s in servers if s)
    text = ". ".join(part for part in (sentence.rstrip("."), served) if part)
    return f"{text}." if text else "This report does not say where it ran."


def _intro(report: dict[str, Any], stacks: list[str]) -> str:
    who = "".join(
        f'<li><span class="sw" style="background:{_color(stacks, s)}"></span> '
        f"<b>{_text(s)}</b>: {_text(_label(report, s))}</li>"
        for s in stacks
    )
    return (
        '<p class="note">Both stacks serve the same web-shop workload (product reads, '
        "sessions, view counters, a rate limit, a feature flag, product writes) at the same "
        "time, each against its own Redis. Each phase injects one incident into both Redis "
        f'servers.</p><ul class="note">{who}</ul>'
    )


def _cards(report: dict[str, Any], stacks: list[str], metrics: list[dict[str, str]]) -> str:
    totals = _dict(report.get("totals"))
    if not totals:
        return '<p class="note">No totals in this report.</p>'
    shown = [m for m in metrics if m["unit"] == "count" or m["key"] == "p99_ms"]
    cards = []
    for m in shown:
        lines = "".join(
            f'<div class="v"><span class="sw" style="background:{_color(stacks, s)}"></span> '
            f"{_text(s)} <b>{fmt(_dict(totals.get(s)).get(m['key']), m['unit'])}</b></div>"
            for s in stacks
        )
        cards.append(f'<div class="card"><div class="k">{_text(m["label"])}</div>{lines}</div>')
    return f'<div class="cards">{"".join(cards)}</div>'


# ---- the per-phase table -------------------------------------------------------


def _cells(figures: list[dict[str, Any]], metrics: list[dict[str, str]], column: int) -> list[str]:
    """The <td>s of one stack's row, marked where this stack or the other is hurt."""
    cells = [f'<td class="num">{fmt(figures[column].get("requests"), "count")}</td>']
    for m in metrics:
        value = figures[column].get(m["key"])
        css = ""
        if len(figures) == 2:
            hurt = hurt_side((figures[0].get(m["key"]), figures[1].get(m["key"])), m["unit"])
            if hurt == 0:  # column 0 is naive, by the schema's order
                css = "hurt" if column == 0 else "ok"
            elif hurt == 1 and m["unit"] in ALWAYS_DAMAGE:
                css = "worse" if column == 1 else ""
        cells.append(f'<td class="num {css}">{fmt(value, m["unit"])}</td>')
    return cells


def _stack_rows(
    report: dict[str, Any], stacks: list[str], metrics: list[dict[str, str]], by: dict[str, Any]
) -> str:
    figures = [_dict(by.get(s)) for s in stacks]
    return "".join(
        f'<tr class="stack"><th><span class="sw" style="background:{_color(stacks, s)}">'
        f"</span> {_text(s)}</th>{''.join(_cells(figures, metrics, i))}</tr>"
        for i, s in enumerate(stacks)
    )


def _span(phase: dict[str, Any]) -> str:
    start, end = _num(phase.get("start_s")), _num(phase.get("end_s"))
    if start is None or end is None:
        return ""
    return f'<span class="span">{start:.1f}–{end:.1f} s</span>'


def _phase_group(
    report: dict[str, Any],
    index: int,
    phase: dict[str, Any],
    stacks: list[str],
    metrics: list[dict[str, str]],
) -> str:
    width = len(metrics) + 2
    title = _text(phase.get("title") or phase.get("name") or f"phase {index}")
    head = f'<tr class="ph"><th colspan="{width}">{index}. {title}{_span(phase)}</th></tr>'
    story = f'<tr class="story"><td colspan="{width}">{_text(phase.get("story"))}</td></tr>'
    if phase.get("skipped"):
        why = f"skipped: {_text(phase['skipped'])}"
        return f'<tbody>{head}<tr class="story"><td colspan="{width}" class="skip">{why}</td></tr>'
    if not phase.get("story"):
        story = ""
    return f"<tbody>{head}{story}{_stack_rows(report, stacks, metrics, _dict(phase.get('stacks')))}"


def _table(report: dict[str, Any], stacks: list[str], metrics: list[dict[str, str]]) -> str:
    phases = [_dict(p) for p in _list(report.get("phases"))]
    header = "".join(f"<th>{_text(m['label'])}</th>" for m in metrics)
    groups = [_phase_group(report, i, p, stacks, metrics) for i, p in enumerate(phases, 1)]
    totals = _dict(report.get("totals"))
    if totals:
        width = len(metrics) + 2
        groups.append(
            f'<tbody><tr class="ph"><th colspan="{width}">Whole run</th></tr>'
            f"{_stack_rows(report, stacks, metrics, totals)}"
        )
    if not phases:
        groups.insert(0, f'<tbody><tr><td colspan="{len(metrics) + 2}">No phases ran.</td></tr>')
    return (
        f"<table><thead><tr><th>stack</th><th>requests</th>{header}</tr></thead>"
        f"{''.join(groups)}</table>"
        '<p class="note"><span class="sw" style="background:#fee2e2"></span> naive damaged '
        'where veneer was not (at least twice as bad) <span class="sw" '
        'style="background:#dcfce7"></span> the other side of that cell '
        '<span class="sw" style="background:#fef3c7"></span> veneer the worse of the two '
        "(errors, losses, latency). Database load and bytes are marked only where naive "
        "pays more: veneer sending reads to the database while Redis is hung is the design, "
        "not damage.</p>"
    )


# ---- the timeline charts -------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    """Axes shared by every stack's chart, so the charts compare at a glance."""

    x_max: float  # seconds since the run started
    interval: float  # seconds per timeline sample
    lat_lo: float  # first and last decade of the log latency axis, in ms
    lat_hi: float
    err_max: float  # errors/s
    db_max: float  # database queries/s

    def x(self, t: float) -> float:
        return LEFT + (CHART_W - LEFT - RIGHT) * max(0.0, min(t, self.x_max)) / self.x_max

    def lat_y(self, ms: float, top: float) -> float:
        lo, hi = math.log10(self.lat_lo), math.log10(self.lat_hi)
        v = min(max(math.log10(max(ms, self.lat_lo)), lo), hi)
        return top + LAT_H * (1 - (v - lo) / (hi - lo))


def _samples(report: dict[str, Any], stack: str, until: float = math.inf) -> list[dict[str, Any]]:
    rows = [_dict(r) for r in _list(_dict(report.get("timeline")).get(stack))]
    return [r for r in rows if (t := _num(r.get("t"))) is not None and t <= until]


def _nice_max(x: float) -> float:
    if x <= 0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(x))
    return next(m * exp for m in (1, 2, 5, 10) if m * exp >= x)


def _run_end(report: dict[str, Any], phases: list[dict[str, Any]], rows: list[Any]) -> float:
    """Where the time axis ends: the run's own end, else its last sample."""
    ends = [_num(p.get("end_s")) for p in phases] + [_num(report.get("elapsed_s"))]
    # Samples only when the run says nothing: a stray late sample (a sampler still
    # ticking after the run) must not squeeze seven phases into a corner.
    if not any(e is not None for e in ends):
        ends = [_num(r.get("t")) for r in rows]
    return max([e for e in ends if e is not None and e > 0] + [1.0])


def _scale(report: dict[str, Any], stacks: list[str], phases: list[dict[str, Any]]) -> _Scale:
    given = _num(_dict(report.get("timeline")).get("interval_s"))
    interval = given if given is not None and given > 0 else 1.0
    every = [r for s in stacks for r in _samples(report, s)]
    x_max = _run_end(report, phases, every)
    rows = [r for r in every if (_num(r.get("t")) or 0.0) <= x_max + interval]
    lats = [v for r in rows for k in ("p50_ms", "p99_ms") if (v := _num(r.get(k))) and v > 0]
    lo = 10 ** math.floor(math.log10(max(min(lats, default=0.1), 0.01)))
    # The top is the next 1-2-5 value, not the next decade: a 2 s timeout gets 5000 ms,
    # not an empty decade up to 10 s; 1001 ms (a 1 s timeout) tops out at 1000 ms.
    hi = _nice_max(max(max(lats, default=10.0), lo * 10) / 1.02)
    err = max((_num(r.get("errors")) or 0 for r in rows), default=0) / interval
    db = max((_num(r.get("db_queries")) or 0 for r in rows), default=0) / interval
    return _Scale(x_max, interval, lo, hi, _nice_max(err), _nice_max(db))


def _phase_band(
    i: int, phase: dict[str, Any], sc: _Scale, panels: list[tuple[float, float]]
) -> str:
    """One phase's shading over each (top, height) panel, its start line and its label."""
    start, end = _num(phase.get("start_s")), _num(phase.get("end_s"))
    if start is None or end is None:
        return ""
    x0, x1 = sc.x(start), sc.x(end)
    skipped = phase.get("skipped")
    fill = "#dcdfe4" if skipped else ("#f4f6f9" if i % 2 else "#e6ebf2")
    name = str(phase.get("name") or "")
    title = str(phase.get("title") or name)
    fits = max(1, int((x1 - x0 - 6) / 6.2))  # ~6.2 px per character at 11 px
    tail = " (skipped)" if skipped else ""
    label = next(
        (f"{i} {t}{tail}" for t in (title, name) if len(f"{i} {t}{tail}") <= fits),
        f"{i} {name}{tail}",
    )
    shown = label if len(label) <= fits else label[: max(1, fits - 1)] + "…"
    tip = f"{i}. {title}" + (f": skipped, {skipped}" if skipped else "")
    shades = "".join(
        f'<rect x="{x0:.1f}" y="{top:.1f}" width="{max(x1 - x0, 0.5):.1f}" '
        f'height="{height:.1f}" fill="{fill}"/>'
        for top, height in [(0.0, float(BAND_H)), *panels]
    )
    bottom = panels[-1][0] + panels[-1][1]
    return (
        f'<g class="phase"><title>{escape(tip)}</title>{shades}'
        f'<line x1="{x0:.1f}" x2="{x0:.1f}" y1="0" y2="{bottom:.0f}" '
        'stroke="#64748b" stroke-dasharray="3 3"/>'
        f'<text x="{x0 + 4:.1f}" y="16" font-weight="600">{escape(shown)}</text></g>'
    )


def _series_path(points: list[tuple[float, float] | None]) -> str:
    """An SVG path through the points, broken where a sample has no figure."""
    d, pen_down = [], False
    for pt in points:
        if pt is None:
            pen_down = False
            continue
        d.append(f"{'L' if pen_down else 'M'}{pt[0]:.1f},{pt[1]:.1f}")
        pen_down = True
    return "".join(d)


def _panel_title(top: float, text: str, legend: str = "") -> str:
    return f'<text x="{LEFT + 4}" y="{top - 7:.1f}" font-weight="600">{text}</text>{legend}'


def _latency(rows: list[dict[str, Any]], sc: _Scale, top: float, color: str) -> str:
    legend = (
        f'<line x1="{LEFT + 170}" x2="{LEFT + 192}" y1="{top - 11:.1f}" y2="{top - 11:.1f}" '
        f'stroke="{color}" stroke-width="2"/><text x="{LEFT + 196}" y="{top - 7:.1f}">p99</text>'
        f'<line x1="{LEFT + 226}" x2="{LEFT + 248}" y1="{top - 11:.1f}" y2="{top - 11:.1f}" '
        f'stroke="{color}" stroke-width="1.4" stroke-dasharray="5 3" opacity="0.7"/>'
        f'<text x="{LEFT + 252}" y="{top - 7:.1f}">p50</text>'
    )
    parts = [_panel_title(top, "latency (log scale)", legend)]
    ticks, decade = [], sc.lat_lo
    while decade <= sc.lat_hi * 1.001:
        ticks.append(decade)
        decade *= 10
    if ticks[-1] < sc.lat_hi * 0.999:
        ticks.append(sc.lat_hi)
    labelled = math.inf
    for tick in ticks:
        y = sc.lat_y(tick, top)
        parts.append(
            f'<line x1="{LEFT}" x2="{CHART_W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#cbd5e1" stroke-width="0.6"/>'
        )
        if labelled - y >= 16:  # the top tick's label would overlap the last decade's
            parts.append(
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g} ms</text>'
            )
            labelled = y
    for key, style in (
        ("p99_ms", 'stroke-width="2"'),
        ("p50_ms", 'stroke-width="1.4" stroke-dasharray="5 3" opacity="0.7"'),
    ):
        pts = [
            (sc.x(_num(r["t"]) or 0.0), sc.lat_y(v, top)) if (v := _num(r.get(key))) else None
            for r in rows
        ]
        if d := _series_path(pts):
            parts.append(f'<path class="series" d="{d}" fill="none" stroke="{color}" {style}/>')
    parts.append(_silences(rows, sc, top))
    return "".join(parts)


def _silences(rows: list[dict[str, Any]], sc: _Scale, top: float) -> str:
    """Mark runs of samples in which no request completed: a gap in a line says little."""
    runs: list[tuple[float, float]] = []
    for r in rows:
        t = _num(r.get("t")) or 0.0
        if _num(r.get("p99_ms")) is not None or (_num(r.get("requests")) or 0) > 0:
            continue
        if runs and abs(runs[-1][1] - (t - sc.interval)) < 1e-6:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t - sc.interval, t))
    parts = []
    for start, end in runs:
        x0, x1 = sc.x(start), sc.x(end)
        # Centred when it fits (~48 px), else starting at the stretch and running past it.
        at = (
            f'x="{(x0 + x1) / 2:.1f}" text-anchor="middle"' if x1 - x0 > 48 else f'x="{x0 + 2:.1f}"'
        )
        parts.append(
            f'<g class="silence"><title>{start:g}–{end:g} s: no request completed</title>'
            f'<rect x="{x0:.1f}" y="{top + LAT_H - 14:.1f}" width="{max(x1 - x0, 1):.1f}" '
            f'height="14" fill="#fecaca"/><text {at} y="{top + LAT_H - 3:.1f}" '
            'fill="#991b1b">no reply</text></g>'
        )
    return "".join(parts)


def _rates(
    rows: list[dict[str, Any]], key: str, sc: _Scale, top: float, height: float, vmax: float
) -> list[tuple[float, float, float]]:
    """(x, y, width) of one bar per sample of ``key``, as a rate per second."""
    bars = []
    for r in rows:
        count, t = _num(r.get(key)), _num(r.get("t")) or 0.0
        if not count or count <= 0:
            continue
        h = height * min(count / sc.interval / vmax, 1.0)
        x0, x1 = sc.x(t - sc.interval), sc.x(t)
        bars.append((x0, top + height - h, max(x1 - x0 - 0.3, 0.6)))
    return bars


def _rate_panel(
    rows: list[dict[str, Any]], key: str, sc: _Scale, top: float, spec: tuple[float, float, str]
) -> str:
    """A bar panel of ``key`` per second; spec is (height, axis maximum, colour)."""
    height, vmax, fill = spec
    parts = [
        f'<line x1="{LEFT}" x2="{CHART_W - RIGHT}" y1="{top + height:.1f}" '
        f'y2="{top + height:.1f}" stroke="#94a3b8"/>'
        f'<line x1="{LEFT}" x2="{CHART_W - RIGHT}" y1="{top:.1f}" y2="{top:.1f}" '
        'stroke="#e2e8f0" stroke-width="0.6"/>'
        f'<text x="{LEFT - 6}" y="{top + 8:.1f}" text-anchor="end">{vmax:,.0f}/s</text>'
        f'<text x="{LEFT - 6}" y="{top + height:.1f}" text-anchor="end">0</text>'
    ]
    bars = _rates(rows, key, sc, top, height, vmax)
    parts.extend(
        f'<rect class="series" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
        f'height="{top + height - y:.1f}" fill="{fill}"/>'
        for x, y, w in bars
    )
    if rows and not bars:
        parts.append(f'<text x="{LEFT + 8}" y="{top + height - 6:.1f}" fill="#166534">none</text>')
    return "".join(parts)


def _x_axis(sc: _Scale, top: float) -> str:
    step = _nice_max(sc.x_max / 10)
    parts = [
        f'<text x="{CHART_W - RIGHT}" y="{top + 24:.1f}" text-anchor="end">'
        "seconds since the start</text>"
    ]
    t = 0.0
    while t <= sc.x_max + 1e-9:
        parts.append(
            f'<text x="{sc.x(t):.1f}" y="{top + 12:.1f}" text-anchor="middle">{t:g}</text>'
        )
        t += step
    return "".join(parts)


def _chart(report: dict[str, Any], stack: str, color: str, phases: list[Any], sc: _Scale) -> str:
    rows = _samples(report, stack, sc.x_max + sc.interval)
    lat_top = BAND_H + GAP
    err_top = lat_top + LAT_H + GAP
    db_top = err_top + ERR_H + GAP
    height = db_top + DB_H + AXIS_H
    panels: list[tuple[float, float]] = [(lat_top, LAT_H), (err_top, ERR_H), (db_top, DB_H)]
    bands = "".join(_phase_band(i, _dict(p), sc, panels) for i, p in enumerate(phases, 1))
    first = _num(_dict(phases[0]).get("start_s")) if phases else None
    if first is not None and sc.x(first) - LEFT > 52:
        bands += f'<text x="{LEFT + 4}" y="16" fill="#64748b">warm-up</text>'
    empty = (
        ""
        if rows
        else f'<text x="{CHART_W / 2}" y="{lat_top + LAT_H / 2}" text-anchor="middle" '
        'font-size="14">no timeline samples in this report</text>'
    )
    return (
        f'<svg data-chart="{escape(stack)}" width="{CHART_W}" height="{height}" '
        f'viewBox="0 0 {CHART_W} {height}" role="img" '
        f'aria-label="timeline of {escape(stack)}">{bands}'
        + _latency(rows, sc, lat_top, color)
        + _panel_title(err_top, "caller errors per second")
        + _rate_panel(rows, "errors", sc, err_top, (ERR_H, sc.err_max, ERROR_COLOR))
        + _panel_title(db_top, "database queries per second")
        + _rate_panel(rows, "db_queries", sc, db_top, (DB_H, sc.db_max, DB_COLOR))
        + _x_axis(sc, db_top + DB_H)
        + empty
        + "</svg>"
    )


def _timelines(report: dict[str, Any], stacks: list[str]) -> str:
    phases = [_dict(p) for p in _list(report.get("phases"))]
    sc = _scale(report, stacks, phases)
    charts = "".join(
        f'<h3><span class="sw" style="background:{_color(stacks, s)}"></span> '
        f"{_text(_label(report, s))}</h3>{_chart(report, s, _color(stacks, s), phases, sc)}"
        for s in stacks
    )
    return (
        '<p class="note">One chart per stack, on the same axes. Shaded bands are the phases '
        f"(dashed line: where one starts); each bar covers {sc.interval:g} s.</p>{charts}"
    )


# ---- the page ------------------------------------------------------------------


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if (x := _num(v)) is not None:
        return f"{x:,.0f}" if x == int(x) else f"{x:,.4g}"
    if isinstance(v, str) or v is None:
        return _text("–" if v is None else v)
    return f"<code>{escape(json.dumps(v, default=str))}</code>"


def _checks(report: dict[str, Any]) -> str:
    """The free-form cross-checks: a column per key when each holds a dict, else a list."""
    checks = _dict(report.get("checks"))
    if not checks:
        return ""
    if all(isinstance(v, dict) for v in checks.values()):
        keys = list(dict.fromkeys(k for v in checks.values() for k in v))
        head = "".join(f"<th>{_text(c)}</th>" for c in checks)
        rows = "".join(
            f"<tr><th>{_text(k)}</th>"
            + "".join(f'<td class="num">{_value(v.get(k))}</td>' for v in checks.values())
            + "</tr>"
            for k in keys
        )
        body = f'<table class="checks"><thead><tr><th></th>{head}</tr></thead>{rows}</table>'
    else:
        items = "".join(f"<dt>{_text(k)}</dt><dd>{_value(v)}</dd>" for k, v in checks.items())
        body = f"<dl>{items}</dl>"
    return (
        '<h2>Cross-checks</h2><p class="note">What the demo counted on each side of the '
        f"figures above (for example increments acknowledged against those kept).</p>{body}"
    )


def render_html(report: dict[str, Any]) -> str:
    """The demo's report as one HTML page with its charts inline."""
    stacks, metrics = _stacks(report), _metrics(report)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>veneer demo: naive against veneer, incident by incident</title><style>{_CSS}</style>
</head><body>
<h1>veneer demo: the incidents of Redis-for-everything, naive against veneer</h1>
<p class="setup">{_setup_line(report)}</p>
{_intro(report, stacks)}
<h2>Whole run</h2>
{_cards(report, stacks, metrics)}
<h2>Timeline</h2>
{_timelines(report, stacks)}
<h2>Phase by phase</h2>
{_table(report, stacks, metrics)}
{_checks(report)}
</body></html>
"""
