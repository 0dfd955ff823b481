"""L2 I/O: the Redis commands veneer sends, and nothing else.

The cache's own commands (reads, scripts, fills, stamps, invalidations) take a
lean path: veneer keeps its own bounded pool of redis-py connections per
endpoint (:class:`LeanPool`) and writes pre-packed RESP, skipping redis-py's
general command path (pool bookkeeping, retries, response callbacks and, since
redis-py 6, observability hooks), which costs more than the round trip itself
on loopback (``benchmarks/hit_path.py`` measures both). Scripts go as EVALSHA,
with ``SCRIPT LOAD`` in the same round trip when the server lacks them.
Components (``_access``), pub/sub and admin reads use the redis-py client,
behind the same per-endpoint connection slots.

A burst of callers queues for a connection (``pool_timeout``); a full pool is
never an error of the server and never reaches the circuit breaker. Errors
propagate; the cache front decides what they mean.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as redis_client
import redis.asyncio.cluster as redis_cluster
import redis.asyncio.sentinel as redis_sentinel
from hiredis import pack_command
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import LoadBalancingStrategy
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    MaxConnectionsError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    WatchError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # the parser's "incomplete" answer, for the fast path of _buffered
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - another redis-py layout: the normal reads
    _NOT_ENOUGH_DATA = None

from .._breaker import CircuitBreaker
from .._codec import is_lease_mark
from .._errors import ConfigurationError, RedisUnavailable, describe_redis_failure
from .._fork import park
from .._random import rng
from .._refusals import SCRIPTS, WRITES, Refusals, StillRefused, classify
from .._url import client_kwargs, parse_target, scrub, tls_kwargs, validate_url
from ._concurrency import (
    ConnectionSlots,
    Flight,
    LeaderGone,
    call_later,
    current_loop,
    dial,
    send_packed,
)

__all__ = [
    "REDIS_ERRORS",
    "AsyncL2",
    "CircuitOpen",
    "LeanPool",
    "LeanScript",
    "PoolExhausted",
    "build_client",
    "client_like",
    "is_cluster",
    "new_token",
    "parse_stamp",
]

# What says "this Redis is unhealthy" to the breaker. A ResponseError (a bad
# command, a script error) is an answer, not an outage.
_HEALTH_FAILURES = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)


# What a failing Redis raises through redis-py: its own errors, socket errors and
# (asyncio) timeouts. None of them may reach a caller on a read path.
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def new_token() -> bytes:
    """A lease token: random, so a fill can tell its lease from a newer holder's."""
    return b"%016x" % rng.getrandbits(64)


class CircuitOpen(RedisConnectionError):
    """Refused without calling Redis: the endpoint's circuit breaker is open."""


class PoolExhausted(RedisError):
    """Every connection to the endpoint stayed busy for ``pool_timeout``: a queue in this
    process, not a sign that Redis is down, so the breaker does not count it."""


# Connections the redis-py client may open beyond veneer's slots: the subscriber, and
# PING / INFO, which are not behind the breaker.
_CLIENT_POOL_MARGIN = 8


_GET_HEAD = b"*2\r\n$3\r\nGET\r\n$"
_PING = b"*1\r\n$4\r\nPING\r\n"
# A probe tries this many PINGs, each on a new connection under the read deadline:
# one reply closes the breaker, so a scheduling pause that spoils one try (on this
# host or Redis's) does not keep it open for another cooldown.
PROBE_TRIES = 3
REGISTRY_SIZE = 1000

# Leases. A miss takes its lease in the value's own slot, in the round trip that
# reads it: ``SET value <mark> NX PX heartbeat GET`` answers with the value (a hit,
# nothing written), with nothing (the lease is ours: the slot holds our mark), or
# with another caller's mark (wait). A fill replaces our mark with the entry. A
# second kind of lease, in the lease key ``{ns:key}:lease``, guards a refresh of a
# value that is still there (stale, or unusable bytes). An invalidation deletes
# the value slot and the lease key in one DEL, which revokes both kinds. Every
# lease lives ``lease_heartbeat`` unless its live holder renews it (RENEW_LEASE):
# one taken by a call that already gave up (timed out, cancelled) dies quickly.
# Every script touches one value key and its lease key, which share a hash slot.

# The lease-get for servers without ``SET ... NX GET`` (before Redis 7.0), and the
# poll of a waiter. Returns {state, value}: 0 the value slot's bytes (an entry, or
# someone's mark), 1 the lease is ours now, 2 a refresh holds the lease key (wait
# for its fill). A lease without a TTL, or one that lives longer than any live
# holder's (renewals set ``heartbeat``, ARGV[2]), was written by something else and
# is taken over or cut, so a hostile lease stalls callers at most one heartbeat.
LEASE_GET = """
local v = redis.call('GET', KEYS[1])
if not v then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  elseif ttl == -1 then
    redis.call('DEL', KEYS[2])
    ttl = -2
  end
  if ttl ~= -2 then return {2, false} end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, false}
end
if string.len(v) == 18 and string.sub(v, 1, 2) == '\\0L' then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl == -1 then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return {1, false}
  elseif ttl > tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
end
return {0, v}
"""
# The lease key, past bytes that are there but unusable (ARGV[3] = '1': corrupt, or
# invalidated by a stamp): returns {lease taken, value}. A mark in the value slot is
# someone's lease already: wait for it. veneer writes every lease with a TTL: a
# lease without one was written by something else and is taken over; one that
# lives longer than this caller's leases is cut to that.
GET_OR_LEASE = """
local v = redis.call('GET', KEYS[1])
if v and string.len(v) == 18 and string.sub(v, 1, 2) == '\\0L' then return {0, v} end
local got = 0
if ARGV[3] == '1' or not v then
  if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    got = 1
  else
    local ttl = redis.call('PTTL', KEYS[2])
    if ttl == -1 then
      redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
      got = 1
    elseif ttl > tonumber(ARGV[2]) then
      redis.call('PEXPIRE', KEYS[2], ARGV[2])
    end
  end
end
return {got, v}
"""
# A fill lands only while its lease is still there: our mark in the value slot, or
# our token in the lease key. An invalidation (which deletes both) or a newer
# holder makes it fail.
FILL_WITH_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[4] or redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""
# A refresh is claimed only while the value is still the one the caller judged
# (same envelope header, or still absent): a refresh that just landed is not redone.
CLAIM_REFRESH = """
local head = redis.call('GETRANGE', KEYS[1], 0, string.len(ARGV[3]) - 1)
if ARGV[3] == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
elseif head ~= ARGV[3] then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[2] then return redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('DEL', KEYS[2]) end
return 0
"""
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[2] then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 0
"""
# An explicit set is authoritative: it revokes any fill in flight.
SET_AND_REVOKE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""


def build_client(
    url: str,
    *,
    redis_timeout: float,
    connect_timeout: float,
    read_from_replicas: bool = False,
    max_connections: int = 32,
) -> Any:
    """A client for ``url`` (standalone, cluster or sentinel) with veneer's deadlines, no
    retries, and a pool (per node) a little larger than veneer's connection slots."""
    validate_url(url)
    target = parse_target(url)
    common = client_kwargs(redis_timeout, connect_timeout)
    common["max_connections"] = max_connections + _CLIENT_POOL_MARGIN
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.topology == "cluster":
        try:
            return _cluster_client(target, read_from_replicas, common, auth)
        except RedisClusterException as exc:
            # Only the sync client gets here: redis-py's sync RedisCluster reads the slot
            # map in its constructor (the asyncio one waits for the first command, and
            # AsyncCache serves from the source until a node answers).
            raise RedisUnavailable(
                describe_redis_failure(exc, target.masked)
                + ": the sync Cache on a Redis Cluster needs one reachable node when it is "
                "built (redis-py's cluster client reads the slot map then); build it once "
                "a node answers, or use the asyncio front, which starts without one"
            ) from None
    if target.topology == "sentinel":
        sentinel_auth: dict[str, Any] = {
            "username": target.options.get("sentinel_username"),
            "password": target.options.get("sentinel_password"),
        }
        sentinel = redis_sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(target.hosts),
            sentinel_kwargs={
                "socket_timeout": redis_timeout,
                "socket_connect_timeout": connect_timeout,
                **sentinel_auth,
                **tls_kwargs(target),
            },
            retry=Retry(NoBackoff(), 0),
            **common,
            **auth,
            **tls_kwargs(target),
        )
        # (redis-py types master_for on one side only)
        return sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
            target.service or "", db=target.db
        )
    # redis-py reads the TLS options of a rediss:// URL itself; veneer adds only the
    # verification default (its SSL connection class takes no ``ssl`` flag).
    tls = {k: v for k, v in tls_kwargs(target).items() if k != "ssl"}
    try:
        return redis_client.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **common, **tls)
    except ValueError as exc:  # redis-py's URL options (socket_timeout=abc, ...)
        raise ConfigurationError(
            f"bad Redis URL {target.masked!r}: {scrub(str(exc), url)}"
        ) from None


def _cluster_client(
    target: Any, read_from_replicas: bool, common: dict[str, Any], auth: dict[str, Any]
) -> Any:
    return redis_cluster.RedisCluster(
        startup_nodes=[
            redis_cluster.ClusterNode(host, port)  # type: ignore[no-untyped-call, unused-ignore]
            for host, port in target.hosts
        ],
        load_balancing_strategy=(LoadBalancingStrategy.ROUND_ROBIN if read_from_replicas else None),
        retry=Retry(NoBackoff(), 0),
        **common,
        **auth,
        **tls_kwargs(target),
    )


def is_cluster(client: Any) -> bool:
    return hasattr(client, "nodes_manager")


def client_like(
    client: Any, *, redis_timeout: float, connect_timeout: float, max_connections: int = 32
) -> tuple[Any, bool]:
    """A client to the same server as ``client`` with veneer's deadlines and no retries,
    and whether veneer owns it.

    veneer never changes the caller's client: for a single server it copies the
    connection settings (host, TLS, credentials, db) into its own pool. A cluster
    or Sentinel-managed client is used as given (its topology handling is the
    point of passing it), with the caller's timeouts, and is not closed by veneer.
    """
    pool = getattr(client, "connection_pool", None)
    if is_cluster(client) or pool is None or "Sentinel" in type(pool).__name__:
        return client, False
    kwargs = dict(pool.connection_kwargs)
    kwargs.update(client_kwargs(redis_timeout, connect_timeout))
    kwargs["retry"] = Retry(NoBackoff(), 0)
    new_pool = redis_client.ConnectionPool(
        connection_class=pool.connection_class,
        max_connections=max_connections + _CLIENT_POOL_MARGIN,
        **kwargs,
    )
    return redis_client.Redis(connection_pool=new_pool), True


# One routing key, and what to add to a pipeline for it (the redis-py client path).
Op = tuple[bytes, Callable[[Any], Awaitable[None]]]
# One command of the lean path: its routing key, its packed RESP, how many replies.
Command = tuple[bytes, bytes, int]


def parse_stamp(reply: Any) -> int:
    """A stamp's version, or 0 for bytes that are not one (0 is never a valid version:
    :func:`new_version` makes odd 63-bit numbers). Whoever can write to Redis must not
    be able to raise an exception in a reader by writing garbage into a stamp."""
    try:
        version = int(reply)
    except (TypeError, ValueError):
        return 0
    return version if 0 < version < 1 << 63 else 0


def forget_pool(pool: Any) -> None:
    """Drop a redis-py pool's connections in a forked child without touching them.

    The threaded pool does this itself on first use (its pid check); the asyncio pool
    does not, and its connections and lock belong to the parent's event loop.
    """
    if pool is None or not hasattr(pool, "_available_connections"):
        return
    park((pool._available_connections, pool._in_use_connections))
    pool.reset()
    if isinstance(getattr(pool, "_lock", None), asyncio.Lock):
        pool._lock = asyncio.Lock()


def _refused(exc: BaseException) -> bool:
    """Whether a new connection was refused (nothing listens), not merely lost or slow."""
    current: BaseException | None = exc
    for _ in range(4):  # redis-py wraps the OSError once or twice
        if current is None:
            return False
        if isinstance(current, ConnectionRefusedError) or "refused" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def _pack_get(key: bytes) -> bytes:
    return b"%b%d\r\n%b\r\n" % (_GET_HEAD, len(key), key)


_LEASE_GET_TAILS: dict[int, bytes] = {}


def _pack_lease_get(key: bytes, lease: bytes, mark: bytes, lease_px: int) -> bytes:
    """``SET key mark NX PX lease_px GET`` then ``GET lease``, formatted by hand: this is
    every hit's command, and hiredis takes five times as long to pack it."""
    tail = _LEASE_GET_TAILS.get(lease_px)
    if tail is None:
        px = b"%d" % lease_px
        tail = _LEASE_GET_TAILS[lease_px] = (
            b"\r\n$2\r\nNX\r\n$2\r\nPX\r\n$%d\r\n%b\r\n$3\r\nGET\r\n" % (len(px), px)
        )
    return b"*7\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b%b%b%d\r\n%b\r\n" % (
        len(key), key, len(mark), mark, tail, _GET_HEAD, len(lease), lease
    )  # fmt: skip


def _pack_mget(keys: list[bytes]) -> bytes:
    # hiredis packs in C: a third faster than formatting 100 keys in Python.
    packed: bytes = pack_command(("MGET", *keys))  # type: ignore[arg-type]
    return packed


def pack(*args: Any) -> bytes:
    """One command as RESP (hiredis, in C)."""
    packed: bytes = pack_command(args)
    return packed


class LeanScript:
    """A Lua script sent as pre-packed EVALSHA on veneer's connections; a server that
    lacks it gets ``SCRIPT LOAD`` and the EVALSHA again, in one round trip."""

    __slots__ = ("load", "sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest().encode()
        self.load = pack("SCRIPT", "LOAD", source)

    def call(self, keys: Sequence[bytes], args: Sequence[Any]) -> bytes:
        return pack("EVALSHA", self.sha, len(keys), *keys, *args)


async def _read(connection: Any) -> Any:
    """One reply; an error reply is returned as its exception, so the replies after it
    in the same buffer are still read and the connection stays in step."""
    try:
        return await connection.read_response()
    except ResponseError as exc:
        return exc


_MISSING: Any = object()


def _buffered(connection: Any) -> Any:
    """The next reply if it is already whole in hiredis's buffer, else ``_MISSING``.

    The replies after the first of a buffer usually arrived with it; reading each
    through ``read_response`` (timeout context, parser dispatch) costs 10 us on
    asyncio, more than the server spends on them. This peeks at redis-py's hiredis
    reader, a private attribute: without it the normal read is used.
    """
    reader = getattr(getattr(connection, "_parser", None), "_reader", None)
    if reader is None or _NOT_ENOUGH_DATA is None:
        return _MISSING
    reply = reader.gets()
    if reply is _NOT_ENOUGH_DATA:
        return _MISSING
    if isinstance(reply, RedisConnectionError):
        raise reply
    return reply


async def _read_many(connection: Any, replies: int) -> list[Any]:
    out = [await _read(connection)]
    while len(out) < replies:
        reply = _buffered(connection)
        out.append(await _read(connection) if reply is _MISSING else reply)
    return out


def _first_error(replies: Sequence[Any]) -> None:
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply


class LeanPool:
    """veneer's own connections to one endpoint (a server or a cluster node).

    At most ``limit`` are in use at once (``ConnectionSlots``): a burst of tasks
    queues for one for at most ``pool_timeout`` instead of dialling hundreds of
    sockets at once, each under the connect deadline. Connections are bound to the
    event loop (asyncio) and the process that opened them; on a new loop or in a
    forked child the old ones are forgotten, never used.
    """

    __slots__ = ("_bound", "_factory", "_free", "_pid", "closed", "limit", "slots", "timeout")

    def __init__(self, factory: Callable[[], Any], limit: int, timeout: float) -> None:
        self._factory = factory
        self.limit = limit
        self.timeout = timeout
        self._free: deque[Any] = deque()
        self.slots = ConnectionSlots(limit, timeout)
        self._bound: object = None
        self._pid = os.getpid()
        self.closed = False

    def _rebind(self) -> None:
        """A new event loop (or a forked child): the old one's sockets are unusable here, and
        not ours to close (a parent's, or a closed loop's): parked, never touched again."""
        self.after_fork()
        self._bound = current_loop()

    def after_fork(self) -> None:
        """Forget the connections and slots of the parent (or of an old loop); the next call
        binds to the loop it runs on."""
        waits, timeouts = self.slots.waits, self.slots.timeouts
        self.slots = ConnectionSlots(self.limit, self.timeout)
        self.slots.waits, self.slots.timeouts = waits, timeouts
        park(self._free)
        self._free = deque()
        self._bound = None
        self._pid = os.getpid()

    async def hold(self) -> None:
        """A slot, for a call made on another client (redis-py's): raises PoolExhausted."""
        if self._bound is not current_loop() or self._pid != os.getpid():
            self._rebind()
        if not await self.slots.acquire():
            raise PoolExhausted(
                f"no free connection in {self.timeout}s ({self.limit} busy): raise "
                "max_connections or pool_timeout, or lower the concurrency"
            )

    async def take(self) -> Any:
        await self.hold()
        try:
            return self._free.pop()
        except IndexError:
            pass
        connection = self._factory()
        try:
            await dial(connection, self._keep)
        except BaseException:
            self.slots.release()
            raise
        return connection

    def _keep(self, connection: Any) -> bool:
        """A connection dialled for a caller that stopped waiting: for the next one."""
        if self.closed or self._pid != os.getpid():
            return False
        self._free.append(connection)
        return True

    def give(self, connection: Any) -> None:
        self._free.append(connection)
        self.slots.release()

    async def drop(self, connection: Any) -> None:
        """After an error or a cancellation mid-command the socket's state is unknown."""
        self.slots.release()
        await connection.disconnect(nowait=True)

    async def clear(self) -> None:
        """Close the idle connections (after a failure they are likely dead too)."""
        free = self._free
        while free:
            try:
                connection = free.pop()
            except IndexError:
                break
            await connection.disconnect(nowait=True)


class AsyncL2:
    """The Redis tier of one cache on one endpoint (a server, or a Sentinel-managed
    primary), behind one circuit breaker."""

    def __init__(
        self,
        client: Any,
        breaker: CircuitBreaker,
        *,
        owns_client: bool = True,
        replica_wait: float = 0.05,
        max_connections: int = 32,
        pool_timeout: float = 1.0,
        sharded_pubsub: bool | None = None,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self._wait_ms = max(1, int(replica_wait * 1000))
        self._replicas = 0
        self._replicas_checked = -1e9
        self._replicas_check: Flight | None = None
        self._owns_client = owns_client
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._sharded_option = sharded_pubsub
        self._client_loop: object = None
        self._lean_get_or_lease = LeanScript(GET_OR_LEASE)
        self._lean_lease_get = LeanScript(LEASE_GET)
        self._lean_fill_with_lease = LeanScript(FILL_WITH_LEASE)
        self._lean_release_lease = LeanScript(RELEASE_LEASE)
        self._lean_renew_lease = LeanScript(RENEW_LEASE)
        # SET ... NX GET (Redis 7.0+): the lease-get in one command, without Lua. False
        # once a server refused its syntax: the Lua script instead, after a GET.
        self.lease_on_read = True
        self._lean_set_and_revoke = LeanScript(SET_AND_REVOKE)
        self._lean_claim_refresh = LeanScript(CLAIM_REFRESH)
        # What this Redis refuses (answers, not outages: see veneer._refusals); the cache
        # replaces both with its own, which also warn.
        self.refusals = Refusals()
        self.on_refused: Callable[[str, BaseException], object] = self.refusals.refused
        # Without scripts nothing renews a lease: marks then live this long (the cache
        # sets it to lease_ttl).
        self.unrenewed_px = 5000
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            self._connection_class = pool.connection_class
            self._connection_kwargs = dict(pool.connection_kwargs)
            self.pool = LeanPool(
                lambda: self._connection_class(**self._connection_kwargs),
                max_connections,
                pool_timeout,
            )

    # ------------------------------------------------------------- plumbing

    def breakers(self) -> list[CircuitBreaker]:
        return [self.breaker]

    def breaker_summary(self) -> tuple[str, int, float]:
        """(state, times opened, seconds open) for stats()."""
        return self.breaker.state.value, self.breaker.opened, self.breaker.seconds_open()

    def pools(self) -> list[LeanPool]:
        return [self.pool]

    def pool_summary(self) -> tuple[int, int]:
        """(calls that queued for a connection, calls that gave up queueing) for stats()."""
        pools = self.pools()
        return sum(p.slots.waits for p in pools), sum(p.slots.timeouts for p in pools)

    def _breakers_for(self, keys: Sequence[bytes]) -> list[CircuitBreaker]:
        return [self.breaker]

    def _pools_for(self, keys: Sequence[bytes]) -> list[LeanPool]:
        return [self.pool]

    async def _call_on(
        self,
        routing: Sequence[bytes],
        fn: Callable[..., Awaitable[Any]],
        /,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Run one operation of the redis-py client through the breakers and connection
        slots of the nodes the ``routing`` keys live on."""
        breakers = self._breakers_for(routing)
        for breaker in breakers:
            if not breaker.closed:
                self._probe_soon(breaker)
                raise CircuitOpen(f"circuit breaker for {breaker.name} is open")
        self._check_loop()
        held: list[LeanPool] = []
        try:
            for pool in self._pools_for(routing):
                await pool.hold()
                held.append(pool)
            result = await fn(*args, **kwargs)
        except MaxConnectionsError as exc:
            # redis-py's own pool is full (a caller shares veneer's client): a queue, not
            # an outage.
            raise PoolExhausted(str(exc)) from exc
        except _HEALTH_FAILURES as exc:
            refused = _refused(exc)
            for breaker in breakers:
                breaker.record_failure(refused=refused)
            await self._after_failure()
            raise
        finally:
            for pool in held:
                pool.slots.release()
        for breaker in breakers:
            breaker.record_success()
        return result

    def _probe_soon(self, breaker: CircuitBreaker) -> None:
        """Start a probe in the background when one is due: no caller waits on it."""
        if breaker.claim_probe():

            async def run() -> None:
                await self.probe(breaker)

            call_later(0.0, run)

    def hint_alive(self) -> None:
        """Redis answered on another connection (the invalidation channel): probe every
        open breaker now instead of after its cooldown."""
        for breaker in self.breakers():
            if not breaker.closed:
                breaker.hint_alive()
                self._probe_soon(breaker)

    async def probe(self, breaker: CircuitBreaker) -> None:
        """Up to PROBE_TRIES PINGs on new connections: any reply closes the breaker (an
        answer that is an error, say NOPERM, is still an answer); none re-opens it.
        A refused connection ends the probe at once: nothing listens there."""
        for _ in range(PROBE_TRIES):
            connection = None
            try:
                connection = await self._dial(breaker)
                await connection.send_packed_command([_PING], False)
                await connection.read_response()
            except _HEALTH_FAILURES as exc:
                if connection is not None:
                    await connection.disconnect()
                if _refused(exc):
                    break
                continue
            except Exception:
                pass  # an answer all the same
            except BaseException:
                if connection is not None:
                    await connection.disconnect()
                raise  # cancelled: the claim expires after probe_timeout
            if connection is not None:
                await connection.disconnect()
            breaker.record_success()
            return
        breaker.probe_failed()

    async def _dial(self, breaker: CircuitBreaker) -> Any:
        """A new connection to the endpoint ``breaker`` guards."""
        connection = self._connection_class(**self._connection_kwargs)
        await connection.connect()
        return connection

    async def _after_failure(self) -> None:
        """After a failure, the idle connections are likely dead too (a restarted or
        failed-over server): drop them so the next calls dial afresh instead of each
        failing once on a dead socket and re-opening the breaker."""
        await self.pool.clear()
        await self.client.connection_pool.disconnect(inuse_connections=False)

    def _check_loop(self) -> None:
        """redis-py's own pool (components, pub/sub, PING, INFO) is bound to the loop that
        used it first: on another loop (asyncio.run called again), start it afresh."""
        if self._client_loop is not current_loop():
            if self._client_loop is not None:
                self.after_fork()
            self._client_loop = current_loop()

    async def release_loop(self) -> None:
        """The running loop shuts down: close the connections that belong to it."""
        await self.pool.clear()
        await self.client.connection_pool.disconnect()
        self._client_loop = None

    def after_fork(self) -> None:
        """In a forked child (or on a new event loop): none of the old connections (parked,
        not closed: they are the parent's sockets, or a gone loop's), fresh breaker locks."""
        for pool in self.pools():
            pool.after_fork()
        self._replicas_check = None  # a parent thread's INFO in flight
        for breaker in self.breakers():
            breaker.after_fork()
        forget_pool(getattr(self.client, "connection_pool", None))

    async def _exchange(self, packed: bytes, replies: int) -> Any:
        """Write ``packed`` on one of veneer's connections and read ``replies`` replies (the
        reply itself when there is one, else a list); error replies come back as objects."""
        breaker = self.breaker
        if not breaker.closed:
            self._probe_soon(breaker)
            raise CircuitOpen(f"circuit breaker for {breaker.name} is open")
        pool = self.pool
        try:
            connection = await pool.take()
        except _HEALTH_FAILURES as exc:  # the dial failed
            breaker.record_failure(refused=_refused(exc))
            await self._after_failure()
            raise
        try:
            await send_packed(connection, packed)
            out = await _read(connection) if replies == 1 else await _read_many(connection, replies)
        except BaseException as exc:
            # Whatever happened mid-command (timeout, cancel), the socket's state is unknown.
            await pool.drop(connection)
            if isinstance(exc, _HEALTH_FAILURES):
                breaker.record_failure(refused=_refused(exc))
                await self._after_failure()
            raise
        pool.give(connection)
        breaker.record_success()
        return out

    async def _roundtrip(self, packed: bytes) -> Any:
        reply = await self._exchange(packed, 1)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def _one(self, key: bytes, packed: bytes, replies: int) -> Any:
        """One buffer for the node of ``key`` (the hot path: no batching around it)."""
        return await self._exchange(packed, replies)

    async def _batch(self, commands: list[Command]) -> list[Any]:
        """Commands in one round trip (one per node on a cluster); replies flat, in order,
        error replies as exception objects."""
        if len(commands) == 1:
            _, packed, count = commands[0]
            reply = await self._exchange(packed, count)
            return [reply] if count == 1 else list(reply)
        replies: list[Any] = await self._exchange(
            b"".join(packed for _, packed, _ in commands), sum(n for _, _, n in commands)
        )
        return replies

    async def _scripts(self, calls: list[tuple[LeanScript, list[bytes], list[Any]]]) -> list[Any]:
        """Run scripts (one reply each) in one round trip; a server that lacks one loads it
        and runs it again in a second. Raises the first error reply."""
        replies = await self._batch([(keys[0], s.call(keys, args), 1) for s, keys, args in calls])
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            again = await self._batch(
                [
                    (
                        calls[i][1][0],
                        calls[i][0].load + calls[i][0].call(calls[i][1], calls[i][2]),
                        2,
                    )
                    for i in missing
                ]
            )
            for i, (_, reply) in zip(
                missing, zip(again[::2], again[1::2], strict=True), strict=True
            ):
                replies[i] = reply
        _first_error(replies)
        return replies

    async def _script(self, script: LeanScript, keys: list[bytes], args: list[Any]) -> Any:
        return (await self._scripts([(script, keys, args)]))[0]

    async def _pipeline(self, ops: list[Op]) -> list[Any]:
        """Run ``ops`` (each adds its commands for one routing key) in one round trip on the
        redis-py client (components use it); the replies come back flat, in op order."""

        async def run() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for _, add in ops:
                    await add(pipe)
                replies: list[Any] = await pipe.execute()
                return replies

        replies: list[Any] = await self._call_on([key for key, _ in ops], run)
        return replies

    # ---------------------------------------------------------------- reads

    async def get(self, key: bytes) -> bytes | None:
        reply: bytes | None = await self._roundtrip(_pack_get(key))
        return reply

    async def mget(self, keys: list[bytes]) -> list[bytes | None]:
        reply: list[bytes | None] = await self._roundtrip(_pack_mget(keys))
        return reply

    # ------------------------------------------------------ leases and fills

    async def set(self, key: bytes, data: bytes, px: int) -> None:
        reply = (await self._batch([(key, pack("SET", key, data, "PX", px), 1)]))[0]
        _first_error([reply])

    async def lease_get(
        self, key: bytes, lease: bytes, mark: bytes, lease_px: int
    ) -> tuple[bytes | None, bool]:
        """Read ``key`` and, if it is absent, put our lease ``mark`` there, in one round
        trip: ``(bytes there, refreshing)``. ``(None, False)``: the lease is ours.
        ``(None, True)``: a refresh holds the lease key, wait for its fill (which also
        replaces our mark). Otherwise the bytes there: an entry, or someone's mark.

        Two plain commands while the server has ``SET ... NX GET`` (Redis 7.0): a hit
        costs about what a GET costs (``benchmarks/hit_path.py``); the Lua twin otherwise.
        """
        if self.lease_on_read:
            if self.refusals.scripts_until:
                lease_px = max(lease_px, self.unrenewed_px)  # no script will renew it
            reply, holder = await self._one(key, _pack_lease_get(key, lease, mark, lease_px), 2)
            if not isinstance(reply, ResponseError):
                return reply, reply is None and holder is not None
            if "syntax" not in str(reply).lower():
                raise reply  # refused (out of memory, no permission): the caller reads instead
            self.lease_on_read = False
        return await self.poll_lease(key, lease, mark, lease_px)

    async def poll_lease(
        self, key: bytes, lease: bytes, mark: bytes, lease_px: int
    ) -> tuple[bytes | None, bool]:
        """The lease-get of a waiter, as :meth:`lease_get` answers; leases that outlive any
        live holder's (``lease_px``) are cut to that (see LEASE_GET)."""
        if self._scripts_refused():
            state, value = await self._plain_lease_get(key, lease, mark)
        else:
            try:
                state, value = await self._script(
                    self._lean_lease_get, [key, lease], [mark, lease_px]
                )
            except ResponseError as exc:
                self._scripts_failed(exc)
                state, value = await self._plain_lease_get(key, lease, mark)
        return (value if state == 0 else None), state == 2

    async def get_or_lease(
        self, key: bytes, lease: bytes, token: bytes, lease_px: int, force: bool
    ) -> tuple[bool, bytes | None]:
        """The lease key: ``(lease taken, value or None)`` in one round trip."""
        if self._scripts_refused():
            return await self._plain_get_or_lease(key, lease, token, force)
        try:
            reply = await self._script(
                self._lean_get_or_lease, [key, lease], [token, lease_px, b"1" if force else b"0"]
            )
        except ResponseError as exc:
            self._scripts_failed(exc)
            return await self._plain_get_or_lease(key, lease, token, force)
        return bool(reply[0]), reply[1]

    async def lease_get_many(
        self, pairs: list[tuple[bytes, bytes]], mark: bytes, lease_px: int
    ) -> list[tuple[bytes | None, bool]]:
        """:meth:`lease_get` for a batch of (value key, lease key), in one round trip (one
        per node), answered the same way."""
        if self.lease_on_read:
            replies = await self._batch(
                [
                    (
                        key,
                        pack("SET", key, mark, "NX", "PX", lease_px, "GET") + pack("GET", lease),
                        2,
                    )
                    for key, lease in pairs
                ]
            )
            refused = next((r for r in replies if isinstance(r, ResponseError)), None)
            if refused is None:
                return [
                    (reply, reply is None and holder is not None)
                    for reply, holder in zip(replies[::2], replies[1::2], strict=True)
                ]
            if "syntax" not in str(refused).lower():
                raise refused
            self.lease_on_read = False
        script = self._lean_lease_get
        states = await self._scripts([(script, [k, lk], [mark, lease_px]) for k, lk in pairs])
        return [((value if state == 0 else None), state == 2) for state, value in states]

    async def claim_refresh(
        self, key: bytes, lease: bytes, token: bytes, lease_px: int, expected_head: bytes
    ) -> bool:
        """Take the lease to refresh ``key`` if it still starts with ``expected_head``
        (``b""``: if it is still absent). Without scripts: never (no refreshes; a stale
        entry is served until it expires, then its miss is leased as usual)."""
        if self._scripts_refused():
            return False
        try:
            reply = await self._script(
                self._lean_claim_refresh, [key, lease], [token, lease_px, expected_head]
            )
        except ResponseError as exc:
            self._scripts_failed(exc)
            return False
        return bool(reply)

    async def fill_with_lease(
        self, key: bytes, lease: bytes, token: bytes, mark: bytes, data: bytes, px: int
    ) -> bool:
        if self._scripts_refused():
            return await self._plain_fill(key, lease, token, mark, data, px)
        try:
            reply = await self._script(
                self._lean_fill_with_lease, [key, lease], [token, data, px, mark]
            )
        except ResponseError as exc:
            self._scripts_failed(exc)
            return await self._plain_fill(key, lease, token, mark, data, px)
        return bool(reply)

    async def fill_many_with_lease(
        self, items: list[tuple[bytes, bytes, bytes, int]], token: bytes, mark: bytes
    ) -> list[bool]:
        if not self._scripts_refused():
            script = self._lean_fill_with_lease
            try:
                replies = await self._scripts(
                    [
                        (script, [key, lease], [token, data, px, mark])
                        for key, lease, data, px in items
                    ]
                )
                return [bool(r) for r in replies]
            except ResponseError as exc:
                self._scripts_failed(exc)
        return [
            await self._plain_fill(key, lease, token, mark, data, px)
            for key, lease, data, px in items
        ]

    async def release_lease(self, key: bytes, lease: bytes, token: bytes, mark: bytes) -> None:
        if self._scripts_refused():
            await self._plain_release(key, lease, token, mark)
            return
        try:
            await self._script(self._lean_release_lease, [key, lease], [token, mark])
        except ResponseError as exc:
            self._scripts_failed(exc)
            await self._plain_release(key, lease, token, mark)

    async def renew_leases(self, leases: list[tuple[bytes, bytes, bytes, bytes]], px: int) -> None:
        """Extend leases still held (value key, lease key, token, mark) by ``px``, in one
        round trip per node; a lease that is gone (filled, revoked) is left alone.
        Without scripts, nothing (marks taken then live ``unrenewed_px``)."""
        if self._scripts_refused():
            return
        script = self._lean_renew_lease
        try:
            await self._scripts([(script, [k, lk], [t, m, px]) for k, lk, t, m in leases])
        except ResponseError as exc:
            self._scripts_failed(exc)

    async def set_and_revoke(self, key: bytes, lease: bytes, data: bytes, px: int) -> None:
        if self._scripts_refused():
            await self._plain_set_and_revoke(key, lease, data, px)
            return
        try:
            await self._script(self._lean_set_and_revoke, [key, lease], [data, px])
        except ResponseError as exc:
            self._scripts_failed(exc)
            await self._plain_set_and_revoke(key, lease, data, px)

    # ------------------------------------ without scripts (an ACL without EVALSHA)

    def _scripts_refused(self) -> bool:
        """Whether to do without the script now: refused, and not yet time to try again."""
        refusals = self.refusals
        return bool(refusals.scripts_until) and not refusals.allows(SCRIPTS)

    def _scripts_failed(self, exc: ResponseError) -> None:
        """A script call failed: re-raise unless Redis refused scripts (then the caller
        does without, and the refusal is reported)."""
        if classify(exc) != SCRIPTS:
            raise exc
        self.on_refused(SCRIPTS, exc)

    async def _plain_lease_get(self, key: bytes, lease: bytes, mark: bytes) -> tuple[int, Any]:
        """LEASE_GET's answer without Lua: ``(1, None)`` our mark is in the value slot,
        ``(2, None)`` a refresh holds the lease key (our mark waits with it), ``(0, bytes)``
        an entry or another caller's mark."""
        px = self.unrenewed_px
        if self.lease_on_read:
            reply, holder = await self._one(key, _pack_lease_get(key, lease, mark, px), 2)
            _first_error([reply, holder])
            if reply is not None:
                return 0, reply
            return (2 if holder is not None else 1), None
        taken, reply, holder = await self._one(
            key, pack("SET", key, mark, "NX", "PX", px) + pack("GET", key) + pack("GET", lease), 3
        )
        _first_error([taken, reply, holder])
        if taken:
            return (2 if holder is not None else 1), None
        # Not taken, and gone before the GET (filled and invalidated between): ask again.
        return (0, reply) if reply is not None else (2, None)

    async def _plain_get_or_lease(
        self, key: bytes, lease: bytes, token: bytes, force: bool
    ) -> tuple[bool, bytes | None]:
        """GET_OR_LEASE without Lua, in two steps: the value, then (past unusable bytes, or
        none) the lease key with SET NX. Two callers may both end up loading (one by the
        mark, one by the lease key); an invalidation still revokes both fills."""
        value = await self.get(key)
        if value is not None and (is_lease_mark(value) or not force):
            return False, value
        taken = await self._one(key, pack("SET", lease, token, "NX", "PX", self.unrenewed_px), 1)
        _first_error([taken])
        return bool(taken), value

    async def _guarded(
        self,
        key: bytes,
        lease: bytes,
        token: bytes,
        mark: bytes,
        write: Callable[[Any, bool], None],
    ) -> bool:
        """Run ``write(pipe, by_mark)`` in a transaction only while this caller holds the
        lease (its mark in the value slot, or its token in the lease key): WATCH both,
        read both, then MULTI/EXEC. An invalidation (or a newer holder) between the read
        and the EXEC changes a watched key, and EXEC refuses: the stale-set guard of the
        scripts, kept without Lua."""

        async def run() -> bool:
            async with self.client.pipeline(transaction=True) as pipe:
                await pipe.watch(key, lease)
                # Two GETs, not MGET: a cluster pipeline refuses MGET (same slot or not).
                value = await pipe.get(key)
                holder = await pipe.get(lease)
                if value != mark and holder != token:
                    return False
                pipe.multi()
                write(pipe, value == mark)
                try:
                    await pipe.execute()
                except WatchError:
                    return False
                return True

        try:
            done: bool = await self._call_on([key], run)
        except RedisClusterException as exc:  # (not a RedisError: it must not reach a caller)
            raise ResponseError(f"transaction refused by the cluster client: {exc}") from exc
        return done

    async def _plain_fill(
        self, key: bytes, lease: bytes, token: bytes, mark: bytes, data: bytes, px: int
    ) -> bool:
        def write(pipe: Any, by_mark: bool) -> None:
            pipe.set(key, data, px=px)
            pipe.delete(lease)

        return await self._guarded(key, lease, token, mark, write)

    async def _plain_release(self, key: bytes, lease: bytes, token: bytes, mark: bytes) -> None:
        def write(pipe: Any, by_mark: bool) -> None:
            pipe.delete(key if by_mark else lease)

        await self._guarded(key, lease, token, mark, write)

    async def _plain_set_and_revoke(self, key: bytes, lease: bytes, data: bytes, px: int) -> None:
        # The lease goes first: a fill that checks it after this cannot land, and one
        # that lands before the SET is overwritten by it.
        _first_error(await self._one(key, pack("DEL", lease) + pack("SET", key, data, "PX", px), 2))

    async def set_many(self, items: list[tuple[bytes, bytes, int]]) -> None:
        _first_error(
            await self._batch(
                [(key, pack("SET", key, data, "PX", px), 1) for key, data, px in items]
            )
        )

    async def delete_durably(self, *keys: bytes) -> bool:
        """Delete keys of one slot (a value and its lease: one command, also on a cluster);
        True once a replica has the delete too (or none exists).

        An invalidation the primary acknowledged can still die with it in a failover
        (replication is asynchronous) and the promoted replica would serve the old
        value. ``WAIT`` in the same round trip tells veneer whether to keep it queued.
        """
        return await self._durably(keys[0], pack("DEL", *keys))

    async def write_stamp_durably(self, key: bytes, version: int, ex: int) -> bool:
        return await self._durably(key, pack("SET", key, version, "EX", ex))

    async def _durably(self, key: bytes, packed: bytes) -> bool:
        replicas = await self._replicas_for(key)
        if replicas:
            packed += pack("WAIT", replicas, self._wait_ms)
        replies = await self._batch([(key, packed, 2 if replicas else 1)])
        _first_error(replies)
        return not replicas or int(replies[-1]) >= replicas

    async def _replicas_for(self, key: bytes) -> int:
        """Whether the primary has a replica to wait for (INFO, cached for 5 s; concurrent
        invalidations share one INFO)."""
        now = time.monotonic()
        if now < self._replicas_checked + 5.0:
            return self._replicas
        checking = self._replicas_check
        if checking is not None:
            try:
                replicas: int = await checking.wait()
                return replicas
            except LeaderGone:
                pass  # that caller was cancelled: ask on our own
        flight = self._replicas_check = Flight()
        try:
            info = await self._call_on([key], self.client.info, "replication")
        except BaseException as exc:
            flight.fail(exc if isinstance(exc, Exception) else LeaderGone())
            raise
        finally:
            if self._replicas_check is flight:
                self._replicas_check = None
        self._replicas = min(1, int(info.get("connected_slaves", 0)))
        self._replicas_checked = now
        flight.resolve(self._replicas)
        return self._replicas

    # ------------------------------------------------------- stamps, registry

    async def read_stamps(self, keys: list[bytes], fresh: list[int], ex: int) -> list[int]:
        """Current versions of stamp keys, creating the missing ones with ``fresh`` versions.

        ``SET NX`` then ``GET`` in one round trip (per node) reads and initialises
        (``SET NX GET`` would be one command, but only from Redis 7.0). A stamp
        never goes back to "absent", so an entry written under an old version can
        never match again, even after the stamp key expired or its shard restarted.

        When Redis refuses the ``SET NX`` (out of memory, a read-only user) the GETs
        still answer: the stamps that exist are read (and no ``SET NX`` is sent again
        within the refusal's retry window); a missing one raises the refusal, as no
        entry can be checked or written under a stamp that cannot be created.
        """
        refusals = self.refusals
        refused: BaseException | None = None
        if not refusals.writes_until or refusals.allows(WRITES):
            replies = await self._batch(
                [
                    (key, pack("SET", key, version, "NX", "EX", ex) + pack("GET", key), 2)
                    for key, version in zip(keys, fresh, strict=True)
                ]
            )
            reads = replies[1::2]
            for reply in replies[::2]:
                if isinstance(reply, ResponseError):
                    if classify(reply) != WRITES:
                        raise reply
                    refused = reply
            if refused is not None:
                self.on_refused(WRITES, refused)
            elif refusals.writes_until:
                refusals.accepted(WRITES)
        else:
            reads = await self._batch([(key, pack("GET", key), 1) for key in keys])
        _first_error(reads)
        versions = [
            version if reply is None else parse_stamp(reply)
            for reply, version in zip(reads, fresh, strict=True)
        ]
        if (refused is not None or refusals.writes_until) and any(r is None for r in reads):
            raise refused or StillRefused(WRITES, refusals.errors.get(WRITES, "writes refused"))
        return versions

    async def answers(self, commands: list[tuple[bytes, bytes]]) -> list[Any]:
        """Run one-reply ``(routing key, packed command)`` pairs in one round trip (per
        node); error replies come back as exception objects, not raised (for check())."""
        return await self._batch([(key, packed, 1) for key, packed in commands])

    async def overwrite_stamps(self, items: list[tuple[bytes, int]], ex: int) -> None:
        """Replace stamps that hold no valid version (written by something else)."""
        _first_error(
            await self._batch(
                [(key, pack("SET", key, version, "EX", ex), 1) for key, version in items]
            )
        )

    async def record_key(self, registry: bytes, key: str, now: float, ex: int) -> None:
        """Add ``key`` to a sorted set of recent fills, kept to REGISTRY_SIZE members."""
        member = key.encode("utf-8", "surrogatepass")
        packed = (
            pack("ZADD", registry, repr(now), member)
            + pack("ZREMRANGEBYRANK", registry, 0, -REGISTRY_SIZE - 1)
            + pack("EXPIRE", registry, ex)
        )
        _first_error(await self._batch([(registry, packed, 3)]))

    async def recent_keys(self, registry: bytes, count: int) -> list[str]:
        """The ``count`` most recently recorded keys (a bounded read: ZREVRANGE 0 count-1)."""
        members = (
            await self._batch([(registry, pack("ZREVRANGE", registry, 0, max(0, count - 1)), 1)])
        )[0]
        _first_error([members])
        return [m.decode("utf-8", "replace") for m in members]

    # ------------------------------------------------------------- broadcast

    async def publish(self, channel: str, message: bytes, counter: bytes, ex: int) -> None:
        """Publish ``message`` and count it in ``counter``, in one round trip.

        A subscriber compares the count with the messages it received when it
        reconnects: a difference means it missed invalidations while away. Not a
        transaction: when Redis refuses the INCR (out of memory) the message still
        goes out, and the subscriber only sees a gap that is not there (safe side).
        """
        publish = "SPUBLISH" if await self.sharded_broadcast() else "PUBLISH"
        packed = pack("INCRBY", counter, 1) + pack("EXPIRE", counter, ex)
        packed += pack(publish, channel.encode(), message)
        replies = await self._batch([(counter, packed, 3)])  # (the channel's slot, too)
        if isinstance(replies[2], ResponseError):
            raise replies[2]  # the message itself was refused (an INCR refusal is safe)

    async def published(self, counter: bytes) -> int:
        """The count of published invalidations. Not behind the breaker: it is read right
        after the subscriber reconnected, which shows the server answers."""
        self._check_loop()
        reply = await self.client.get(counter)
        return int(reply or 0)

    async def sharded_broadcast(self) -> bool:
        """Whether invalidations travel by sharded pub/sub (SPUBLISH / SSUBSCRIBE): only
        when asked for on one server, where it gains nothing (see docs/cluster.md)."""
        return bool(self._sharded_option)

    async def subscriber(self, channel: str | None = None) -> Any:
        """A client to subscribe with (here: this endpoint's own client)."""
        self._check_loop()
        return self.client

    async def release_subscriber(self, client: Any) -> None:
        return None

    async def ping(self) -> None:
        """A direct PING (not behind the breaker): for ``check()``."""
        self._check_loop()
        await self.client.ping()

    def describe(self) -> str:
        return self.breaker.name

    async def run_id(self) -> str:
        """The server's run id: it changes when Redis restarts (maybe empty).

        Not behind the breaker: it is asked right after the subscriber reconnected,
        which shows the server answers even while the breaker still waits to probe.
        """
        self._check_loop()
        info = await self.client.info("server")
        return str(info.get("run_id", ""))

    async def close(self) -> None:
        for pool in self.pools():
            pool.closed = True
        await self.pool.clear()
        if self._owns_client:
            await self.client.aclose()
            # A client built on a pool veneer made does not close that pool itself.
            await self.client.connection_pool.disconnect()
