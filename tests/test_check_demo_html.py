"""scripts/check_demo_html.py's verdicts on what Chromium reports (no browser needed).

The browser run itself is .ci/run's step; these pin what it counts as a failure.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = "file:///tmp/report.html"


def _script() -> Any:
    path = ROOT / "scripts/check_demo_html.py"
    spec = importlib.util.spec_from_file_location("check_demo_html", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event(method: str, **params: Any) -> dict[str, Any]:
    return {"method": method, "params": params}


def test_console_errors_exceptions_and_outside_requests_fail() -> None:
    """console.error, an uncaught exception, a logged error and any outside request fail."""
    problems = _script()._problems_in(
        [
            event("Runtime.consoleAPICalled", type="error", args=[{"value": "bad"}]),
            event("Runtime.exceptionThrown", exceptionDetails={"text": "Uncaught",
                  "exception": {"description": "TypeError: x is null"}}),
            event("Log.entryAdded", entry={"level": "error", "source": "security",
                  "text": "Refused to load the image"}),
            event("Network.requestWillBeSent", request={"url": "https://cdn.example/x.js"}),
        ],
        PAGE,
    )  # fmt: skip
    assert len(problems) == 4
    assert "TypeError: x is null" in problems[1]
    assert "https://cdn.example/x.js" in problems[3]


def test_the_page_itself_and_quiet_logs_pass() -> None:
    """Loading the file, console.log and warnings are not failures."""
    problems = _script()._problems_in(
        [
            event("Network.requestWillBeSent", request={"url": PAGE}),
            event("Runtime.consoleAPICalled", type="log", args=[{"value": "hi"}]),
            event("Log.entryAdded", entry={"level": "warning", "source": "other", "text": "w"}),
        ],
        PAGE,
    )
    assert problems == []


def chart(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "width": 1040, "height": 418, "shapes": 120, "drawn": 40, **kw}


def test_every_chart_must_have_a_box_and_drawn_shapes() -> None:
    """No chart, a zero box, a chart without drawn shapes or a wrong count fail."""
    verdict = _script()._chart_problems
    assert verdict({"charts": [chart("naive"), chart("veneer")]}, 2) == []
    assert verdict({"charts": []}, None) == ["no chart: no <svg data-chart> in the page"]
    assert verdict({"charts": [chart("naive")]}, 2) == ["1 charts, expected 2"]
    assert "empty box" in verdict({"charts": [chart("naive", height=0)]}, None)[0]
    assert "drew nothing" in verdict({"charts": [chart("naive", drawn=0)]}, None)[0]
