"""Redis URLs: parsing every form veneer accepts, and hiding their secrets.

Accepted forms::

    redis://[user:pass@]host:port[/db]        rediss://...  (TLS)
    unix://[user:pass@]/path/to/socket[?db=0]
    redis+cluster://[user:pass@]host:port[,host:port...]       rediss+cluster://...
    redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]   rediss+sentinel://...

TLS options ride in the query string: ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile``, ``ssl_cert_reqs`` (``required`` by default: certificates are
verified unless the URL says otherwise). For Sentinel, ``sentinel_password`` and
``sentinel_username`` authenticate to the sentinels themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from ._errors import ConfigurationError

__all__ = [
    "Target",
    "Topology",
    "client_kwargs",
    "mask_url",
    "parse_target",
    "scrub",
    "validate_url",
]

Topology = Literal["standalone", "cluster", "sentinel"]

_SECRET_PARAM = re.compile(r"(pass|auth|token|secret)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with every password replaced by ``***`` (safe to print and to store)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        # Not a URL at all, but it may still hold "user:password@host".
        return "***@" + url.rpartition("@")[2] if "@" in url else url
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
        # urllib's own messages quote the text it could not parse, which can be a
        # password (``redis://u:pa#ss@host``): only veneer's messages are shown.
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ConfigurationError(
                f"bad Redis URL {masked!r}: unbalanced brackets around an IPv6 address"
            ) from None
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ConfigurationError(
                f"bad Redis URL {masked!r}: the port is not a number from 0 to 65535. "
                "Characters such as '#', '/', '?' and '@' in a password must be "
                "percent-encoded (%23, %2F, %3F, %40)"
            ) from None
        query = dict(parse_qsl(parts.query))
        # A unix URL's path is the socket; its db can only come from ?db=.
        db_text = query.get("db") or ("" if base == "unix" else parts.path.strip("/"))
        db = _int_option(db_text or "0", masked)
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
            db=db,
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


def scrub(text: str, url: str) -> str:
    """``text`` (a third-party message about ``url``) without the URL's secrets."""
    target_secrets = [url]
    _, sep, rest = url.partition("://")
    userinfo = rest.rpartition("@")[0] if sep else url.rpartition("@")[0]
    if ":" in userinfo:
        target_secrets += [userinfo.partition(":")[2], unquote(userinfo.partition(":")[2])]
    for name, value in parse_qsl(urlsplit(url).query if sep else ""):
        if _SECRET_PARAM.search(name):
            target_secrets.append(value)
    for secret in sorted(filter(None, target_secrets), key=len, reverse=True):
        text = text.replace(secret, "***" if secret != url else mask_url(url))
    return text


def _int_option(text: str, masked: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"bad database number {text!r} in {masked!r}") from None


def validate_url(url: object) -> str:
    """``url`` if veneer can use it, else a ConfigurationError saying what to change."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"Redis URL must be a non-empty string, got {url!r}")
    target = parse_target(url)
    if target.topology == "standalone" and not target.unix and not urlsplit(url).hostname:
        raise ConfigurationError(f"Redis URL {target.masked!r} has no host")
    if target.unix and not target.hosts[0][0]:
        raise ConfigurationError(f"unix URL {target.masked!r} has no socket path")
    return url


def tls_kwargs(target: Target) -> dict[str, Any]:
    """redis-py TLS options from the URL (certificates verified unless it says otherwise)."""
    if not target.tls:
        return {}
    kwargs: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": "required"}
    for name in ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if name in target.options:
            kwargs[name] = target.options[name]
    return kwargs


def client_kwargs(redis_timeout: float, connect_timeout: float) -> dict[str, Any]:
    """Options for every client veneer builds: short deadlines (retries are switched off
    by the caller with its own ``Retry`` class, which differs between redis and redis.asyncio).

    A cache call that waits out three retries of a dead server is worse than a
    miss; veneer falls through to the source instead (and the breaker, not a
    retry loop, decides when to try Redis again).
    """
    return {
        "socket_timeout": redis_timeout,
        "socket_connect_timeout": connect_timeout,
        "decode_responses": False,
        "health_check_interval": 0,
    }
