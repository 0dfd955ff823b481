"""What to audit: parse the URL, hide its password, and open one connection per node.

Accepted forms::

    redis://[user:pass@]host:port[/db]        rediss://...  (TLS)
    unix://[user:pass@]/path/to/socket[?db=0]
    redis+cluster://[user:pass@]host:port[,host:port...]       rediss+cluster://...
    redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]   rediss+sentinel://...

A cluster is discovered with ``redis.cluster.RedisCluster``; the audit then
talks to each node through its own plain client, because SCAN and INFO are per
node and a replica needs READONLY on every connection that reads keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import AbstractConnection
from redis.retry import Retry
from redis.sentinel import Sentinel

from .._url import Target, mask_url, parse_target

__all__ = ["Node", "Shard", "Target", "mask_url", "open_shards", "parse_target"]

CLIENT_NAME = "veneer-audit"


@dataclass(slots=True)
class Node:
    """One server the audit talks to, with one lazily opened client per db."""

    address: str
    role: Literal["primary", "replica"]
    factory: Callable[[int], redis.Redis]
    _clients: dict[int, redis.Redis] = field(default_factory=dict)

    def client(self, db: int = 0) -> redis.Redis:
        found = self._clients.get(db)
        if found is None:
            found = self._clients[db] = self.factory(db)
        return found

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        self._clients.clear()


@dataclass(slots=True)
class Shard:
    """A primary (server checks) and the node its keys are read from (itself or a replica)."""

    primary: Node
    read_from: Node
    note: str | None = None  # why keys are not read where the user asked

    def close(self) -> None:
        self.primary.close()
        if self.read_from is not self.primary:
            self.read_from.close()


def _common_kwargs(target: Target, timeout: float) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        # RESP2 works on every server version, including managed ones without HELLO.
        "protocol": 2,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # An audit must not silently re-send a pipeline: a failure is reported instead.
        "retry": Retry(NoBackoff(), 0),
        "client_name": CLIENT_NAME,
    }
    if target.username:
        kwargs["username"] = target.username
    if target.password:
        kwargs["password"] = target.password
    if target.tls:
        kwargs["ssl"] = True
        for name in ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if name in target.options:
                kwargs[name] = target.options[name]
    return kwargs


def _readonly_on_connect(conn: AbstractConnection) -> None:
    # READONLY lives on the connection: send it on every (re)connect, as redis-py's cluster does.
    conn.on_connect()  # type: ignore[no-untyped-call]
    conn.send_command("READONLY")  # type: ignore[no-untyped-call]
    if conn.read_response() not in (b"OK", "OK"):
        raise redis.ConnectionError("READONLY failed")


def _node(
    host: str,
    port: int,
    role: Literal["primary", "replica"],
    kwargs: dict[str, Any],
    *,
    readonly: bool = False,
) -> Node:
    def factory(db: int) -> redis.Redis:
        extra: dict[str, Any] = {}
        if readonly:  # only cluster replicas redirect keyed reads without it
            extra["redis_connect_func"] = _readonly_on_connect
        return redis.Redis(host=host, port=port, db=db, **kwargs, **extra)

    return Node(address=f"{host}:{port}", role=role, factory=factory)


def open_shards(target: Target, *, replicas: bool = False, timeout: float = 5.0) -> list[Shard]:
    """Discover the servers behind ``target``; raises redis errors when none answers."""
    kwargs = _common_kwargs(target, timeout)
    if target.topology == "cluster":
        return _cluster_shards(target, kwargs, replicas=replicas)
    if target.topology == "sentinel":
        return _sentinel_shards(target, kwargs, replicas=replicas)

    # redis-py parses TLS options from a rediss:// URL itself (and its SSL connection
    # class takes no ``ssl`` argument).
    url_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("ssl")}

    def factory(db: int) -> redis.Redis:
        # redis-py lets the URL's own db win over a db= argument: set it on the pool.
        pool = redis.ConnectionPool.from_url(target.url, **url_kwargs)
        pool.connection_kwargs["db"] = db
        return redis.Redis.from_pool(pool)

    host, port = target.hosts[0]
    node = Node(address=host if target.unix else f"{host}:{port}", role="primary", factory=factory)
    return [Shard(primary=node, read_from=node)]


def _cluster_shards(target: Target, kwargs: dict[str, Any], *, replicas: bool) -> list[Shard]:
    startup = [ClusterNode(h, p) for h, p in target.hosts]  # type: ignore[no-untyped-call]
    cluster_kwargs = {k: v for k, v in kwargs.items() if k not in {"retry", "client_name"}}
    rc = RedisCluster(startup_nodes=startup, **cluster_kwargs)
    try:
        # slots_cache maps each slot to [primary, replica...]: the only place that
        # says which replica belongs to which primary.
        replica_of: dict[str, list[tuple[str, int]]] = {}
        for nodes in rc.nodes_manager.slots_cache.values():
            if not nodes:
                continue
            reps = replica_of.setdefault(nodes[0].name, [])
            for r in nodes[1:]:
                if (r.host, r.port) not in reps:
                    reps.append((r.host, r.port))
        primaries = sorted((n.host, int(n.port)) for n in rc.get_primaries())  # type: ignore[no-untyped-call]
    finally:
        rc.close()
    shards = []
    for host, port in primaries:
        primary = _node(host, port, "primary", kwargs)
        read_from, note = primary, None
        if replicas:
            # The slot table comes from one node's gossip view, which can lag behind a
            # new replica; the primary itself knows its replicas for sure.
            reps = replica_of.get(f"{host}:{port}") or _online_replicas(primary)
            if reps:
                read_from = _node(*reps[0], "replica", kwargs, readonly=True)
            else:
                note = f"{primary.address} has no online replica: its keys were read from it"
        shards.append(Shard(primary=primary, read_from=read_from, note=note))
    return shards


def _online_replicas(primary: Node) -> list[tuple[str, int]]:
    try:
        info = primary.client(0).info("replication")
    except redis.RedisError:
        return []
    finally:
        primary.close()
    out = []
    for name, value in info.items():
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online":
            out.append((str(value["ip"]), int(value["port"])))
    return out


def _sentinel_shards(target: Target, kwargs: dict[str, Any], *, replicas: bool) -> list[Shard]:
    assert target.service is not None
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": kwargs["socket_timeout"],
        "socket_connect_timeout": kwargs["socket_connect_timeout"],
        "protocol": 2,
    }
    if "sentinel_password" in target.options:
        sentinel_kwargs["password"] = target.options["sentinel_password"]
    if target.tls:
        sentinel_kwargs["ssl"] = True
    sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call, unused-ignore]
    try:
        host, port = sentinel.discover_master(target.service)  # type: ignore[no-untyped-call, unused-ignore]
        # redis-py 8 types the reply as a sequence of encodable pairs; it is (host, port).
        found_replicas = (
            cast(
                "list[tuple[str, int]]",
                sentinel.discover_slaves(target.service),  # type: ignore[no-untyped-call, unused-ignore]
            )
            if replicas
            else []
        )
    finally:
        for s in sentinel.sentinels:
            s.close()
    primary = _node(host, int(port), "primary", kwargs)
    read_from = primary
    if found_replicas:
        rhost, rport = found_replicas[0]
        read_from = _node(rhost, int(rport), "replica", kwargs)
    return [Shard(primary=primary, read_from=read_from)]
