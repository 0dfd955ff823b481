"""Digest slow logs: group entries by command and key pattern, classify the blocking ones.

Arguments other than the key are never kept: they may be user data. A log that
lost entries (it is a ring of ``slowlog-max-len``) is detected from its ids,
which Redis numbers without gaps from server start.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from ._patterns import fold_key
from ._snapshot import SlowEntry

__all__ = ["SlowGroup", "SlowlogGaps", "classify", "digest", "gaps"]

# Commands that walk the whole keyspace or the whole database.
KEYSPACE_WALKS = frozenset({"KEYS", "FLUSHALL", "FLUSHDB"})
# Commands that return or touch every element of a value.
FULL_READS = frozenset(
    {
        "HGETALL",
        "HKEYS",
        "HVALS",
        "SMEMBERS",
        "SUNION",
        "SINTER",
        "SDIFF",
        "SUNIONSTORE",
        "SINTERSTORE",
        "SDIFFSTORE",
        "ZUNIONSTORE",
        "ZINTERSTORE",
        "SORT",
        "SORT_RO",
    }
)
RANGE_READS = frozenset(
    {"LRANGE", "ZRANGE", "ZREVRANGE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "XRANGE", "XREVRANGE"}
)
SCRIPTS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
# Commands whose first argument is not a key.
_KEYLESS = frozenset(
    {
        "KEYS",
        "FLUSHALL",
        "FLUSHDB",
        "SCAN",
        "INFO",
        "CONFIG",
        "DEBUG",
        "SCRIPT",
        "FUNCTION",
        "CLIENT",
        "SLOWLOG",
        "MULTI",
        "EXEC",
        "SELECT",
        "PING",
        "DBSIZE",
        "BGSAVE",
        "SAVE",
        "BGREWRITEAOF",
        "LATENCY",
        "CLUSTER",
        "ACL",
        "COMMAND",
        "HELLO",
        "AUTH",
        "PUBLISH",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "WAIT",
        "RANDOMKEY",
        "SWAPDB",
        "MODULE",
        "SHUTDOWN",
        "REPLICAOF",
        "SLAVEOF",
        "MONITOR",
    }
)
_SUBCOMMAND_KEY = frozenset({"OBJECT", "MEMORY", "XINFO"})
_CONTAINERS = frozenset({"CONFIG", "SCRIPT", "FUNCTION", "CLIENT", "CLUSTER", "ACL", "DEBUG"})


def _word(arg: bytes) -> str:
    return arg.decode("utf-8", "replace").upper()


def label(entry: SlowEntry) -> str:
    """``CONFIG SET``, ``GET``...: the command, with its subcommand for containers."""
    cmd = entry.command
    if cmd in _CONTAINERS and len(entry.args) > 1:
        return f"{cmd} {_word(entry.args[1])}"
    return cmd


def key_of(entry: SlowEntry) -> bytes | None:
    cmd, args = entry.command, entry.args
    if cmd in SCRIPTS:
        try:
            numkeys = int(args[2])
        except (IndexError, ValueError):
            return None
        return args[3] if numkeys > 0 and len(args) > 3 else None
    if cmd in _SUBCOMMAND_KEY:
        return args[2] if len(args) > 2 else None
    if cmd in _KEYLESS or len(args) < 2:
        return None
    return args[1]


def classify(entry: SlowEntry) -> str:
    """``keyspace-walk``, ``full-read``, ``script`` or ``other``."""
    cmd, args = entry.command, entry.args
    if cmd in KEYSPACE_WALKS:
        return "keyspace-walk"
    if cmd in SCRIPTS:
        return "script"
    if cmd in FULL_READS:
        return "full-read"
    if cmd in RANGE_READS and len(args) >= 4:
        # LRANGE k 0 -1, ZRANGE k -inf +inf BYSCORE...: an open-ended range is a full read.
        lo, hi = args[2], args[3]
        if hi in (b"-1", b"+inf", b"+") or lo in (b"-inf", b"-"):
            return "full-read"
    return "other"


@dataclass(slots=True)
class SlowGroup:
    """Slow log entries of one command on one key pattern, possibly from several nodes."""

    command: str
    pattern: str | None
    kind: str
    count: int = 0
    total_us: int = 0
    max_us: int = 0
    nodes: set[str] = field(default_factory=set)
    keys: set[str] = field(default_factory=set)  # up to a few examples
    argument: str | None = None  # the KEYS pattern: not data, and it says what was walked

    def add(self, entry: SlowEntry, node: str) -> None:
        self.count += 1
        self.total_us += entry.duration_us
        self.max_us = max(self.max_us, entry.duration_us)
        self.nodes.add(node)
        key = key_of(entry)
        if key is not None and len(self.keys) < 5:
            self.keys.add(key.decode("utf-8", "backslashreplace"))
        if entry.command == "KEYS" and len(entry.args) > 1:
            self.argument = entry.args[1].decode("utf-8", "backslashreplace")

    def as_dict(self) -> dict[str, object]:
        return {
            "command": self.command,
            "pattern": self.pattern,
            "kind": self.kind,
            "count": self.count,
            "total_ms": round(self.total_us / 1000, 3),
            "max_ms": round(self.max_us / 1000, 3),
            "nodes": sorted(self.nodes),
        }


def digest(entries: Iterable[tuple[str, SlowEntry]]) -> list[SlowGroup]:
    """Group (node, entry) pairs; the costliest groups first."""
    groups: dict[tuple[str, str | None], SlowGroup] = {}
    for node, entry in entries:
        key = key_of(entry)
        pattern = fold_key(key) if key is not None else None
        name = label(entry)
        group = groups.get((name, pattern))
        if group is None:
            group = groups[(name, pattern)] = SlowGroup(name, pattern, classify(entry))
        group.add(entry, node)
    return sorted(groups.values(), key=lambda g: (-g.total_us, g.command, g.pattern or ""))


@dataclass(frozen=True, slots=True)
class SlowlogGaps:
    """Entries the log no longer holds: dropped by the ring (or a SLOWLOG RESET)."""

    lost: int
    full: bool
    oldest_id: int | None


def gaps(entries: list[SlowEntry], length: int, max_len: int | None) -> SlowlogGaps:
    """``entries`` are the newest of the ``length`` entries the log holds."""
    if not entries:
        return SlowlogGaps(lost=0, full=False, oldest_id=None)
    ids = sorted(e.id for e in entries)
    inner = sum(b - a - 1 for a, b in itertools.pairwise(ids) if b - a > 1)
    # Ids start at 0, so everything below the oldest id still held is gone
    # (entries held but not read are not lost).
    unread = max(0, length - len(entries))
    lost = max(0, ids[0] - unread) + inner
    full = max_len is not None and length >= max_len
    return SlowlogGaps(lost=lost, full=full, oldest_id=ids[0])
