"""``veneer audit URL``: the command-line face of the audit.

Exit codes: 0 done, 1 a finding at or above ``--fail-on``, 2 bad usage or URL,
3 no server answered, 130 interrupted (the partial report is still printed).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from .._errors import ConfigurationError
from .._url import parse_target
from ._model import Severity
from ._render_html import render_html
from ._render_text import render_text
from ._runner import AuditError, AuditOptions, run_audit

__all__ = ["audit"]

EXIT_FINDINGS = 1
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class _BarProgress:
    """A rich progress bar on stderr, for terminals."""

    def __init__(self, console: Console) -> None:
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> _BarProgress:
        self._bar.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.stop()

    def phase(self, name: str, total: int | None = None) -> None:
        if self._task is not None:
            self._bar.update(self._task, visible=False)
        self._task = self._bar.add_task(name, total=total)

    def advance(self, done: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done)


class _LineProgress:
    """One line per phase on stderr, for logs and CI (no bar redraws)."""

    def __enter__(self) -> _LineProgress:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass

    def phase(self, name: str, total: int | None = None) -> None:
        suffix = f" ({total:,})" if total else ""
        click.echo(f"veneer audit: {name}{suffix}", err=True)

    def advance(self, done: int) -> None:
        pass


@click.command("audit")
@click.argument("url", envvar="VENEER_AUDIT_URL")
@click.option(
    "--sample",
    type=click.IntRange(min=0),
    default=100_000,
    show_default=True,
    help="Most keys to read over the whole target; 0 reads every key.",
)
@click.option(
    "--budget",
    type=click.FloatRange(min=1, min_open=False),
    default=5_000.0,
    show_default=True,
    help="Commands per second the audit may send, all nodes together.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a self-contained HTML report with charts to this file.",
)
@click.option(
    "--fail-on",
    type=click.Choice([s.value for s in Severity if s is not Severity.INFO]),
    help="Exit with status 1 when a finding at or above this severity exists (for CI).",
)
@click.option("--replicas", is_flag=True, help="On a cluster or sentinel, read keys from replicas.")
@click.option(
    "--cpu-window",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between the two INFO cpu readings.",
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
def audit(
    url: str,
    sample: int,
    budget: float,
    fmt: str,
    html_path: Path | None,
    fail_on: str | None,
    replicas: bool,
    cpu_window: float,
    timeout: float,
    top: int,
) -> None:
    """Show where a live Redis (or cluster) has become a second database.

    URL is redis://, rediss://, unix://, redis+cluster://host:port[,host:port...]
    or redis+sentinel://host:port[,...]/service (or the VENEER_AUDIT_URL
    environment variable, which keeps a password out of the process list).
    The audit is read-only and paced: SCAN with a bounded COUNT, O(1) commands
    per key, at most --budget commands per second, slower when Redis slows down.
    """
    if html_path is not None:
        folder = html_path.resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise click.BadParameter(
                f"cannot write {html_path}: {folder} is not a writable directory "
                "(checked before the audit runs)",
                param_hint="--html",
            )
    try:
        target = parse_target(url)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    if target.db:
        click.echo(
            f"veneer audit: the audit covers every database of the server; the /{target.db} "
            "in the URL does not narrow it",
            err=True,
        )
    options = AuditOptions(
        sample=sample or None,
        budget=budget,
        replicas=replicas,
        cpu_window=cpu_window,
        timeout=timeout,
        top=top,
    )
    err = Console(stderr=True)
    progress = _BarProgress(err) if err.is_terminal else _LineProgress()
    try:
        with progress:
            report = run_audit(url, options, progress=progress)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="URL") from None
    except AuditError as exc:
        click.echo(f"veneer audit: {exc}", err=True)
        sys.exit(EXIT_UNREACHABLE)

    if fmt == "json":
        click.echo(report.to_json().decode())
    else:
        out = Console()
        if not out.is_terminal:
            out = Console(width=140)
        render_text(report, out)
    if html_path is not None:
        html_path.write_text(render_html(report), encoding="utf-8")
        click.echo(f"veneer audit: HTML report written to {html_path}", err=True)
    if report.sampling.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if fail_on is not None and report.fails(Severity.parse(fail_on)):
        sys.exit(EXIT_FINDINGS)
