"""The ``veneer demo --html`` report: self-contained, escaped, one chart per stack.

These tests read the page's markup. That it renders in a browser (no console
error, every chart drawn) is checked by scripts/check_demo_html.py in headless
Chromium, which .ci/run runs on every CI build.
"""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from demo_reports import FIXTURE, degraded_report, full_report
from veneer.demo._html import fmt, hurt_side, render_html


class Page(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def charts(self) -> list[str | None]:
        return [a["data-chart"] for t, a in self.tags if t == "svg" and "data-chart" in a]


def assert_self_contained(html: str) -> None:
    page = Page(html)
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href", "action", "poster", "srcset"):
            assert attrs.get(name) is None, f"<{tag} {name}=...> in a self-contained page"
    assert not page.all("script"), "the report needs no script"
    assert not page.all("link"), "no <link>: styles are inline"
    assert not re.search(r"@import|url\(", html), "the CSS loads nothing"
    csp = page.all("meta", http_equiv="Content-Security-Policy")
    assert csp and "default-src 'none'" in (csp[0]["content"] or "")


def test_full_report_is_self_contained_with_a_chart_per_stack() -> None:
    """A seven-phase report is one page that loads nothing, with a timeline chart per stack."""
    html = render_html(full_report())
    assert_self_contained(html)
    assert Page(html).charts() == ["naive", "veneer"]


def test_every_phase_is_marked_on_every_chart_and_told_in_the_table() -> None:
    """Each chart marks each phase's band, and the table gives each phase's title and story."""
    report = full_report()
    html = render_html(report)
    page = Page(html)
    assert len(page.all("g", **{"class": "phase"})) == 7 * 2
    text = "".join(page.text)
    for i, phase in enumerate(report["phases"], 1):
        assert f"{i}. {phase['title']}" in text
        assert phase["story"] in text
    assert "Whole run" in text


def test_the_timeline_draws_latency_errors_and_database_load() -> None:
    """Each chart has a latency line per percentile and bars of errors and database load."""
    html = render_html(full_report())
    naive_svg = html[html.index('data-chart="naive"') : html.index('data-chart="veneer"')]
    assert naive_svg.count('<path class="series"') >= 2
    assert 'fill="#dc2626"' in naive_svg, "the hang's errors are drawn"
    assert "latency (log scale)" in naive_svg
    assert "database queries per second" in naive_svg


def table_part(html: str, start: str, end: str) -> str:
    """The table's rows from one phase's heading to the next (not the charts' tooltips)."""
    table = html[html.index("<table>") :]
    return table[table.index(start) : table.index(end)]


def test_naive_damage_is_highlighted_where_veneer_has_none() -> None:
    """Naive's errors while Redis hangs are marked, and veneer's zero beside them."""
    html = render_html(full_report())
    hang = table_part(html, "3. Redis hung", "4. Redis killed")
    assert '<td class="num hurt">1,710</td>' in hang
    assert '<td class="num ok">0</td>' in hang


def test_skipped_phase_nulls_and_an_empty_timeline_render() -> None:
    """A skipped phase says why, null figures show as a dash, an empty timeline says so."""
    report = degraded_report()
    html = render_html(report)
    assert_self_contained(html)
    page = Page(html)
    text = "".join(page.text)
    assert "skipped: --redis was given" in text
    assert "3 hang (skipped)" in text or "3 Redis hung (SIGSTOP) (skipped)" in text
    assert "no timeline samples in this report" in text
    assert "–" in text
    assert page.charts() == ["naive", "veneer"]


def test_an_empty_report_still_renders_both_charts() -> None:
    """A report with none of the keys renders a page, the default stacks and no phases."""
    html = render_html({})
    assert_self_contained(html)
    assert Page(html).charts() == ["naive", "veneer"]
    assert "No phases ran." in html


HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def hostile_report() -> dict[str, Any]:
    report = full_report()
    report["phases"][0]["story"] = HOSTILE
    report["phases"][1]["title"] = HOSTILE
    report["phases"][2]["name"] = HOSTILE
    report["phases"][3]["skipped"] = HOSTILE
    report["stack_labels"]["naive"] = HOSTILE
    report["setup"]["redis"] = HOSTILE
    report["machine"]["platform"] = HOSTILE
    report["metrics"][0]["label"] = HOSTILE
    report["checks"] = {HOSTILE: HOSTILE}
    report["phases"][4]["stacks"]["naive"]["p99_ms"] = HOSTILE
    report["timeline"]["naive"][3]["p99_ms"] = HOSTILE
    return report


def test_every_string_from_the_report_is_escaped() -> None:
    """Markup in stories, titles, labels, setup and checks is shown as text, never run."""
    html = render_html(hostile_report())
    assert_self_contained(html)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "".join(Page(html).text).count("<script>alert(1)</script>") >= 6


def test_a_string_where_a_figure_belongs_shows_as_a_dash() -> None:
    """A figure that is not a number is shown as missing, not interpolated."""
    html = render_html(hostile_report())
    eviction = table_part(html, "5. Eviction storm", "6. Writes racing")
    assert "alert" not in eviction
    assert ">–<" in eviction


@pytest.mark.parametrize(
    ("values", "unit", "side"),
    [
        ((310, 0), "count", 0),
        ((0, 4), "count", 1),
        ((0, 0), "count", None),
        ((1001.0, 55.0), "ms", 0),
        ((0.4, 0.1), "ms", None),  # four times, but under a millisecond apart
        ((None, 3), "count", None),
        ((2_000_000, 1_000_000), "bytes", 0),
    ],
)
def test_hurt_side(values: tuple[Any, Any], unit: str, side: int | None) -> None:
    """A side is hurt when its figure is at least twice the other's and worse by a floor."""
    assert hurt_side(values, unit) == side


def test_figures_format_by_unit() -> None:
    """Counts, milliseconds, rates and bytes read as a person writes them; null is a dash."""
    assert fmt(12345, "count") == "12,345"
    assert fmt(0.42, "ms") == "0.42 ms"
    assert fmt(1001.2, "ms") == "1,001 ms"
    assert fmt(12.0, "per_s") == "12.0/s"
    assert fmt(6_400_000_000, "bytes") == "6.4 GB"
    assert fmt(None, "ms") == fmt(True, "count") == fmt(float("nan"), "ms") == "–"


def test_the_ci_fixture_is_the_built_report() -> None:
    """tests/fixtures/demo-report.json, which CI opens in Chromium, matches full_report()."""
    assert json.loads(FIXTURE.read_text()) == json.loads(json.dumps(full_report()))


def test_rendering_does_not_change_the_report() -> None:
    """render_html only reads the dict it is given."""
    report = hostile_report()
    before = copy.deepcopy(report)
    render_html(report)
    assert report == before


def x_axis_labels(html: str, stack: str) -> list[float]:
    svg = html[html.index(f'data-chart="{stack}"') :]
    svg = svg[: svg.index("</svg>")]
    return [float(v) for v in re.findall(r'text-anchor="middle">([\d.]+)</text>', svg)]


def test_the_time_axis_ends_with_the_run_not_with_a_stray_sample() -> None:
    """Empty samples long after the run (a sampler still ticking) do not stretch the axis."""
    report = full_report()
    report["timeline"]["naive"] += [
        {"t": 60.0 + 0.5 * i, "requests": 0, "errors": 0, "p50_ms": None, "p99_ms": None,
         "db_queries": 0}
        for i in range(1, 2000)
    ]  # fmt: skip
    html = render_html(report)
    assert max(x_axis_labels(html, "naive")) == 60
    assert "60.5–" not in html, "no silence is marked after the run"


def test_stretches_with_no_completed_request_are_marked() -> None:
    """A hang with no reply at all shows as marked silence, not only as a gap in the line."""
    html = render_html(full_report())
    naive = html[html.index('data-chart="naive"') : html.index('data-chart="veneer"')]
    veneer = html[html.index('data-chart="veneer"') :]
    assert "no request completed" in naive and ">no reply<" in naive
    assert "no request completed" not in veneer


def test_cross_checks_per_stack_are_a_table() -> None:
    """Checks given per stack read as one row per check and a column per stack."""
    report = full_report()
    report["checks"] = {
        "naive": {"views_acknowledged": 4448, "views_lost": 2781},
        "veneer": {"views_acknowledged": 4844, "views_lost": 0},
    }
    page = Page(render_html(report))
    assert page.all("table", **{"class": "checks"})
    text = "|".join(t.strip() for t in page.text if t.strip())
    assert "views_lost|2,781|0" in text
