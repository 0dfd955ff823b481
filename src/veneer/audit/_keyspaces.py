"""Recognise the keyspaces of job queues and session stores, as their documentation lays them out.

Two steps. While sampling, ``layout_glob`` gives a few keys a documented glob
instead of their folded pattern, where folding would lose what they are (a
``celery-task-meta-<uuid>`` key folds to ``*``). After sampling, ``recognise``
looks at each db's patterns: a tool is recognised by its signature (keys only
it writes, or a combination of them), then its patterns are claimed. Pure: no I/O.

Layouts (default names; a renamed prefix or namespace is not recognised):

- Celery with the Redis broker (kombu): ``_kombu.binding.<queue>`` sets, a list per
  queue (``celery`` by default), ``unacked`` / ``unacked_index`` /
  ``unacked_mutex``; results ``celery-task-meta-<id>``, ``celery-taskset-meta-<id>``.
- RQ: ``rq:queue:<name>`` lists, ``rq:job:<id>`` hashes, registries
  ``rq:wip|started|scheduled|deferred|finished|failed|canceled:<queue>``,
  ``rq:results:<id>`` streams, ``rq:queues``, ``rq:workers``, ``rq:worker:<name>``.
- BullMQ (and Bull): ``<prefix>:<queue>:wait|active|paused|prioritized|delayed|
  completed|failed|meta|id|events|marker|stalled-check|...`` and a hash per job
  ``<prefix>:<queue>:<id>``; ``<prefix>`` is ``bull`` (or ``{bull}`` on a cluster).
- Sidekiq: ``queues`` (set), ``queue:<name>`` lists, ``schedule`` / ``retry`` /
  ``dead`` sorted sets, ``processes``, ``stat:processed`` / ``stat:failed[:<date>]``.
- Dramatiq (Redis broker): ``dramatiq:<queue>`` lists of ids,
  ``dramatiq:<queue>.msgs`` hashes of messages, ``.DQ`` delayed, ``.XQ`` dead
  letters, ``dramatiq:__acks__.*``, ``dramatiq:__heartbeats__``.
- arq: ``arq:queue`` (sorted set), ``arq:job:<id>``, ``arq:result:<id>``,
  ``arq:in-progress:<id>``, ``arq:retry:<id>``.
- Sessions: Django's cache engine (``<prefix>:<version>:django.contrib.sessions.cache<key>``;
  ``cached_db`` is the database's copy, not reported), Flask-Session
  (``session:<sid>``), express-session with connect-redis (``sess:<sid>``), Rails
  (``_session_id:<id>``, rack's ``rack:session:<id>``).

veneer's own keys are never claimed: each of them carries a hash tag that starts
with its namespace (``{ns:...}``, ``ns:tag:{ns:...}``), whatever the namespace is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ._model import PrefixReport

__all__ = [
    "TOOLS",
    "KeyspaceMatch",
    "Kind",
    "Layout",
    "Tool",
    "is_veneer_pattern",
    "layout_glob",
    "recognise",
]

Kind = Literal["job-queue", "session-store"]

_VENEER = re.compile(r"^\{[A-Za-z0-9_.-]{1,64}:|^[A-Za-z0-9_.-]{1,64}:[a-z]+:\{")


def is_veneer_pattern(pattern: str) -> bool:
    """True for the key layout veneer itself writes (every key has a namespaced hash tag)."""
    return bool(_VENEER.match(pattern))


# Keys whose folded pattern would hide their layout, rewritten to a documented glob
# that matches them (so the report's "every pattern matches its keys" holds).
_GLOBS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^celery-task-meta-"), "celery-task-meta-*"),
    (re.compile(r"^celery-taskset-meta-"), "celery-taskset-meta-*"),
    (re.compile(r"^chord-unlock-"), "chord-unlock-*"),
    (re.compile(r"django\.contrib\.sessions\.cached_db"), "*django.contrib.sessions.cached_db*"),
    (re.compile(r"django\.contrib\.sessions\.cache"), "*django.contrib.sessions.cache*"),
)


def layout_glob(key: bytes) -> str | None:
    """A documented glob for ``key`` when folding would hide its layout, else None."""
    if key[:1] == b"{":
        return None
    text = key.decode("utf-8", "replace")
    for regex, glob in _GLOBS:
        if regex.search(text):
            return glob
    return None


@dataclass(frozen=True, slots=True)
class Layout:
    """One documented kind of key of a tool; ``risky`` ones hold jobs, results or sessions."""

    role: str
    regex: re.Pattern[str]
    risky: bool = True
    loss: str = "a lost key is a job that never runs"


@dataclass(frozen=True, slots=True)
class Tool:
    """A job queue or session store, how to recognise it, and what replaces it."""

    name: str
    kind: Kind
    signature: tuple[re.Pattern[str], ...]
    layouts: tuple[Layout, ...]
    replacement: str
    docs: str


@dataclass(frozen=True, slots=True)
class KeyspaceMatch:
    """A sampled pattern recognised as one layout of one tool."""

    prefix: PrefixReport
    tool: Tool
    layout: Layout


def _re(text: str) -> re.Pattern[str]:
    return re.compile(text)


_RESULT = "a lost key is a result its caller never gets"
_HISTORY = "a lost key is a failed job nobody can inspect or retry"
_SESSION = "a lost key logs a user out"

_PG_QUEUE_PY = (
    "a PostgreSQL-backed queue that enqueues in the same transaction as the data "
    "(Procrastinate or PgQueuer)"
)

TOOLS: tuple[Tool, ...] = (
    Tool(
        name="Celery (kombu Redis broker)",
        kind="job-queue",
        signature=(_re(r"^_kombu\.binding\."), _re(r"^unacked(_index)?$"),
                   _re(r"^celery-task(set)?-meta-\*$")),
        layouts=(
            Layout("queue bindings", _re(r"^_kombu\.binding\."), risky=False),
            Layout("queue", _re(r"^celery$")),
            Layout("unacknowledged jobs", _re(r"^unacked$")),
            Layout("unacknowledged jobs index", _re(r"^unacked_(index|mutex)$"), risky=False),
            Layout("task results", _re(r"^celery-task(set)?-meta-\*$"), loss=_RESULT),
            Layout("chord state", _re(r"^chord-unlock-\*$"), risky=False),
        ),
        replacement=f"{_PG_QUEUE_PY}; results in your own tables or Celery's database "
        "result backend (result_backend = 'db+postgresql://...')",
        docs="https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html",
    ),
    Tool(
        name="RQ",
        kind="job-queue",
        signature=(_re(r"^rq:(queue|job|queues|workers?|wip|finished|failed|results)(:|$)"),),
        layouts=(
            Layout("queue", _re(r"^rq:queue:")),
            Layout("jobs", _re(r"^rq:job:[^:]+$")),
            Layout("job dependencies", _re(r"^rq:job:.+:dependents$"), risky=False),
            Layout("running and scheduled jobs", _re(r"^rq:(wip|started|scheduled|deferred)(:|$)")),
            Layout("job history (failed jobs)", _re(r"^rq:(finished|failed|canceled)(:|$)"),
                   loss=_HISTORY),
            Layout("results", _re(r"^rq:results:"), loss=_RESULT),
            Layout("workers", _re(r"^rq:(queues|workers?|clean_registries|scheduler|pubsub)"),
                   risky=False),
        ),
        replacement=_PG_QUEUE_PY,
        docs="https://python-rq.org/docs/",
    ),
    Tool(
        name="BullMQ",
        kind="job-queue",
        # Checked per queue in _bullmq_bases: a meta hash or id counter beside a state list.
        signature=(),
        layouts=(
            Layout("queue", _re(r":(wait|active|paused|prioritized|delayed|waiting-children)$")),
            Layout("job history (failed jobs)", _re(r":(completed|failed)$"), loss=_HISTORY),
            Layout("job logs", _re(r":\*:logs$"), risky=False),
            Layout("jobs", _re(r":\*$")),
            Layout("queue state", _re(r":(meta|id|events|marker|stalled-check|stalled|limiter|"
                                      r"repeat|pc|de|metrics)(:|$)"), risky=False),
        ),
        replacement="a PostgreSQL-backed queue (pg-boss or graphile-worker for Node.js), "
        "enqueued in the transaction that writes the data",
        docs="https://docs.bullmq.io/guide/architecture",
    ),
    Tool(
        name="Sidekiq",
        kind="job-queue",
        signature=(),  # checked in _sidekiq: `queues` with `queue:*`, or `stat:processed`
        layouts=(
            Layout("queue", _re(r"^queue:")),
            Layout("scheduled jobs", _re(r"^schedule$")),
            Layout("retries", _re(r"^retry$")),
            Layout("dead jobs", _re(r"^dead$"), loss=_HISTORY),
            Layout("job statistics", _re(r"^stat:(processed|failed)(:|$)"),
                   loss="a lost key resets the counts"),
            Layout("processes", _re(r"^(queues|processes)$|:work$"), risky=False),
        ),
        replacement="a database-backed queue (Solid Queue or GoodJob on PostgreSQL); "
        "counters kept in the database (veneer.counters) for the statistics",
        docs="https://github.com/sidekiq/sidekiq/wiki/Using-Redis",
    ),
    Tool(
        name="Dramatiq (Redis broker)",
        kind="job-queue",
        signature=(_re(r"^dramatiq:"),),
        layouts=(
            Layout("messages", _re(r"^dramatiq:[^:]+\.msgs$")),
            Layout("dead letters", _re(r"^dramatiq:[^:]+\.XQ$"), loss=_HISTORY),
            Layout("queue", _re(r"^dramatiq:[^:_][^:]*$")),
            Layout("acknowledgements", _re(r"^dramatiq:__(acks|heartbeats)__"), risky=False),
        ),
        replacement=_PG_QUEUE_PY,
        docs="https://dramatiq.io/reference.html#dramatiq.brokers.redis.RedisBroker",
    ),
    Tool(
        name="arq",
        kind="job-queue",
        signature=(_re(r"^arq:(queue|job|result|in-progress|retry)(:|$)"),),
        layouts=(
            Layout("queue state", _re(r"^arq:(queue:health-check|abort|in-progress:|retry:)"),
                   risky=False),
            Layout("queue", _re(r"^arq:queue$")),
            Layout("jobs", _re(r"^arq:job:")),
            Layout("results", _re(r"^arq:result:"), loss=_RESULT),
        ),
        replacement=_PG_QUEUE_PY + ", both asyncio like arq",
        docs="https://arq-docs.helpmanual.io/",
    ),
    Tool(
        name="Django sessions (cache engine)",
        kind="session-store",
        signature=(_re(r"django\.contrib\.sessions\.cache\*"),),
        layouts=(Layout("sessions", _re(r"django\.contrib\.sessions\.cache\*"), loss=_SESSION),),
        replacement="veneer.integrations.django.sessions (rows in Django's database, read "
        "through veneer's cache), or Django's cached_db engine",
        docs="https://docs.djangoproject.com/en/stable/topics/http/sessions/",
    ),
    Tool(
        name="Flask-Session",
        kind="session-store",
        signature=(_re(r"^session:"),),
        layouts=(Layout("sessions", _re(r"^session:"), loss=_SESSION),),
        replacement="veneer.sessions (sessions in the database, read through the cache, with "
        "ASGI middleware), or Flask-Session's SQLAlchemy backend",
        docs="https://flask-session.readthedocs.io/en/latest/config.html",
    ),
    Tool(
        name="express-session (connect-redis)",
        kind="session-store",
        signature=(_re(r"^sess:"),),
        layouts=(Layout("sessions", _re(r"^sess:"), loss=_SESSION),),
        replacement="a session store in the application's database (connect-pg-simple for "
        "PostgreSQL), with Redis at most as a cache in front of it",
        docs="https://github.com/tj/connect-redis",
    ),
    Tool(
        name="Rails sessions",
        kind="session-store",
        signature=(_re(r"^(_session_id|rack:session):"),),
        layouts=(Layout("sessions", _re(r"^(_session_id|rack:session):")),),
        replacement="ActiveRecord::SessionStore (activerecord-session_store) in the "
        "application's database, or cookie sessions",
        docs="https://github.com/roidrage/redis-session-store",
    ),
)  # fmt: skip

_BULL_STATE = re.compile(
    r"^(?P<base>.+):(wait|active|paused|prioritized|delayed|completed|failed|events|marker)$"
)
_BULL_META = re.compile(r"^(?P<base>.+):(meta|id)$")


def _bullmq_bases(patterns: Iterable[str]) -> set[str]:
    """Queue bases (``bull:emails``) with both a state list and a meta hash or id counter."""
    states, metas = set(), set()
    for p in patterns:
        if m := _BULL_STATE.match(p):
            states.add(m["base"])
        if m := _BULL_META.match(p):
            metas.add(m["base"])
    return {b for b in states & metas if b.count(":") == 1}


def _sidekiq(patterns: set[str], types: dict[str, dict[str, int]]) -> bool:
    with_queue = "queues" in patterns and any(
        p.startswith("queue:") and "list" in types.get(p, {}) for p in patterns
    )
    return with_queue or "stat:processed" in patterns


def _celery_queues(patterns: set[str]) -> set[str]:
    """Queue lists named by the kombu bindings (``_kombu.binding.<queue>``)."""
    out = set()
    for p in patterns:
        if p.startswith("_kombu.binding."):
            name = p.removeprefix("_kombu.binding.")
            if not name.endswith(".pidbox") and name not in {"celeryev", "*"}:
                out.add(name)
    return out


def recognise(prefixes: Iterable[PrefixReport]) -> list[KeyspaceMatch]:
    """Every sampled pattern that belongs to a recognised job queue or session store."""
    by_db: dict[int, list[PrefixReport]] = {}
    for p in prefixes:
        if not is_veneer_pattern(p.pattern):
            by_db.setdefault(p.db, []).append(p)
    out: list[KeyspaceMatch] = []
    for reports in by_db.values():
        patterns = {p.pattern for p in reports}
        types = {p.pattern: p.types for p in reports}
        bull = _bullmq_bases(patterns)
        present: set[str] = set()
        for tool in TOOLS:
            if tool.name == "BullMQ":
                found = bool(bull)
            elif tool.name == "Sidekiq":
                found = _sidekiq(patterns, types)
            else:
                found = any(sig.search(p) for sig in tool.signature for p in patterns)
            if found:
                present.add(tool.name)
        queues = _celery_queues(patterns)
        for p in reports:
            match = _claim(p, present, bull, queues)
            if match is not None:
                out.append(match)
    return out


def _claim(
    p: PrefixReport, present: set[str], bull: set[str], celery_queues: set[str]
) -> KeyspaceMatch | None:
    for tool in TOOLS:  # in catalogue order, so that a claim never depends on set order
        name = tool.name
        if name not in present:
            continue
        subject = p.pattern
        if name == "BullMQ":
            base = next((b for b in bull if subject.startswith(b + ":")), None)
            if base is None:
                continue
            subject = subject[len(base) :]
        if name.startswith("Celery") and subject in celery_queues and "list" in p.types:
            return KeyspaceMatch(p, tool, tool.layouts[1])
        for layout in tool.layouts:
            if layout.regex.search(subject):
                return KeyspaceMatch(p, tool, layout)
    return None
