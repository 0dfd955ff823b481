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

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import AbstractConnection
from redis.retry import Retry
from redis.sentinel import Sentinel

from .._errors import ConfigurationError

__all__ = ["Node", "Shard", "Target", "mask_url", "open_shards", "parse_target"]

Topology = Literal["standalone", "cluster", "sentinel"]

_SECRET_PARAM = re.compile(r"(pass|auth|token|secret)", re.IGNORECASE)
CLIENT_NAME = "veneer-audit"


def mask_url(url: str) -> str:
    """The URL with every password replaced by ``***`` (safe to print and to store)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The authority ends at the first "/" or "?" after the last "@" (a password may contain "/").
    at = rest.rfind("@")
    head_end = len(rest)
    for ch in "/?":
        pos = rest.find(ch, at + 1)
        if pos != -1:
            head_end = min(head_end, pos)
    authority, tail = rest[:head_end], rest[head_end:]
    if "@" in authority:
        userinfo, hosts = authority.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        authority = f"{user}:***@{hosts}" if colon else f"{userinfo}@{hosts}"
    path, qmark, query = tail.partition("?")
    if qmark:
        parts = []
        for item in query.split("&"):
            name, eq, _ = item.partition("=")
            parts.append(f"{name}=***" if eq and _SECRET_PARAM.search(name) else item)
        tail = f"{path}?{'&'.join(parts)}"
    return f"{scheme}://{authority}{tail}"


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed audit URL. ``masked`` is the only form that may be shown."""

    url: str = field(repr=False)
    masked: str
    topology: Topology
    tls: bool
    unix: bool
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None = field(repr=False)
    service: str | None = None
    db: int = 0
    options: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def loopback_only(self) -> bool:
        """True when every address is a local one (unix socket or loopback)."""
        return self.unix or all(_is_loopback(h) for h, _ in self.hosts)


def _is_loopback(host: str) -> bool:
    return host in {"localhost", "::1"} or host.startswith("127.")


def _parse_hosts(text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in filter(None, text.split(",")):
        if item.startswith("["):  # [::1]:6379
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        try:
            hosts.append((host, int(port) if port else default_port))
        except ValueError:
            raise ConfigurationError(f"bad port in {item!r}") from None
    if not hosts:
        raise ConfigurationError("the URL names no host")
    return tuple(hosts)


def parse_target(url: str) -> Target:
    """Parse an audit URL; a ConfigurationError's message never shows the password."""
    masked = mask_url(url)
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigurationError(f"not a URL: {masked!r}; use redis://host:port")
    base, _, kind = scheme.partition("+")
    if base not in {"redis", "rediss", "unix"} or kind not in {"", "cluster", "sentinel"}:
        raise ConfigurationError(
            f"unsupported scheme {scheme!r} in {masked!r}; use redis://, rediss://, unix://, "
            "redis+cluster:// or redis+sentinel://"
        )
    tls = base == "rediss"
    if base == "unix" or not kind:
        # Single servers: redis-py's own parser knows every option (db, TLS, timeouts).
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        db = _int_option(query.get("db") or parts.path.strip("/") or "0", masked)
        if base == "unix":
            hosts: tuple[tuple[str, int], ...] = ((parts.path, 0),)
        else:
            hosts = ((parts.hostname or "localhost", parts.port or 6379),)
        return Target(
            url=url,
            masked=masked,
            topology="standalone",
            tls=tls,
            unix=base == "unix",
            hosts=hosts,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            db=db if base != "unix" else _int_option(query.get("db", "0"), masked),
        )
    at = rest.rfind("@")
    userinfo = rest[:at] if at != -1 else ""
    after = rest[at + 1 :]
    hostpart, _, pathquery = after.partition("/")
    if "?" in hostpart:
        hostpart, _, q = hostpart.partition("?")
        pathquery = "?" + q
    path, _, query_text = pathquery.partition("?")
    user, colon, pw = userinfo.partition(":")
    options = dict(parse_qsl(query_text))
    service: str | None = None
    db = 0
    if kind == "sentinel":
        segments = [s for s in path.split("/") if s]
        if not segments:
            raise ConfigurationError(
                f"{masked!r} names no service; use redis+sentinel://host:26379/service_name"
            )
        service = unquote(segments[0])
        db = _int_option(segments[1] if len(segments) > 1 else "0", masked)
    return Target(
        url=url,
        masked=masked,
        topology=kind,  # type: ignore[arg-type]  # checked against the literal set above
        tls=tls,
        unix=False,
        hosts=_parse_hosts(hostpart, 26379 if kind == "sentinel" else 6379),
        username=unquote(user) if user else None,
        password=unquote(pw) if colon and pw else None,
        service=service,
        db=db,
        options=options,
    )


def _int_option(text: str, masked: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"bad database number {text!r} in {masked!r}") from None


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
    sentinel = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    try:
        host, port = sentinel.discover_master(target.service)  # type: ignore[no-untyped-call]
        found_replicas: list[tuple[str, int]] = (
            sentinel.discover_slaves(target.service)  # type: ignore[no-untyped-call]
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
