"""The consistency checker's short mode (``benchmarks/consistency.py --short``): through
every fault, no read of any invalidation mode is staler than docs/consistency.md says,
and a naive cache-aside control on the same timeline is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import consistency

VENEER_MODES = ("hook", "outbox", "trigger")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One bounded run per fault (about 55 s in all), judged offline."""
    out = tmp_path_factory.mktemp("consistency")
    results = consistency.check_all(list(consistency.FAULTS), consistency.SHORT, out)
    return {result.fault: result for result in results}


@pytest.mark.parametrize("fault", consistency.FAULTS)
def test_no_read_beyond_the_documented_bound(runs: dict[str, Any], fault: str) -> None:
    """Every mode, with L1 on and off, commits and reads throughout the fault, and no
    read is staler than the bound docs/consistency.md states for it."""
    result = runs[fault]
    assert result.errors == []
    assert all(result.commits.get(mode, 0) > 20 for mode in consistency.MODES), result.commits
    cells = [c for c in result.cells if c.mode in VENEER_MODES]
    assert sorted((c.mode, c.l1) for c in cells) == sorted(
        (mode, l1) for mode in VENEER_MODES for l1 in (True, False)
    )
    assert all(c.reads > 200 for c in cells), [(c.mode, c.l1, c.reads) for c in cells]
    beyond = [c for c in cells if c.beyond]
    assert beyond == [], consistency.table([result])


def test_naive_cache_aside_exceeds_the_bound(runs: dict[str, Any]) -> None:
    """The control: a naive reader stopped between its SELECT and its SET writes the old
    row over the writer's DEL, and then reads it back, beyond the bound veneer holds."""
    naive = next(c for c in runs["reader-stop"].cells if c.mode == "naive")
    assert naive.beyond >= 1, consistency.table([runs["reader-stop"]])
    stopped_fill = [c for c in runs["reader-stop"].cells if c.mode == "hook"]
    assert all(c.beyond == 0 for c in stopped_fill)  # the same race, through veneer


def test_veneer_verify_sees_what_redis_holds(runs: dict[str, Any]) -> None:
    """``veneer verify`` ran during every fault. While the listener is down, the trigger
    mode's entries in Redis go stale, and verify reports divergences that the commit log
    confirms."""
    assert all(run.verify for run in runs.values())
    gap = [s for s in runs["worker-kill"].verify if s.mode == "trigger"]
    diverged = sum(s.diverged for s in gap)
    assert diverged > 0
    assert sum(s.truly_stale for s in gap) >= diverged * 0.9
