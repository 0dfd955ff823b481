"""The SQLAlchemy session event order the invalidator relies on, pinned against the installed
SQLAlchemy (docs/integrations.md describes it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

Scenario = Callable[[Session], None]


def record(engine: sa.Engine, scenario: Scenario) -> list[str]:
    """Run ``scenario`` on a fresh session and return its events as ``event:transaction``
    (R for the outermost transaction, S1, S2... for savepoints in creation order)."""
    maker = sessionmaker(engine)
    names: dict[SessionTransaction, str] = {}  # holds them: no id reuse
    log: list[str] = []

    def name(trans: SessionTransaction | None) -> str:
        if trans is None:
            return "-"
        if trans not in names:
            savepoints = sum(1 for n in names.values() if n != "R")
            names[trans] = "R" if trans.parent is None else f"S{savepoints + 1}"
        return names[trans]

    def current(session: Session) -> str:
        return name(session.get_nested_transaction() or session.get_transaction())

    event.listen(maker, "after_transaction_create", lambda s, t: log.append(f"create:{name(t)}"))
    event.listen(maker, "before_commit", lambda s: log.append(f"before_commit:{current(s)}"))
    event.listen(maker, "after_commit", lambda s: log.append(f"after_commit:{current(s)}"))
    event.listen(maker, "after_rollback", lambda s: log.append(f"after_rollback:{current(s)}"))
    event.listen(maker, "after_transaction_end", lambda s, t: log.append(f"end:{name(t)}"))
    event.listen(maker, "after_soft_rollback", lambda s, t: log.append(f"soft_rollback:{name(t)}"))
    with maker() as session:
        session.execute(sa.text("SELECT 1"))
        scenario(session)
    return log


def _savepoints(session: Session) -> None:
    released = session.begin_nested()
    released.commit()
    rolled_back = session.begin_nested()
    rolled_back.rollback()
    session.commit()


def _begin_block_with_open_savepoint(session: Session) -> None:
    session.commit()
    with session.begin():
        session.begin_nested()


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        pytest.param(
            lambda s: s.commit(),
            ["create:R", "before_commit:R", "after_commit:R", "end:R"],
            id="commit",
        ),
        pytest.param(
            lambda s: s.rollback(),
            ["create:R", "after_rollback:R", "end:R", "soft_rollback:R"],
            id="rollback",
        ),
        pytest.param(lambda s: None, ["create:R", "end:R"], id="close-without-commit"),
        pytest.param(
            _savepoints,
            [
                "create:R",
                "create:S1",
                # A savepoint release fires before_commit/after_commit too.
                "before_commit:S1",
                "after_commit:S1",
                "end:S1",
                "create:S2",
                "after_rollback:S2",
                "end:S2",
                "soft_rollback:S2",
                "before_commit:R",
                "after_commit:R",
                "end:R",
            ],
            id="savepoints",
        ),
        pytest.param(
            # Session.commit() with a savepoint still open commits from the innermost out:
            # the savepoint is released first, then the root commits as usual.
            lambda s: (s.begin_nested(), s.commit()),
            [
                "create:R",
                "create:S1",
                "before_commit:S1",
                "after_commit:S1",
                "end:S1",
                "before_commit:R",
                "after_commit:R",
                "end:R",
            ],
            id="session-commit-with-open-savepoint",
        ),
        pytest.param(
            # A `with session.begin():` block left with a savepoint open commits the root
            # transaction object itself: the root's before_commit fires while the savepoint
            # is still the current transaction, then the savepoint is released.
            _begin_block_with_open_savepoint,
            [
                "create:R",
                "before_commit:R",
                "after_commit:R",
                "end:R",
                "create:R",
                "create:S1",
                "before_commit:S1",  # the root's, seen from inside the savepoint
                "before_commit:S1",
                "after_commit:S1",
                "end:S1",
                "after_commit:R",
                "end:R",
            ],
            id="begin-block-with-open-savepoint",
        ),
    ],
)
def test_session_event_order(pg_engine: sa.Engine, scenario: Scenario, expected: list[str]) -> None:
    """Commit, rollback, close and savepoints fire the events in the order the invalidator
    assumes: after_commit names the committing transaction and precedes its end; a rollback's
    end comes before after_soft_rollback; a close without commit fires only the end."""
    assert record(pg_engine, scenario) == expected
