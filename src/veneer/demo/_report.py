"""The report: one dict (docs/demo.md, schema version 1) for JSON and HTML, and the
side-by-side table for the terminal."""

from __future__ import annotations

import copy
from typing import Any

from rich.console import Console
from rich.table import Table

from ._naive import NAIVE_SOCKET_TIMEOUT
from ._schema import METRICS, STACK_LABELS

__all__ = ["METRICS", "build_report", "render_table"]

_EXTRA = (
    "product_loads",
    "products_read",
    "max_loads_per_product",
    "loads_after_restart",
    "products_read_after_restart",
    "max_loads_after_restart",
    "db_queries",
    "error_kinds",
)


def _stack_figures(raw: dict[str, Any] | None, seconds: float, net: int | None) -> dict[str, Any]:
    raw = raw or {}
    queries = raw.get("db_queries")
    out: dict[str, Any] = {
        "requests": raw.get("requests", 0),
        "errors": raw.get("errors"),
        "p50_ms": raw.get("p50_ms"),
        "p99_ms": raw.get("p99_ms"),
        "db_qps": None if queries is None or seconds <= 0 else round(queries / seconds, 1),
        "logged_out": raw.get("logged_out"),
        "counts_lost": raw.get("counts_lost"),
        "stale_reads": raw.get("stale_reads"),
        "wrong_flags": raw.get("wrong_flags"),
        "net_bytes": net,
    }
    for key in _EXTRA:
        if key in raw:
            out[key] = raw[key]
    return out


def _n(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if isinstance(v, float) else f"{v:,}"


def _story(name: str, naive: dict[str, Any], veneer: dict[str, Any], skipped: str | None) -> str:
    if skipped:
        return f"Skipped: {skipped}."
    if name == "steady":
        if (veneer["p50_ms"] or 0) > (naive["p50_ms"] or 0):
            why = (
                "veneer's p50 is the view counter's database commit (exact counters: an "
                "acknowledged view is committed)"
            )
        else:
            why = "veneer answers reads from its in-process tier"
        return (
            f"Same shop, same load, nothing wrong yet: p50 {_ms(naive['p50_ms'])} naive, "
            f"{_ms(veneer['p50_ms'])} veneer; {why}, hence its "
            f"{_n(veneer['db_qps'])} database queries/s against {_n(naive['db_qps'])}."
        )
    if name == "blocking":
        return (
            f"Redis runs one command at a time, so every call of both stacks queues behind "
            f"KEYS * and the full LRANGE: naive waits as long as they run (p99 "
            f"{_ms(naive['p99_ms'])}, {_n(naive['errors'])} errors past its "
            f"{NAIVE_SOCKET_TIMEOUT:g} s timeout); veneer's calls give up after 100 ms and "
            f"fall back to memory and the database (p99 {_ms(veneer['p99_ms'])}, "
            f"{_n(veneer['errors'])} errors)."
        )
    if name == "hang":
        return (
            f"Redis stopped answering: each naive call waited {NAIVE_SOCKET_TIMEOUT:g} s, "
            f"retried once and failed ({_n(naive['errors'])} errors); veneer gave up on Redis "
            f"after 100 ms and served from memory and the database "
            f"({_n(veneer['errors'])} errors)."
        )
    if name == "restart":
        loads, read = veneer.get("loads_after_restart"), veneer.get("products_read_after_restart")
        if loads is not None and read is not None and loads <= read:
            refill = f"loaded each product at most once ({_n(loads)} loads for {_n(read)})"
        else:
            refill = f"made {_n(loads)} product loads for {_n(read)} products"
        return (
            f"Redis came back empty: the naive shop lost what only Redis held "
            f"({_n(naive['logged_out'])} users logged out, {_n(naive['counts_lost'])} views "
            f"lost, the feature flag gone: {_n(naive['wrong_flags'])} wrong answers, and "
            f"from here on); veneer {_lost(veneer)} and {refill}."
        )
    if name == "eviction":
        return (
            f"Redis evicted keys to fit maxmemory: for the naive shop they were sessions and "
            f"counters ({_n(naive['logged_out'])} users logged out, "
            f"{_n(naive['counts_lost'])} views lost); for veneer only cached copies, reloaded "
            f"from the database ({_n(veneer['logged_out'])} logged out, "
            f"{_n(veneer['counts_lost'])} lost)."
        )
    if name == "write_race":
        return (
            f"A price change committed while a reader was filling the cache: the naive "
            f"reader's SET put the old page back after the KEYS-pattern delete "
            f"({_n(naive['stale_reads'])} stale reads after commit); veneer invalidates after "
            f"the commit and the invalidation revokes the fill ({_n(veneer['stale_reads'])})."
        )
    if name == "large_payload":
        return (
            f"Every page shows a catalog of a few hundred KB: the naive shop fetches it from "
            f"Redis on every request ({_bytes(naive['net_bytes'])} over the network); veneer "
            f"keeps it in process, compressed in Redis ({_bytes(veneer['net_bytes'])})."
        )
    return ""


def _lost(f: dict[str, Any]) -> str:
    if not f["logged_out"] and not f["counts_lost"] and not f["wrong_flags"]:
        return "lost nothing"
    return (
        f"lost {_n(f['logged_out'])} sessions and {_n(f['counts_lost'])} views, and gave "
        f"{_n(f['wrong_flags'])} wrong flag answers"
    )


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f} ms" if v >= 10 else f"{v:.2f} ms"


def _bytes(v: int | None) -> str:
    if v is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if v >= size:
            return f"{v / size:,.1f} {unit}"
    return f"{v} B"


def build_report(
    run: dict[str, Any], *, duration: float, setup: dict[str, str], stacks: tuple[str, ...]
) -> dict[str, Any]:
    phases = []
    totals_raw: dict[str, dict[str, Any]] = {s: {} for s in stacks}
    for record in run["phases"]:
        name = record["name"]
        seconds = record["end_s"] - record["start_s"]
        per_stack = {}
        for stack in stacks:
            raw = None if record["skipped"] else run["results"][stack]["phases"].get(name)
            per_stack[stack] = _stack_figures(raw, seconds, record.get("net_bytes", {}).get(stack))
        phases.append(
            {
                "name": name,
                "title": record["title"],
                "start_s": record["start_s"],
                "end_s": record["end_s"],
                "skipped": record["skipped"],
                "story": _story(name, per_stack["naive"], per_stack["veneer"], record["skipped"]),
                "stacks": per_stack,
            }
        )
    run_seconds = sum(p["end_s"] - p["start_s"] for p in phases)
    for stack in stacks:
        agg: dict[str, Any] = {"requests": 0, "db_queries": 0, "product_loads": 0}
        counts = ("errors", "logged_out", "counts_lost", "stale_reads", "wrong_flags", "net_bytes")
        for key in counts:
            agg[key] = 0
        for p in phases:
            if p["skipped"]:
                continue
            f = p["stacks"][stack]
            for key in (*counts, "requests", "db_queries", "product_loads"):
                agg[key] += f.get(key) or 0
        agg["p50_ms"] = None  # percentiles do not add up: see each phase
        agg["p99_ms"] = max(
            (p["stacks"][stack]["p99_ms"] or 0 for p in phases if not p["skipped"]), default=None
        )
        agg["db_qps"] = round(agg["db_queries"] / run_seconds, 1) if run_seconds else None
        totals_raw[stack] = agg
    return {
        "version": 1,
        "duration_s": duration,
        "elapsed_s": run["elapsed_s"],
        "machine": run["machine"],
        "setup": setup,
        "stacks": list(stacks),
        "stack_labels": dict(STACK_LABELS),
        "metrics": copy.deepcopy(METRICS),
        "phases": phases,
        "totals": totals_raw,
        "timeline": {
            "interval_s": run.get("interval_s", 0.5),
            **{s: run["results"][s]["timeline"] for s in stacks},
        },
        "checks": {s: run["results"][s]["checks"] for s in stacks},
    }


def _cell(metric: dict[str, Any], value: Any) -> str:
    if value is None:
        return "-"
    unit = metric["unit"]
    if unit == "ms":
        return _ms(value)
    if unit == "bytes":
        return _bytes(value)
    if unit == "per_s":
        return f"{value:,.0f}"
    return f"{value:,}"


_SHORT = {
    "steady": "1 steady",
    "blocking": "2 KEYS *, LRANGE",
    "hang": "3 hung (SIGSTOP)",
    "restart": "4 killed, empty",
    "eviction": "5 eviction",
    "write_race": "6 write race",
    "large_payload": "7 large value",
}
_HEADERS = {
    "errors": "caller\nerrors",
    "db_qps": "db\nqueries/s",
    "logged_out": "users\nlogged out",
    "counts_lost": "counts\nlost",
    "stale_reads": "stale\nreads",
    "wrong_flags": "wrong\nflags",
    "net_bytes": "network\nbytes",
}


def render_table(report: dict[str, Any], console: Console) -> None:
    """Two rows per phase (naive above veneer), one column per figure; damage in red."""
    table = Table(
        title="veneer demo: the incidents of Redis-for-everything, naive against veneer",
        title_justify="left",
        caption=(
            "Each figure covers its phase only. Counts lost: views acknowledged to the caller "
            "but not in the store; stale reads: reads after a price change was committed "
            "that returned the old price; network bytes: in and out of that stack's Redis."
        ),
        caption_justify="left",
    )
    table.add_column("phase")
    table.add_column("stack")
    for metric in report["metrics"]:
        table.add_column(_HEADERS.get(metric["key"], metric["label"]), justify="right")
    damage = {"errors", "logged_out", "counts_lost", "stale_reads", "wrong_flags"}
    width = len(report["metrics"])
    for phase in report["phases"]:
        if phase["skipped"]:
            table.add_row(
                phase["title"], "[dim]skipped", f"[dim]{phase['skipped']}", *[""] * (width - 1)
            )
            table.add_section()
            continue
        for i, stack in enumerate(report["stacks"]):
            cells = []
            for metric in report["metrics"]:
                value = phase["stacks"][stack][metric["key"]]
                text = _cell(metric, value)
                if metric["key"] in damage and value:
                    text = f"[bold red]{text}"
                cells.append(text)
            table.add_row(_SHORT.get(phase["name"], phase["name"]) if i == 0 else "", stack, *cells)
        table.add_section()
    console.print(table)
    for phase in report["phases"]:
        console.print(f"[bold]{phase['name']}[/]: {phase['story']}")
