#!/usr/bin/env python3
"""Open ``veneer demo --html``'s report in headless Chromium and fail unless it renders.

    scripts/check_demo_html.py REPORT.html [--screenshot out.png] [--expect-charts 2]
    scripts/check_demo_html.py --from-json REPORT.json REPORT.html ...   (renders it first)

Fails (exit 1) on any console error or uncaught exception, on any request other
than the file itself (the report must be self-contained), and unless every chart
(each ``<svg data-chart>``) has drawn shapes and a non-zero bounding box. Writes a
full-page screenshot when asked.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages separated by NUL bytes on file descriptors 3 and 4), so the check needs
no port, no websocket package and no parsing of Chromium's own log lines; see
docs/decisions.md. Needs a ``chromium`` binary (Debian: ``apt-get install chromium``)
or one named by $CHROMIUM.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEADLINE_S = 60.0
WIDTH = 1200

# Run in the page: every chart, its shapes and its box, and whether any other svg is empty.
CHART_PROBE = """(() => {
  const shapes = 'path,rect,line,polyline,polygon,circle,text';
  const charts = [...document.querySelectorAll('svg[data-chart]')].map(svg => {
    const box = svg.getBoundingClientRect();
    const drawn = [...svg.querySelectorAll('path,rect,polyline,polygon,circle')]
      .filter(el => { const b = el.getBBox(); return b.width > 0 || b.height > 0; });
    return {name: svg.dataset.chart, width: box.width, height: box.height,
            shapes: svg.querySelectorAll(shapes).length, drawn: drawn.length,
            series: svg.querySelectorAll('.series').length};
  });
  return JSON.stringify({charts, svgs: document.querySelectorAll('svg').length,
                         title: document.title});
})()"""


class Browser:
    """One headless Chromium and its DevTools pipe."""

    def __init__(self, binary: str, profile: str, log: Any) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [
            binary, "--headless", "--remote-debugging-pipe", "--no-sandbox",
            "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--mute-audio", f"--user-data-dir={profile}", "about:blank",
        ]  # fmt: skip
        # Chromium reads commands on fd 3 and writes answers on fd 4: the shell puts
        # the pipe ends there (Popen has no fd mapping of its own).
        shell = f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", shell, "sh", *args],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL,
            stderr=log,  # Chromium's own chatter (dbus, GPU): shown only if it fails to start
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.deadline = time.monotonic() + DEADLINE_S

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"Chromium did not answer within {DEADLINE_S:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe (it exited)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            command["sessionId"] = session
        os.write(self._to_browser, json.dumps(command).encode() + b"\0")
        while True:
            message = self._read_message()
            if message.get("id") != self._next_id:
                self.events.append(message)
                continue
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message.get("result", {})
            return result

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read_message())

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def _problems_in(events: list[dict[str, Any]], page_url: str) -> list[str]:
    """Console errors, uncaught exceptions and any request that left the file."""
    found = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            found.append(f"console.{p['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = p["exceptionDetails"]
            what = details.get("exception", {}).get("description") or details.get("text")
            found.append(f"uncaught exception: {what}")
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            found.append(f"console error ({p['entry'].get('source')}): {p['entry'].get('text')}")
        elif method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if url != page_url and not url.startswith("data:"):
                found.append(f"the page requested {url}: the report must be self-contained")
    return found


def _chart_problems(probe: dict[str, Any], expect: int | None) -> list[str]:
    charts = probe["charts"]
    found = []
    if not charts:
        found.append("no chart: no <svg data-chart> in the page")
    if expect is not None and len(charts) != expect:
        found.append(f"{len(charts)} charts, expected {expect}")
    for c in charts:
        if c["width"] <= 0 or c["height"] <= 0:
            found.append(f"chart {c['name']!r} has an empty box ({c['width']}x{c['height']})")
        if c["shapes"] == 0 or c["drawn"] == 0:
            found.append(f"chart {c['name']!r} drew nothing ({c['shapes']} shapes)")
    return found


def _drive(browser: Browser, page_url: str, screenshot: Path | None) -> dict[str, Any]:
    """Load the page, probe its charts, take the screenshot; returns the probe."""
    target = browser.send("Target.createTarget", url="about:blank")["targetId"]
    session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session)
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        session, width=WIDTH, height=900, deviceScaleFactor=1, mobile=False,
    )  # fmt: skip
    browser.events.clear()
    browser.send("Page.navigate", session, url=page_url)
    browser.wait_for("Page.loadEventFired")
    value = browser.send("Runtime.evaluate", session, expression=CHART_PROBE, returnByValue=True)
    probe: dict[str, Any] = json.loads(value["result"]["value"])
    if screenshot is not None:
        size = browser.send("Page.getLayoutMetrics", session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": size["height"], "scale": 1}
        shot = browser.send(
            "Page.captureScreenshot", session, format="png", clip=clip, captureBeyondViewport=True
        )
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    # One more round trip, so console messages logged after load are in the events too.
    browser.send("Runtime.evaluate", session, expression="1")
    return probe


def check(html: Path, screenshot: Path | None, expect: int | None, binary: str) -> list[str]:
    """Every problem found in the page, after taking the screenshot."""
    page_url = html.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="veneer-chromium-") as profile:
        log_path = Path(profile, "chromium.log")
        with log_path.open("wb") as log:
            browser = Browser(binary, profile, log)
            try:
                probe = _drive(browser, page_url, screenshot)
            except (RuntimeError, TimeoutError) as exc:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"check_demo_html: {exc}\nChromium's log:\n{tail}") from None
            finally:
                browser.close()
    for c in probe["charts"]:
        print(
            f"chart {c['name']}: {c['width']:.0f}x{c['height']:.0f} px, "
            f"{c['shapes']} shapes, {c['series']} data series/bars"
        )
    return _problems_in(browser.events, page_url) + _chart_problems(probe, expect)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, help="the report to open")
    parser.add_argument("--screenshot", type=Path, help="write a full-page PNG here")
    parser.add_argument("--expect-charts", type=int, help="fail unless exactly this many")
    parser.add_argument("--from-json", type=Path, help="render this report JSON to HTML first")
    args = parser.parse_args()
    binary = os.environ.get("CHROMIUM") or next(
        (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
    )
    if binary is None:
        print("check_demo_html: no chromium binary (apt-get install chromium)", file=sys.stderr)
        return 2
    if args.from_json is not None:
        from veneer.demo._html import render_html

        args.html.write_text(render_html(json.loads(args.from_json.read_text())))
    problems = check(args.html, args.screenshot, args.expect_charts, binary)
    for p in problems:
        print(f"check_demo_html: {p}", file=sys.stderr)
    if not problems:
        shot = f", screenshot {args.screenshot}" if args.screenshot else ""
        print(f"check_demo_html: {args.html} rendered cleanly{shot}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
