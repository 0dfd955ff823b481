"""The live view while the demo runs in a terminal: the phase, its progress, and each
stack's running figures for it."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

__all__ = ["LiveView"]

_FIGURES = (
    ("requests", "requests"),
    ("errors", "caller errors"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("db_queries", "database queries"),
    ("logged_out", "users logged out"),
    ("stale_reads", "stale reads"),
    ("wrong_flags", "wrong flag answers"),
)


class LiveView:
    def __init__(self, console: Console, plan: list[tuple[Any, float]]) -> None:
        self._console = console
        self._plan = plan
        self._live = Live(Text("starting the stacks..."), console=console, refresh_per_second=4)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.__exit__(et, e, tb)

    def update(self, state: dict[str, Any]) -> None:
        index = state["index"]
        total = len(self._plan)
        if index < 0:
            head = Text("warming up both stacks", style="bold")
            bar = ProgressBar(total=1, completed=0)
        else:
            seconds = state["phase_s"]
            done = seconds - state["phase_left_s"]
            head = Text.assemble(
                (f"phase {index + 1}/{total}: ", "bold"),
                (state["title"], "bold cyan"),
                f"  {done:.0f}/{seconds:.0f} s",
            )
            bar = ProgressBar(total=seconds, completed=done)
        table = Table(show_header=True, box=None, pad_edge=False)
        table.add_column("this phase so far")
        running = state.get("running", {})
        for stack in running:
            table.add_column(stack, justify="right")
        for key, label in _FIGURES:
            row = []
            for stack in running:
                value = running[stack].get(key)
                row.append("-" if value is None else f"{value:,}")
            table.add_row(label, *row)
        self._live.update(Group(head, bar, table))
