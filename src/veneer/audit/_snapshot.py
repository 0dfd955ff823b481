"""Read a node's server facts: INFO, CONFIG, SLOWLOG, ACL and two CPU readings.

Every command here is O(1) or bounded by a server setting (the slow log length,
the number of ACL users) and each one may be refused on a managed service
(renamed or NOPERM): the refusal is recorded as a blind spot, never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from ._target import Node
from ._throttle import Throttle
from ._wire import command

__all__ = ["CpuReading", "NodeSnapshot", "SlowEntry", "measure_cpu", "take_snapshot"]

# Enough to digest any realistic slow log; larger configured logs are read partially.
MAX_SLOWLOG_READ = 1024


@dataclass(frozen=True, slots=True)
class SlowEntry:
    """One slow log entry; Redis truncates arguments (32 of them, 128 bytes each)."""

    id: int
    started_at: int
    duration_us: int
    args: tuple[bytes, ...]
    client: str = ""

    @property
    def command(self) -> str:
        return self.args[0].decode("utf-8", "replace").upper() if self.args else "?"


@dataclass(frozen=True, slots=True)
class CpuReading:
    """Main-thread CPU over a measured window, as a share of one core."""

    window_s: float
    main_thread_share: float
    process_share: float
    per_thread: bool  # False when the server predates used_cpu_*_main_thread


@dataclass(slots=True)
class NodeSnapshot:
    """What one node told the audit; ``None`` fields were refused by the server."""

    address: str
    info: dict[str, Any] = field(default_factory=dict)
    config: dict[str, str] | None = None
    slowlog: list[SlowEntry] | None = None
    slowlog_len: int | None = None
    acl: list[str] | None = None
    cpu: CpuReading | None = None
    blind_spots: list[str] = field(default_factory=list)
    error: str | None = None
    # When the first INFO was read, and its figures: the start of the CPU window.
    cpu_start: tuple[float, Mapping[str, Any]] | None = field(default=None, repr=False)

    def num(self, name: str, default: float | None = None) -> float | None:
        value = self.info.get(name, default)
        if isinstance(value, bool):
            return float(value)
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(str(value))
        except (TypeError, ValueError):
            return default

    def text(self, name: str, default: str = "") -> str:
        value = self.info.get(name)
        return default if value is None else str(value)

    def conf(self, name: str) -> str | None:
        return None if self.config is None else self.config.get(name)

    @property
    def role(self) -> str:
        return "replica" if self.text("role") == "slave" else "primary"

    @property
    def version(self) -> str:
        return self.text("valkey_version") or self.text("redis_version") or "unknown"

    def keyspace(self) -> dict[int, dict[str, int]]:
        """Keys and expires per db, from INFO keyspace."""
        out: dict[int, dict[str, int]] = {}
        for name, value in self.info.items():
            if name.startswith("db") and name[2:].isdigit() and isinstance(value, dict):
                out[int(name[2:])] = {k: int(v) for k, v in value.items()}
        return dict(sorted(out.items()))


def _refused(exc: redis.ResponseError) -> str:
    return str(exc).splitlines()[0][:200]


def take_snapshot(node: Node, throttle: Throttle) -> NodeSnapshot:
    """INFO, CONFIG, SLOWLOG and ACL of one node; errors become blind spots."""
    snap = NodeSnapshot(address=node.address)
    client = node.client(0)
    try:
        throttle.acquire(1)
        start = time.monotonic()
        snap.info = dict(client.info("all"))
        snap.cpu_start = (start, snap.info)
    except redis.ResponseError as exc:
        # INFO is never disabled in practice, but a locked-down ACL can refuse it.
        snap.blind_spots.append(f"INFO refused ({_refused(exc)}): server checks skipped")
        return snap
    except redis.RedisError as exc:
        snap.error = f"{type(exc).__name__}: {exc}"
        return snap

    try:
        throttle.acquire(1)
        snap.config = {str(k): str(v) for k, v in client.config_get("*").items()}
    except redis.ResponseError as exc:
        snap.blind_spots.append(
            f"CONFIG GET refused ({_refused(exc)}): save schedule, slow log threshold, "
            "output buffer limits, bind and TLS settings not visible"
        )

    try:
        throttle.acquire(2)
        length = int(command(client, "SLOWLOG", "LEN"))
        snap.slowlog_len = length
        # Sent as two words so redis-py leaves the reply raw and the arguments stay a list.
        raw = command(client, "SLOWLOG", "GET", max(1, min(length, MAX_SLOWLOG_READ)))
        snap.slowlog = [_slow_entry(e) for e in raw] if length else []
    except redis.ResponseError as exc:
        snap.blind_spots.append(f"SLOWLOG refused ({_refused(exc)}): slow log not digested")

    try:
        throttle.acquire(1)
        snap.acl = [_str(line) for line in command(client, "ACL", "LIST")]
    except redis.ResponseError as exc:
        snap.blind_spots.append(f"ACL LIST refused ({_refused(exc)}): users not checked")
    return snap


def _str(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _slow_entry(raw: list[Any]) -> SlowEntry:
    # Redis Enterprise inserts a complexity field before the arguments.
    args_at = 3 if isinstance(raw[3], list) else 4
    args = tuple(a if isinstance(a, bytes) else str(a).encode() for a in raw[args_at])
    client = _str(raw[args_at + 1]) if len(raw) > args_at + 1 else ""
    return SlowEntry(
        id=int(raw[0]),
        started_at=int(raw[1]),
        duration_us=int(raw[2]),
        args=args,
        client=client,
    )


def _cpu_seconds(info: Mapping[str, Any], main: bool) -> float | None:
    suffix = "_main_thread" if main else ""
    sys_, user = info.get(f"used_cpu_sys{suffix}"), info.get(f"used_cpu_user{suffix}")
    if sys_ is None or user is None:
        return None
    return float(sys_) + float(user)


def measure_cpu(node: Node, snap: NodeSnapshot, throttle: Throttle) -> None:
    """Second ``INFO cpu`` reading; the first came with the snapshot."""
    if snap.cpu_start is None or snap.error:
        return
    start, first = snap.cpu_start
    try:
        throttle.acquire(1)
        second = node.client(0).info("cpu")
    except redis.RedisError as exc:
        snap.blind_spots.append(f"second INFO cpu failed ({exc}): CPU not measured")
        return
    window = time.monotonic() - start
    if window <= 0:
        return
    main0, main1 = _cpu_seconds(first, True), _cpu_seconds(second, True)
    proc0, proc1 = _cpu_seconds(first, False), _cpu_seconds(second, False)
    if proc0 is None or proc1 is None:
        snap.blind_spots.append("INFO cpu has no used_cpu_*: CPU not measured")
        return
    if main0 is not None and main1 is not None:
        per_thread, main_share = True, (main1 - main0) / window
    else:
        # Before Redis 6.2 only the whole process is measured; background threads
        # (lazy free, I/O threads) then inflate the figure.
        per_thread, main_share = False, (proc1 - proc0) / window
    snap.cpu = CpuReading(
        window_s=round(window, 3),
        main_thread_share=round(max(0.0, main_share), 4),
        process_share=round(max(0.0, (proc1 - proc0) / window), 4),
        per_thread=per_thread,
    )
