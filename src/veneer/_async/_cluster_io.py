"""L2 I/O on Redis Cluster: the same operations as ``AsyncL2``, routed per node.

The cache's commands stay on the lean path, per node (a bounded ``LeanPool``
each): ``get`` goes to the key's node; a batch (``mget``, stamps, leases and
fills of many keys) is grouped by node, and each node gets one buffer, to every
node before reading any reply, so the shards answer in parallel and the batch
costs one round trip per shard (``mget`` groups by slot, as a cluster MGET must
stay in one). Components and admin reads go through redis-py's ``RedisCluster``,
which routes by key and follows MOVED. Each node has its own circuit breaker: a
dead shard degrades only its own keys. A connection error or a redirect
schedules a refresh of the slot map in the background, so reads find a
promoted replica.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from .._breaker import BreakerState, CircuitBreaker
from .._fork import park
from ._concurrency import call_later, send_packed
from ._nodes import (
    close_node_clients,
    close_subscriber,
    node_client,
    node_connection_factory,
    refresh_topology,
    subscriber_client,
)
from ._redis_io import (
    _HEALTH_FAILURES,
    AsyncL2,
    CircuitOpen,
    Command,
    LeanPool,
    Op,
    _pack_get,
    _pack_mget,
    _read,
    _read_many,
    _refused,
    forget_pool,
)

__all__ = ["AsyncClusterL2", "TopologyChanged"]

_REFRESH_EVERY = 0.5  # seconds between slot-map refreshes at most
_INFO_SERVER = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"


def _version(text: str) -> tuple[int, ...]:
    """``7.0.15`` as (7, 0, 15); what does not parse sorts first (no sharded pub/sub)."""
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)


# What learning the slot map raises when no node answers: redis-py's
# RedisClusterException ("cannot be connected") is not a RedisError, so without it
# here an unreachable cluster escaped to the caller instead of sending reads to the
# source.
_NO_TOPOLOGY = (*_HEALTH_FAILURES, SlotNotCoveredError, RedisClusterException)


class TopologyChanged(RedisConnectionError):
    """A slot moved (failover, resharding): this call is a miss; the map is being refreshed."""


class AsyncClusterL2(AsyncL2):
    def __init__(
        self,
        client: Any,
        breaker_for: Callable[[str], CircuitBreaker],
        *,
        owns_client: bool = True,
        read_from_replicas: bool = False,
        replica_wait: float = 0.05,
        max_connections: int = 32,
        pool_timeout: float = 1.0,
        sharded_pubsub: bool | None = None,
    ) -> None:
        super().__init__(
            client,
            breaker_for("cluster"),
            owns_client=owns_client,
            replica_wait=replica_wait,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            sharded_pubsub=sharded_pubsub,
        )
        self._sharded: bool | None = sharded_pubsub
        self._subscribed_once = False
        self._breaker_for = breaker_for
        self._node_breakers: dict[str, CircuitBreaker] = {}
        self._node_pools: dict[str, LeanPool] = {}
        self._read_from_replicas = read_from_replicas
        self._node_clients: dict[str, Any] = {}
        self._last_refresh = 0.0
        self.round_trips = 0  # lean reads sent, one per node per batch (tests count them)

    # ------------------------------------------------------------- plumbing

    def breakers(self) -> list[CircuitBreaker]:
        return list(self._node_breakers.values()) or [self.breaker]

    def pools(self) -> list[LeanPool]:
        return list(self._node_pools.values())

    def _node_pool(self, node: Any) -> LeanPool:
        pool = self._node_pools.get(node.name)
        if pool is None:
            pool = self._node_pools[node.name] = LeanPool(
                node_connection_factory(self.client, node),
                self._max_connections,
                self._pool_timeout,
            )
        return pool

    def _node_breaker(self, name: str) -> CircuitBreaker:
        breaker = self._node_breakers.get(name)
        if breaker is None:
            breaker = self._node_breakers[name] = self._breaker_for(name)
        return breaker

    def _node(self, slot: int, *, read: bool = False) -> Any:
        try:
            return self.client.nodes_manager.get_node_from_slot(
                slot, read_from_replicas=read and self._read_from_replicas
            )
        except (KeyError, IndexError, SlotNotCoveredError) as exc:
            # No owner known for the slot (not discovered yet, or lost in a failover).
            self._schedule_refresh()
            raise TopologyChanged(f"no node known for slot {slot}") from exc

    def after_fork(self) -> None:
        super().after_fork()  # the node pools, through pools()
        park(self._node_clients)
        self._node_clients = {}
        manager = self.client.nodes_manager
        nodes = {id(n): n for n in [*manager.nodes_cache.values(), *manager.startup_nodes.values()]}
        for node in nodes.values():
            # redis-py's asyncio cluster keeps connections on its nodes (no pid check).
            if hasattr(node, "_free"):
                park((node._connections, node._free))
                node._connections = []
                node._free = deque(maxlen=node._free.maxlen)
            else:
                forget_pool(getattr(node.redis_connection, "connection_pool", None))

    async def _discover(self) -> None:
        """The asyncio cluster client learns its nodes on first use; lean reads need them."""
        self._check_loop()
        if getattr(self.client, "_initialize", False):
            # Not started yet (the asyncio client starts lazily): its start-up also readies
            # the command parser that commands sent through it (not lean reads) route with.
            try:
                await self.client.initialize()
            except _NO_TOPOLOGY as exc:
                raise TopologyChanged(f"cluster topology unknown: {exc}") from exc
        elif not self.client.nodes_manager.slots_cache:
            try:
                await refresh_topology(self.client)
            except _NO_TOPOLOGY as exc:
                raise TopologyChanged(f"cluster topology unknown: {exc}") from exc

    async def _call_on(
        self,
        routing: Sequence[bytes],
        fn: Callable[..., Awaitable[Any]],
        /,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        await self._discover()
        return await super()._call_on(routing, fn, *args, **kwargs)

    def _breakers_for(self, keys: Sequence[bytes]) -> list[CircuitBreaker]:
        names = {self._node(key_slot(key)).name for key in keys}
        return [self._node_breaker(name) for name in sorted(names)]

    def _pools_for(self, keys: Sequence[bytes]) -> list[LeanPool]:
        nodes = {(node := self._node(key_slot(key))).name: node for key in keys}
        return [self._node_pool(nodes[name]) for name in sorted(nodes)]

    async def _after_failure(self) -> None:
        self._schedule_refresh()

    async def probe(self, breaker: CircuitBreaker) -> None:
        await super().probe(breaker)
        if not breaker.closed:
            # Callers are refused without calling the node, so nothing else would notice
            # that its slots moved (a replica promoted in its place).
            self._schedule_refresh()

    async def _dial(self, breaker: CircuitBreaker) -> Any:
        node = self.client.get_node(node_name=breaker.name)
        if node is None:
            raise TopologyChanged(f"node {breaker.name} left the cluster")
        connection = node_connection_factory(self.client, node)()
        await connection.connect()
        return connection

    def _schedule_refresh(self) -> None:
        now = time.monotonic()
        if now - self._last_refresh < _REFRESH_EVERY:
            return
        self._last_refresh = now

        async def refresh() -> None:
            try:
                await refresh_topology(self.client)
            except Exception:
                self._last_refresh = 0.0  # try again on the next failure

        call_later(0.0, refresh)

    async def _pipeline(self, ops: list[Op]) -> list[Any]:
        """One pipeline per node (a plain one, so scripts work), replies back in op order."""
        await self._discover()  # node lookups below need the slot map
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, (key, _) in enumerate(ops):
            node = self._node(key_slot(key))
            by_node.setdefault(node.name, (node, []))[1].append(index)
        counts = [0] * len(ops)
        out: list[list[Any]] = [[] for _ in ops]
        for node, indexes in by_node.values():

            async def run(node: Any = node, indexes: list[int] = indexes) -> list[Any]:
                client = await node_client(self.client, node, self._node_clients)
                async with client.pipeline(transaction=False) as pipe:
                    for index in indexes:
                        before = len(pipe)
                        await ops[index][1](pipe)
                        counts[index] = len(pipe) - before
                    replies: list[Any] = await pipe.execute()
                    return replies

            replies = await self._call_on([ops[indexes[0]][0]], run)
            position = 0
            for index in indexes:
                out[index] = replies[position : position + counts[index]]
                position += counts[index]
        return [reply for replies in out for reply in replies]

    # ------------------------------------------------------------- lean path

    async def _send(self, node: Any, packed: bytes) -> Any:
        breaker = self._node_breaker(node.name)
        if not breaker.closed:
            self._probe_soon(breaker)
            raise CircuitOpen(f"circuit breaker for {node.name} is open")
        pool = self._node_pool(node)
        try:
            connection = await pool.take()
        except _HEALTH_FAILURES as exc:  # the dial failed
            await self._failed(node, None, None, exc)
            raise
        self.round_trips += 1
        try:
            await send_packed(connection, packed)
        except BaseException as exc:
            await self._failed(node, pool, connection, exc)
            raise
        return connection

    async def _receive(self, node: Any, connection: Any, replies: int) -> list[Any]:
        pool = self._node_pool(node)
        try:
            out = (
                [await _read(connection)] if replies == 1 else await _read_many(connection, replies)
            )
        except BaseException as exc:
            await self._failed(node, pool, connection, exc)
            raise
        pool.give(connection)
        for reply in out:
            if isinstance(reply, AskError | TryAgainError | ClusterDownError):
                await self._failed(node, None, None, reply)
                raise reply
        self._node_breaker(node.name).record_success()
        return out

    async def _failed(
        self, node: Any, pool: LeanPool | None, connection: Any, exc: BaseException
    ) -> None:
        if pool is not None:
            await pool.drop(connection)
        if isinstance(exc, AskError | TryAgainError):
            # MOVED/ASK/TRYAGAIN: the slot is elsewhere or migrating; not a sick node.
            self._schedule_refresh()
            raise TopologyChanged(str(exc)) from exc
        if isinstance(exc, (*_HEALTH_FAILURES, ClusterDownError)):
            self._node_breaker(node.name).record_failure(refused=_refused(exc))
            await self._node_pool(node).clear()
            self._schedule_refresh()

    async def _fan_out(self, by_node: list[tuple[Any, bytes, int]]) -> list[list[Any]]:
        """Write each node's buffer, to every node before reading any reply (the shards
        work in parallel); a failure on one node leaves no connection behind."""
        pending: list[tuple[Any, Any, int]] = []  # written, not read yet
        try:
            for node, packed, replies in by_node:
                pending.append((node, await self._send(node, packed), replies))
            out = []
            while pending:
                node, connection, replies = pending.pop(0)
                out.append(await self._receive(node, connection, replies))
            return out
        finally:
            for node, connection, _ in pending:
                await self._node_pool(node).drop(connection)

    async def _exchange(self, packed: bytes, replies: int) -> Any:
        raise NotImplementedError("on a cluster every command is routed: use _batch")

    async def _one(self, key: bytes, packed: bytes, replies: int) -> Any:
        out = await self._batch([(key, packed, replies)])
        return out[0] if replies == 1 else out

    async def _batch(self, commands: list[Command]) -> list[Any]:
        await self._discover()
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, (key, _, _) in enumerate(commands):
            node = self._node(key_slot(key))
            by_node.setdefault(node.name, (node, []))[1].append(index)
        groups = list(by_node.values())
        replies = await self._fan_out(
            [
                (
                    node,
                    b"".join(commands[i][1] for i in indexes),
                    sum(commands[i][2] for i in indexes),
                )
                for node, indexes in groups
            ]
        )
        out: list[list[Any]] = [[] for _ in commands]
        for (_, indexes), node_replies in zip(groups, replies, strict=True):
            position = 0
            for index in indexes:
                count = commands[index][2]
                out[index] = node_replies[position : position + count]
                position += count
        return [reply for command_replies in out for reply in command_replies]

    async def get(self, key: bytes) -> bytes | None:
        await self._discover()
        node = self._node(key_slot(key), read=True)
        connection = await self._send(node, _pack_get(key))
        reply = (await self._receive(node, connection, 1))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply  # type: ignore[no-any-return]

    async def mget(self, keys: list[bytes]) -> list[bytes | None]:
        await self._discover()
        by_slot: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            by_slot.setdefault(key_slot(key), []).append(index)
        by_node: dict[str, tuple[Any, list[list[int]]]] = {}
        for slot, indexes in by_slot.items():
            node = self._node(slot, read=True)
            by_node.setdefault(node.name, (node, []))[1].append(indexes)
        groups = list(by_node.values())
        replies = await self._fan_out(
            [
                (
                    node,
                    b"".join(_pack_mget([keys[i] for i in group]) for group in slots),
                    len(slots),
                )
                for node, slots in groups
            ]
        )
        out: list[bytes | None] = [None] * len(keys)
        for (_, slots), node_replies in zip(groups, replies, strict=True):
            for group, reply in zip(slots, node_replies, strict=True):
                if isinstance(reply, Exception):
                    raise reply
                for index, value in zip(group, reply, strict=True):
                    out[index] = value
        return out

    # ------------------------------------------------------------- broadcast

    async def sharded_broadcast(self) -> bool:
        """Sharded pub/sub unless asked otherwise, when every primary has it (Redis 7.0+):
        a classic PUBLISH crosses the cluster bus to every node, an SPUBLISH stays in the
        channel's shard (docs/cluster.md has the numbers). Decided once per cache."""
        if self._sharded is None:
            await self._discover()
            versions = [
                await self._node_info(node, "redis_version") for node in self.client.get_primaries()
            ]
            self._sharded = all(_version(v) >= (7, 0) for v in versions)
        return self._sharded

    async def subscriber(self, channel: str | None = None) -> Any:
        """A client to the owner of ``channel``'s slot (sharded), or to any primary."""
        self._check_loop()
        if channel is None:
            return await subscriber_client(self.client)
        if self._subscribed_once:
            self._schedule_refresh()  # a resubscription: the shard may have moved
        self._subscribed_once = True
        await self._discover()
        return await subscriber_client(self.client, self._node(key_slot(channel.encode())))

    async def release_subscriber(self, client: Any) -> None:
        await close_subscriber(client)

    async def run_id(self) -> str:
        """The run ids of every primary: any change means a node restarted."""
        ids = []
        for node in self.client.get_primaries():
            ids.append(f"{node.name}={await self._node_run_id(node)}")
        return ",".join(sorted(ids))

    async def _node_run_id(self, node: Any) -> str:
        return await self._node_info(node, "run_id")

    async def _node_info(self, node: Any, field: str) -> str:
        """One field of a node's INFO server."""
        pool = self._node_pool(node)
        connection = await pool.take()
        try:
            await send_packed(connection, _INFO_SERVER)
            info = await connection.read_response()
        except BaseException:
            await pool.drop(connection)
            raise
        pool.give(connection)
        text = info.decode() if isinstance(info, bytes) else str(info)
        for line in text.splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        return ""

    async def _replicas_for(self, key: bytes) -> int:
        """Replicas of the key's shard, from the slot map (no extra call)."""
        try:
            return min(1, len(self.client.nodes_manager.slots_cache[key_slot(key)]) - 1)
        except (KeyError, TypeError):
            return 0

    def describe(self) -> str:
        nodes = self.client.nodes_manager.startup_nodes
        return "cluster " + ",".join(sorted(nodes)) if nodes else "cluster"

    def breaker_summary(self) -> tuple[str, int, float]:
        breakers = self.breakers()
        states = {b.state for b in breakers}
        state = BreakerState.CLOSED
        for worst in (BreakerState.OPEN, BreakerState.HALF_OPEN):
            if worst in states:
                state = worst
                break
        return (
            state.value,
            sum(b.opened for b in breakers),
            max((b.seconds_open() for b in breakers), default=0.0),
        )

    async def release_loop(self) -> None:
        for pool in self._node_pools.values():
            await pool.clear()
        await close_node_clients(self._node_clients)
        if self._owns_client:
            await self.client.aclose()  # it dials again (and re-learns the map) on next use
        self._client_loop = None

    async def close(self) -> None:
        for pool in self._node_pools.values():
            pool.closed = True
            await pool.clear()
        self._node_pools.clear()
        await close_node_clients(self._node_clients)
        if self._owns_client:
            await self.client.aclose()
