"""Run the doctor: a window of paced PINGs and INFO readings, then a payload ladder.

Order, and why:

1. ``INFO all`` (CPU, command stats, clients, ops counter at the window's start).
2. The window: ``pings`` PINGs spread evenly over ``window`` seconds, each followed by
   a PING to the loopback reference (so both see the same moments of the client
   host's load), and ``INFO stats`` at each quarter for the ops/s trend.
3. ``INFO all`` again: CPU, command costs and clients over the window. The doctor's
   load up to here is a few PINGs a second, so the CPU figure is the application's.
4. The payload ladder (ECHO replies of 100 B to 1 MiB, alone and in batches), on the
   target and then on the loopback reference; cut to a few round trips per size when
   the server is busy, so the doctor never adds to a saturated server's load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from .._errors import ConfigurationError, VeneerError
from .._throttle import Throttle
from .._url import Target, parse_target, scrub
from ..audit._target import open_shards
from ._advice import CPU_SHARD, advise
from ._figures import busy_share, command_costs, cpu_between, median, ops_series, rtt_report, trend
from ._model import DoctorReport, ServerLoad, SizeThroughput, TrafficReport
from ._probe import Probe

__all__ = ["DEFAULT_SIZES", "DoctorError", "DoctorOptions", "run_doctor"]

DEFAULT_SIZES = (100, 1_000, 10_000, 100_000, 1 << 20)
# Value bytes the ladder moves per size and mode (each travels twice: ECHO).
_LADDER_BYTES = 2 << 20
_MAX_BATCH = 10
_MIN_ROUNDS, _MAX_GET_ROUNDS, _MAX_MGET_ROUNDS = 3, 30, 10
# One size's share of the ladder's time, at most, once the minimum rounds are done.
_SIZE_SLICE_S = 1.0
# How much longer than ``window`` the PINGs may take when a slow server stretches them.
_WINDOW_STRETCH = 2.0
CLIENT_NAME = "veneer-doctor"


class DoctorError(VeneerError):
    """The doctor could not run at all (nothing answered); the message names the masked target."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorOptions:
    """How long the doctor looks and how hard it may push.

    ``budget``: commands per second to the target, every command counted (as the audit).
    ``bandwidth_mb_s``: payload MB (10^6 bytes) per second, both directions counted.
    ``window``: seconds over which CPU, ops/s and the PINGs are measured.
    ``pings``: PINGs in the window (to the target, and as many to the loopback reference).
    ``loopback``: measure the same probe against a private redis-server on this host;
    ``loopback_url`` uses an existing local server instead.
    """

    budget: float = 1_000.0
    bandwidth_mb_s: float = 25.0
    window: float = 5.0
    pings: int = 200
    sizes: tuple[int, ...] = DEFAULT_SIZES
    loopback: bool = True
    loopback_url: str | None = None
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.budget <= 0 or self.bandwidth_mb_s <= 0:
            raise ConfigurationError("budget and bandwidth must be positive")
        if self.window <= 0 or self.pings < 2:
            raise ConfigurationError("the window must be positive and hold at least 2 PINGs")
        if not self.sizes or any(s < 1 or s > 64 << 20 for s in self.sizes):
            raise ConfigurationError("payload sizes must be between 1 byte and 64 MiB")


def _rounds(size: int) -> tuple[int, int, int]:
    """(GET rounds, MGET batch, MGET rounds) for one payload size."""
    batch = max(1, min(_MAX_BATCH, _LADDER_BYTES // size))
    gets = max(_MIN_ROUNDS, min(_MAX_GET_ROUNDS, _LADDER_BYTES // size))
    mgets = max(_MIN_ROUNDS, min(_MAX_MGET_ROUNDS, _LADDER_BYTES // (batch * size)))
    return gets, batch, mgets


@contextmanager
def _loopback(opts: DoctorOptions, blind: list[str]) -> Iterator[tuple[redis.Redis | None, str]]:
    """A client of the loopback reference and how it was taken (or why there is none)."""
    if not opts.loopback:
        yield None, "off (--no-loopback)"
        return
    if opts.loopback_url is not None:
        client = redis.Redis.from_url(opts.loopback_url, socket_timeout=opts.timeout)
        try:
            yield client, f"the server at {parse_target(opts.loopback_url).masked}"
        finally:
            client.close()
        return
    from ..demo._embedded import EmbeddedRedis

    try:
        server = EmbeddedRedis().__enter__()
    except (ConfigurationError, RuntimeError) as exc:
        blind.append(f"no loopback reference ({exc}): placement is judged on absolute RTT")
        yield None, "none: no redis-server on this host"
        return
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=opts.timeout)
    try:
        yield client, "a private redis-server on 127.0.0.1 started by the doctor"
    finally:
        client.close()
        server.stop()


def _connect(target: Target, opts: DoctorOptions, blind: list[str]) -> tuple[redis.Redis, str]:
    try:
        shards = open_shards(target, timeout=opts.timeout)
    except redis.RedisError as exc:
        _refused_login(target, f"{type(exc).__name__}: {exc}")
        raise DoctorError(f"cannot reach {target.masked}: {type(exc).__name__}: {exc}") from None
    for other in shards[1:]:
        other.close()
    node = shards[0].primary
    if len(shards) > 1:
        blind.append(
            f"cluster: only {node.address} was probed; pass another node's redis:// URL to probe it"
        )
    return node.client(0), node.address


def _refused_login(target: Target, errors: str) -> None:
    lowered = errors.lower()
    if any(word in lowered for word in ("authentication", "wrongpass", "noauth", "noperm")):
        raise ConfigurationError(
            f"{target.masked} answered but refused the login ({scrub(errors, target.url)}): "
            "check the user and password in the URL, or set VENEER_DOCTOR_URL"
        )


def run_doctor(url: str, options: DoctorOptions | None = None) -> DoctorReport:
    """Probe the Redis at ``url`` from this host.

    Raises ConfigurationError for a bad URL or a refused login and DoctorError when
    nothing answers; a Ctrl-C returns the partial report, marked ``interrupted``.
    """
    opts = options or DoctorOptions()
    target = parse_target(url)
    started_wall, started = time.time(), time.monotonic()
    blind: list[str] = []
    client, address = _connect(target, opts, blind)
    throttle = Throttle(opts.budget)
    bandwidth = Throttle(opts.bandwidth_mb_s * 1e6)
    probe = Probe(client, throttle, bandwidth, watch=True)
    try:
        probe.ping()  # connect (and fail) before starting a loopback server
    except redis.RedisError as exc:
        client.close()
        _refused_login(target, f"{type(exc).__name__}: {exc}")
        raise DoctorError(f"cannot reach {target.masked}: {type(exc).__name__}: {exc}") from None
    try:
        with _loopback(opts, blind) as (ref_client, how):
            ref = None
            if ref_client is not None:
                # The reference is this host's own server: no budget, no back-off.
                ref = Probe(ref_client, Throttle(1e9), Throttle(1e12), watch=False)
            run = _Run(opts, probe, ref, blind)
            run.run()
    finally:
        client.close()
    duration = time.monotonic() - started
    return run.report(target, address, how, started_wall, duration)


class _Run:
    def __init__(
        self, opts: DoctorOptions, probe: Probe, ref: Probe | None, blind: list[str]
    ) -> None:
        self.opts = opts
        self.probe = probe
        self.ref = ref
        self.blind = blind
        self.rtts: list[float] = []
        self.ref_rtts: list[float] = []
        self.points: list[tuple[float, int, int]] = []
        self.first: dict[str, Any] = {}
        self.last: dict[str, Any] = {}
        self.first_at = self.last_at = 0.0
        self.sizes: list[SizeThroughput] = []
        self.gentle = False
        self.interrupted = False

    def run(self) -> None:
        try:
            self._window()
            self._ladder()
        except KeyboardInterrupt:
            self.interrupted = True
        except redis.RedisError as exc:
            self.blind.append(f"stopped early: {type(exc).__name__}: {str(exc)[:200]}")

    def _info_all(self) -> tuple[dict[str, Any], float]:
        info = self.probe.info("all")
        at = time.monotonic()
        self.points.append((at, int(info.get("total_commands_processed", 0)), self.probe.commands))
        return info, at

    def _window(self) -> None:
        opts, probe = self.opts, self.probe
        self.first, self.first_at = self._info_all()
        interval = opts.window / opts.pings
        quarters = {opts.pings * q // 4 for q in (1, 2, 3)}
        start = time.monotonic()
        deadline = start + opts.window * _WINDOW_STRETCH
        for i in range(opts.pings):
            due = start + i * interval
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            elif now > deadline:
                self.blind.append(
                    f"the server answered slowly: {len(self.rtts)} of {opts.pings} PINGs sent "
                    "in the window"
                )
                break
            # Alternate which goes first: the first PING after a sleep pays for waking the
            # client host up, and that must not count against one side only.
            if self.ref is not None and i % 2:
                self.ref_rtts.append(self.ref.ping())
            self.rtts.append(probe.ping())
            if self.ref is not None and not i % 2:
                self.ref_rtts.append(self.ref.ping())
            if i in quarters:
                stats = probe.info("stats")
                self.points.append(
                    (
                        time.monotonic(),
                        int(stats.get("total_commands_processed", 0)),
                        probe.commands,
                    )
                )
        # The CPU window ends a full window after it started, however fast the PINGs went.
        rest = self.first_at + opts.window - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        self.last, self.last_at = self._info_all()

    def _server_busy(self) -> bool:
        window = self.last_at - self.first_at
        cpu = cpu_between(self.first, self.last, window)
        busy = busy_share(self.first, self.last, window)
        return (cpu is not None and cpu.main_thread >= CPU_SHARD) or (
            busy is not None and busy >= CPU_SHARD
        )

    def _ladder(self) -> None:
        self.gentle = self._server_busy() or self.probe.throttle.backoffs > 0
        if self.gentle:
            self.blind.append(
                "the server is busy: the throughput ladder was cut to "
                f"{_MIN_ROUNDS} round trips per size"
            )
        for size in self.opts.sizes:
            payload = os.urandom(size)
            gets, batch, mgets = _rounds(size)
            if self.gentle:
                gets = mgets = _MIN_ROUNDS
            get_t = _measure(self.probe, payload, 1, gets)
            mget_t = _measure(self.probe, payload, batch, mgets)
            ref_get = ref_mget = None
            if self.ref is not None:
                ref_get = median(_measure(self.ref, payload, 1, gets))
                ref_mget = median(_measure(self.ref, payload, batch, mgets))
            g, m = median(get_t), median(mget_t)
            self.sizes.append(
                SizeThroughput(
                    size_bytes=size,
                    get_ops=len(get_t),
                    get_ms=round(g * 1000, 3),
                    get_ops_per_s=round(1 / g, 1),
                    get_mb_s=round(size / g / 1e6, 2),
                    mget_batch=batch,
                    mget_ops=len(mget_t),
                    mget_ms=round(m * 1000, 3),
                    mget_values_per_s=round(batch / m, 1),
                    mget_mb_s=round(batch * size / m / 1e6, 2),
                    loopback_get_ms=None if ref_get is None else round(ref_get * 1000, 3),
                    loopback_mget_ms=None if ref_mget is None else round(ref_mget * 1000, 3),
                )
            )

    def _server(self) -> ServerLoad:
        first, last = self.first, self.last
        if not first or not last:
            return ServerLoad()
        costs, scope = command_costs(first, last, self.probe.calls)
        window = self.last_at - self.first_at
        series = ops_series(self.points)
        out0, out1 = first.get("total_net_output_bytes"), last.get("total_net_output_bytes")
        net = None
        if out0 is not None and out1 is not None and window > 0:
            net = round(max(0, int(out1) - int(out0)) / window / 1e6, 3)

        def num(name: str) -> int | None:
            value = last.get(name)
            return None if value is None else int(value)

        clients = num("connected_clients")
        return ServerLoad(
            version=str(last.get("valkey_version") or last.get("redis_version") or "unknown"),
            cpu=cpu_between(first, last, window),
            busy=busy_share(first, last, window),
            # The doctor's own connection is not the application's.
            connected_clients=None if clients is None else max(0, clients - 1),
            blocked_clients=num("blocked_clients"),
            maxclients=num("maxclients"),
            ops_per_s=series,
            ops_trend=trend(series),
            net_output_mb_s=net,
            top_commands=costs,
            top_commands_scope=scope,
        )

    def report(
        self, target: Target, address: str, how: str, started_wall: float, duration: float
    ) -> DoctorReport:
        rtt, ref_rtt = rtt_report(self.rtts), rtt_report(self.ref_rtts)
        server = self._server()
        t = self.probe.throttle
        return DoctorReport(
            target=target.masked,
            node=address,
            started_at=round(started_wall, 3),
            duration_s=round(duration, 3),
            loopback=how,
            rtt=rtt,
            loopback_rtt=ref_rtt,
            throughput=self.sizes,
            server=server,
            traffic=TrafficReport(
                budget_ops_per_s=self.opts.budget,
                commands_sent=self.probe.commands,
                duration_s=round(duration, 3),
                ops_per_s=round(self.probe.commands / duration, 1) if duration > 0 else 0.0,
                busiest_second=self.probe.busiest_second(),
                bandwidth_limit_mb_s=self.opts.bandwidth_mb_s,
                payload_bytes=self.probe.payload_bytes,
                backoffs=t.backoffs,
                min_rate_ops_per_s=round(t.min_rate, 1),
                gentle=self.gentle,
                by_command=dict(sorted(self.probe.calls.items())),
            ),
            recommendations=advise(rtt, ref_rtt, self.sizes, server),
            blind_spots=sorted(set(self.blind)),
            interrupted=self.interrupted,
        )


def _measure(probe: Probe, payload: bytes, batch: int, rounds: int) -> list[float]:
    """Round trips of ``batch`` replies of ``payload``: at least two, more until ``rounds``
    or the size's time slice is used up."""
    times: list[float] = []
    started = time.monotonic()
    for i in range(rounds):
        if i >= 2 and time.monotonic() - started > _SIZE_SLICE_S:
            break
        times.append(probe.echo(payload) if batch == 1 else probe.echo_batch(payload, batch))
    return times
