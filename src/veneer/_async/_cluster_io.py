"""L2 I/O on Redis Cluster: the same operations as ``AsyncL2``, routed per node.

Reads stay on the lean path, per node: ``get`` goes to the key's node;
``mget`` groups keys by slot (a cluster MGET must stay in one slot) and sends
each node one buffer holding its slots' MGETs, to every node before reading any
reply, so the shards answer in parallel and the batch costs one round trip per
shard. Everything else goes through redis-py's ``RedisCluster``, which routes by
key and follows MOVED. Each node has its own circuit breaker: a dead shard
degrades only its own keys. A connection error or a redirect schedules a
refresh of the slot map in the background, so reads find a promoted replica.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from .._breaker import BreakerState, CircuitBreaker
from .._fork import park
from ._concurrency import call_later
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
    Op,
    _pack_get,
    _pack_mget,
    _refused,
    forget_pool,
)

__all__ = ["AsyncClusterL2", "TopologyChanged"]

_REFRESH_EVERY = 0.5  # seconds between slot-map refreshes at most


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
    ) -> None:
        super().__init__(
            client, breaker_for("cluster"), owns_client=owns_client, replica_wait=replica_wait
        )
        self._breaker_for = breaker_for
        self._node_breakers: dict[str, CircuitBreaker] = {}
        self._node_free: dict[str, deque[Any]] = {}
        self._factories: dict[str, Callable[[], Any]] = {}
        self._read_from_replicas = read_from_replicas
        self._node_clients: dict[str, Any] = {}
        self._last_refresh = 0.0
        self.round_trips = 0  # lean reads sent, one per node per batch (tests count them)

    # ------------------------------------------------------------- plumbing

    def breakers(self) -> list[CircuitBreaker]:
        return list(self._node_breakers.values()) or [self.breaker]

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
        super().after_fork()
        park((self._node_free, self._node_clients))
        self._node_free = {}
        self._node_clients = {}
        for node in self.client.get_nodes():
            # redis-py's asyncio cluster keeps connections on its nodes (no pid check).
            if hasattr(node, "_free"):
                park((node._connections, node._free))
                node._connections = []
                node._free = deque(maxlen=node._free.maxlen)
            else:
                forget_pool(getattr(node.redis_connection, "connection_pool", None))

    async def _discover(self) -> None:
        """The asyncio cluster client learns its nodes on first use; lean reads need them."""
        if getattr(self.client, "_initialize", False):
            # Not started yet (the asyncio client starts lazily): its start-up also readies
            # the command parser that commands sent through it (not lean reads) route with.
            try:
                await self.client.initialize()
            except (*_HEALTH_FAILURES, SlotNotCoveredError) as exc:
                raise TopologyChanged(f"cluster topology unknown: {exc}") from exc
        elif not self.client.nodes_manager.slots_cache:
            try:
                await refresh_topology(self.client)
            except (*_HEALTH_FAILURES, SlotNotCoveredError) as exc:
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

    # ------------------------------------------------------------- lean reads

    def _connection_for(self, node: Any) -> Any:
        if self._pid != os.getpid():
            self._node_free.clear()
            self._pid = os.getpid()
        free = self._node_free.get(node.name)
        if free:
            try:
                return free.pop()
            except IndexError:
                pass
        factory = self._factories.get(node.name)
        if factory is None:
            factory = self._factories[node.name] = node_connection_factory(self.client, node)
        return factory()

    async def _send(self, node: Any, packed: bytes) -> Any:
        breaker = self._node_breaker(node.name)
        if not breaker.closed:
            self._probe_soon(breaker)
            raise CircuitOpen(f"circuit breaker for {node.name} is open")
        connection = self._connection_for(node)
        self.round_trips += 1
        try:
            await connection.send_packed_command([packed], False)  # connects if needed
        except BaseException as exc:
            await self._failed(node, connection, exc)
            raise
        return connection

    async def _receive(self, node: Any, connection: Any, replies: int) -> list[Any]:
        try:
            out = [await connection.read_response() for _ in range(replies)]
        except BaseException as exc:
            await self._failed(node, connection, exc)
            raise
        self._node_free.setdefault(node.name, deque()).append(connection)
        self._node_breaker(node.name).record_success()
        return out

    async def _failed(self, node: Any, connection: Any, exc: BaseException) -> None:
        await connection.disconnect()
        if isinstance(exc, AskError | TryAgainError):
            # MOVED/ASK/TRYAGAIN: the slot is elsewhere or migrating; not a sick node.
            self._schedule_refresh()
            raise TopologyChanged(str(exc)) from exc
        if isinstance(exc, (*_HEALTH_FAILURES, ClusterDownError)):
            self._node_breaker(node.name).record_failure(refused=_refused(exc))
            free = self._node_free.pop(node.name, None)
            while free:
                await free.pop().disconnect()
            self._schedule_refresh()

    async def get(self, key: bytes) -> bytes | None:
        await self._discover()
        node = self._node(key_slot(key), read=True)
        connection = await self._send(node, _pack_get(key))
        reply: bytes | None = (await self._receive(node, connection, 1))[0]
        return reply

    async def mget(self, keys: list[bytes]) -> list[bytes | None]:
        await self._discover()
        by_slot: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            by_slot.setdefault(key_slot(key), []).append(index)
        by_node: dict[str, tuple[Any, list[list[int]]]] = {}
        for slot, indexes in by_slot.items():
            node = self._node(slot, read=True)
            by_node.setdefault(node.name, (node, []))[1].append(indexes)
        # Write every node's MGETs first, then read: the shards work in parallel.
        sent = []
        for node, groups in by_node.values():
            packed = b"".join(_pack_mget([keys[i] for i in group]) for group in groups)
            sent.append((node, groups, await self._send(node, packed)))
        out: list[bytes | None] = [None] * len(keys)
        for node, groups, connection in sent:
            replies = await self._receive(node, connection, len(groups))
            for group, reply in zip(groups, replies, strict=True):
                for index, value in zip(group, reply, strict=True):
                    out[index] = value
        return out

    # ------------------------------------------------------------- broadcast

    async def subscriber(self) -> Any:
        return await subscriber_client(self.client)

    async def release_subscriber(self, client: Any) -> None:
        await close_subscriber(client)

    async def run_id(self) -> str:
        """The run ids of every primary: any change means a node restarted."""
        ids = []
        for node in self.client.get_primaries():
            ids.append(f"{node.name}={await self._node_run_id(node)}")
        return ",".join(sorted(ids))

    async def _node_run_id(self, node: Any) -> str:
        connection = self._connection_for(node)
        try:
            await connection.send_command("INFO", "server")
            info = await connection.read_response()
        except BaseException:
            await connection.disconnect()
            raise
        self._node_free.setdefault(node.name, deque()).append(connection)
        text = info.decode() if isinstance(info, bytes) else str(info)
        for line in text.splitlines():
            if line.startswith("run_id:"):
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

    async def close(self) -> None:
        for free in self._node_free.values():
            while free:
                await free.pop().disconnect()
        self._node_free.clear()
        await close_node_clients(self._node_clients)
        if self._owns_client:
            await self.client.aclose()
