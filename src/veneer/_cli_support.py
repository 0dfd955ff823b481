"""What every ``veneer`` command does with bad input: one clear line, an exit code, no secret.

Exit codes shared by the commands: 0 done, 1 the check ran and failed (divergence,
rows left, a finding at ``--fail-on``), 2 bad usage (a bad URL or option, a wrong
password, a database that does not exist), 3 unreachable (nothing answered),
4 nothing measured (a check that had nothing to check never passes).
"""

from __future__ import annotations

from typing import Any

import click

from ._errors import ConfigurationError
from ._url import mask_url, scrub, validate_url

__all__ = [
    "EXIT_FAILED",
    "EXIT_NOTHING_MEASURED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CommandFailed",
    "database_problem",
    "postgres_problem",
    "redis_problem",
    "redis_url",
]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_NOTHING_MEASURED = 4

# What a database says when the DSN is wrong rather than the server down.
_CONFIG_WORDS = (
    "does not exist",
    "authentication failed",
    "no password supplied",
    "password",
    "invalid dsn",
    'missing "="',
    "invalid connection option",
    "unable to open database",
    "unknown database",
    "access denied",
)


class CommandFailed(click.ClickException):
    """Printed as ``Error: <message>`` on stderr, exit ``code``: no traceback."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        setattr(self, "exit_code", code)  # noqa: B010 - a class attribute on ClickException


Problem = tuple[str, int]


def redis_url(url: str, hint: str = "--redis") -> str:
    """``url`` if veneer can use it, else a usage error (exit 2) with the URL masked."""
    try:
        return validate_url(url)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


def redis_problem(url: str, timeout: float = 2.0) -> Problem | None:
    """None when Redis at ``url`` answers a PING; else what is wrong and the exit code."""
    from ._errors import describe_redis_failure
    from ._sync._redis_io import build_client

    where = mask_url(url)
    client: Any = None
    try:
        client = build_client(url, redis_timeout=timeout, connect_timeout=timeout)
        client.ping()
    except ConfigurationError as exc:
        return str(exc), EXIT_USAGE
    except Exception as exc:
        message = scrub(describe_redis_failure(exc, where), url)
        code = EXIT_USAGE if message.startswith("authentication") else EXIT_UNREACHABLE
        return message, code
    finally:
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
    return None


def _database_problem(exc: BaseException, dsn: str) -> Problem:
    original = getattr(exc, "orig", None) or exc
    text = scrub(str(original).strip().splitlines()[0] if str(original).strip() else "", dsn)
    text = text or exc.__class__.__name__
    lowered = text.lower()
    if any(word in lowered for word in _CONFIG_WORDS):
        return f"the database at {mask_url(dsn)} refused the connection: {text}", EXIT_USAGE
    return f"cannot reach the database at {mask_url(dsn)}: {text}", EXIT_UNREACHABLE


def database_problem(dsn: str, timeout: float = 3.0) -> Problem | None:
    """None when the SQLAlchemy URL ``dsn`` connects; else what is wrong and the exit code."""
    try:
        import sqlalchemy as sa
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    except ImportError:
        return "this command needs SQLAlchemy: pip install 'veneer[sqlalchemy]'", EXIT_USAGE
    from .integrations.outbox import sqlalchemy_url

    url = sqlalchemy_url(dsn)
    try:
        connect_args = {"connect_timeout": max(1, round(timeout))} if "postgres" in url else {}
        engine = sa.create_engine(url, connect_args=connect_args)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        reason = scrub(str(exc).splitlines()[0], dsn)
        return (
            f"bad database URL {mask_url(dsn)!r}: {reason}; use a SQLAlchemy URL such as "
            "postgresql://user@host:5432/db or sqlite:///path.db",
            EXIT_USAGE,
        )
    try:
        with engine.connect():
            pass
    except Exception as exc:
        return _database_problem(exc, dsn)
    finally:
        engine.dispose()
    return None


def postgres_problem(dsn: str, timeout: float = 3.0) -> Problem | None:
    """None when PostgreSQL at the libpq DSN (or URL) ``dsn`` accepts a connection."""
    import psycopg

    from .integrations.postgres import libpq_dsn

    conninfo = libpq_dsn(dsn)
    scheme = conninfo.partition("://")[0] if "://" in conninfo else ""
    if scheme and scheme not in {"postgres", "postgresql"}:
        return (
            f"{mask_url(dsn)!r} is not a PostgreSQL DSN: this command needs PostgreSQL "
            "(LISTEN/NOTIFY); use postgresql://user@host:5432/db or 'host=... dbname=...'",
            EXIT_USAGE,
        )
    try:
        psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        return f"bad PostgreSQL DSN {mask_url(dsn)!r}: {scrub(str(exc), dsn)}", EXIT_USAGE
    try:
        with psycopg.connect(conninfo, connect_timeout=max(1, round(timeout))):
            pass
    except Exception as exc:
        return _database_problem(exc, dsn)
    return None
