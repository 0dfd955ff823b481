"""Every command meets bad input with one clear line and an exit code: no traceback, no
password, and no check that passes when it measured nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from servers import POSTGRES_URL, RedisServer, reap
from veneer import Cache, ConfigurationError
from veneer.cli import main

SECRET = "S3cretPW"
WRONG = "WrongPW1"
PG_DOWN = "postgresql://postgres@127.0.0.1:1/test"
PG_NO_DB = POSTGRES_URL.replace("/test", "/veneer_no_such_db")
REDIS_DOWN = "redis://127.0.0.1:1/0"
BAD_URL = f"redis://alice:{SECRET}#frag@127.0.0.1:6390/0"


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[RedisServer]:
    """A server where user alice has a password (the default user stays open)."""
    server = RedisServer("--user", "alice", "on", f">{SECRET}", "~*", "&*", "+@all")
    yield server
    server.stop()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def assert_clean_failure(result: Result, code: int, *fragments: str) -> None:
    text = result.output
    assert result.exit_code == code, (result.exit_code, text, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    assert "Traceback" not in text
    assert SECRET not in text and WRONG not in text
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_urls_with_passwords_never_show_them() -> None:
    """A bad URL's error masks its password in every form veneer accepts, including the
    parts urllib or redis-py would have quoted."""
    bad = [
        f"redis://default:{SECRET}#frag@host:6379/0",
        f"redis://default:{SECRET}@host:6379/notadb",
        f"redis://host:6379/0?password={SECRET}&db=x",
        f"redis://u:{SECRET}@host:6379/0?socket_timeout=abc",
        f"unix://u:{SECRET}@/tmp/veneer.sock?db=zz",
        f"redis+sentinel://u:{SECRET}@h1:26379,h2:xx/mymaster",
        f"redis+sentinel://u:{SECRET}@h1:26379/mymaster/zz?sentinel_password={SECRET}",
        f"redis+cluster://u:{SECRET}@h1:7000,h2:bad",
        f"redis://u:{SECRET}@[::1/0",
        f"u:{SECRET}@host",
    ]
    for url in bad:
        with pytest.raises(ConfigurationError) as caught:
            Cache.from_url(url, namespace="x", ttl=1)
        assert SECRET not in str(caught.value), url
        assert SECRET not in repr(caught.value), url


def test_demo_fails_cleanly_before_seeding(acl_redis: RedisServer) -> None:
    """demo: a bad, unreachable or refusing Redis or database, and bad counts, give one
    line and a non-zero exit before anything is started or seeded."""
    wrong = f"redis://alice:{WRONG}@127.0.0.1:{acl_redis.port}/0"
    assert_clean_failure(invoke("demo", "--redis", BAD_URL), 2, "percent-encoded")
    assert_clean_failure(invoke("demo", "--redis", "notaurl"), 2, "not a URL")
    assert_clean_failure(invoke("demo", "--redis", REDIS_DOWN), 3, "nothing accepts")
    assert_clean_failure(invoke("demo", "--redis", wrong), 2, "authentication")
    assert_clean_failure(invoke("demo", "--db", "notaurl"), 2, "bad database URL")
    assert_clean_failure(invoke("demo", "--db", PG_DOWN), 3, "cannot reach the database")
    assert_clean_failure(invoke("demo", "--db", PG_NO_DB), 2, "does not exist")
    assert_clean_failure(invoke("demo", "--duration", "1"), 2, "--duration")
    assert_clean_failure(invoke("demo", "--html", "/nonexistent-dir/x.html"), 2, "--html")


def test_verify_never_passes_on_nothing(acl_redis: RedisServer, namespace: str) -> None:
    """verify: usage errors exit 2, an unreachable Redis 3, and a namespace with nothing to
    check 4, also under --max-divergence."""
    ok, wrong = acl_redis.url, f"redis://alice:{WRONG}@127.0.0.1:{acl_redis.port}/0"
    base = ("--reload", "workers:source_value")
    assert_clean_failure(invoke("verify", "--redis", BAD_URL, "--namespace", "n", *base), 2)
    assert_clean_failure(invoke("verify", "--redis", REDIS_DOWN, "--namespace", "n", *base), 3)
    assert_clean_failure(invoke("verify", "--redis", wrong, "--namespace", "n", *base), 2)
    assert_clean_failure(invoke("verify", "--redis", ok, "--namespace", "bad:ns", *base), 2)
    for sample in ("-1", "5000"):
        result = invoke("verify", "--redis", ok, "--namespace", "n", *base, "--sample", sample)
        assert_clean_failure(result, 2, "--sample")
    empty = invoke(
        "verify", "--redis", ok, "--namespace", namespace, *base, "--max-divergence", "0"
    )
    assert_clean_failure(empty, 4, "nothing checked")


def test_verify_survives_a_reload_that_raises(redis_server: RedisServer, namespace: str) -> None:
    """One key whose reload raises is counted against the gate; the run goes on."""
    with Cache.from_url(redis_server.url, namespace=namespace, ttl=60, registry_every=1) as cache:
        for i in range(10):
            cache.get_or_load(f"item:{i}", lambda i=i: i)
    result = invoke(
        "verify", "--redis", redis_server.url, "--namespace", namespace,
        "--reload", "workers:reload_raising_for_item_3", "--format", "json",
        "--max-divergence", "0.5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"reload_errors": 1' in result.output and '"checked": 9' in result.output


def test_relay_once_fails_cleanly(acl_redis: RedisServer) -> None:
    """relay --once: the Redis URL is checked before the database is touched; an
    unreachable database or Redis exits 3, a missing database or outbox table 2."""
    wrong = f"redis://alice:{WRONG}@127.0.0.1:{acl_redis.port}/0"
    ok = acl_redis.url
    assert_clean_failure(invoke("relay", "--once", "--db", PG_DOWN, "--redis", BAD_URL), 2)
    assert_clean_failure(invoke("relay", "--once", "--db", "notaurl", "--redis", ok), 2)
    assert_clean_failure(invoke("relay", "--once", "--db", PG_DOWN, "--redis", ok), 3)
    assert_clean_failure(invoke("relay", "--once", "--db", PG_NO_DB, "--redis", ok), 2)
    assert_clean_failure(invoke("relay", "--once", "--db", POSTGRES_URL, "--redis", wrong), 2)
    assert_clean_failure(invoke("relay", "--once", "--db", POSTGRES_URL, "--redis", REDIS_DOWN), 3)
    missing = invoke(
        "relay", "--once", "--db", POSTGRES_URL, "--redis", ok, "--table", "veneer_no_outbox"
    )
    assert_clean_failure(missing, 2, "does not exist", "create_outbox")


def test_listen_refuses_what_retrying_cannot_fix(acl_redis: RedisServer, tmp_path: Path) -> None:
    """listen: a bad Redis URL, a DSN that is not PostgreSQL, a missing database or a
    wrong password exit 2 at once, before listening."""
    wrong = f"redis://alice:{WRONG}@127.0.0.1:{acl_redis.port}/0"
    ok = acl_redis.url
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    assert_clean_failure(invoke("listen", "--db", POSTGRES_URL, "--redis", "notaurl"), 2)
    assert_clean_failure(invoke("listen", "--db", POSTGRES_URL, "--redis", BAD_URL), 2)
    assert_clean_failure(invoke("listen", "--db", sqlite, "--redis", ok), 2, "PostgreSQL")
    assert_clean_failure(invoke("listen", "--db", "notaurl", "--redis", ok), 2)
    assert_clean_failure(invoke("listen", "--db", PG_NO_DB, "--redis", ok), 2, "does not exist")
    assert_clean_failure(invoke("listen", "--db", POSTGRES_URL, "--redis", wrong), 2)
    result = invoke("listen", "--db", POSTGRES_URL, "--redis", ok, "--resync", "bad:ns")
    assert_clean_failure(result, 2, "namespace")


def test_audit_fails_cleanly_and_up_front(acl_redis: RedisServer, tmp_path: Path) -> None:
    """audit: a refused login is a usage error (2), not "cannot reach" (3); an --html in a
    missing directory fails before the audit runs."""
    wrong = f"redis://alice:{WRONG}@127.0.0.1:{acl_redis.port}/0"
    assert_clean_failure(invoke("audit", wrong, "--timeout", "1"), 2, "refused the login")
    started = time.monotonic()
    html = str(tmp_path / "missing" / "report.html")
    assert_clean_failure(invoke("audit", acl_redis.url, "--html", html), 2, "writable directory")
    assert time.monotonic() - started < 2.0
    assert_clean_failure(invoke("audit", BAD_URL), 2, "percent-encoded")


def test_relay_and_listen_say_they_retry_and_stop_on_sigterm(redis_server: RedisServer) -> None:
    """With the database down, relay and listen say so within seconds, keep retrying, and
    stop at once on SIGTERM."""
    cli = [sys.executable, "-c", "from veneer.cli import main; main()"]
    paths = [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    procs = {
        name: subprocess.Popen(
            [*cli, name, "--db", PG_DOWN, "--redis", redis_server.url, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for name, extra in (("relay", ["--interval", "0.2"]), ("listen", []))
    }
    try:
        for name, proc in procs.items():
            assert proc.stderr is not None
            deadline = time.monotonic() + 10
            line = ""
            while "retrying" not in line:
                line = proc.stderr.readline().decode()
                assert line, f"{name} exited: {proc.wait(5)}"
                assert time.monotonic() < deadline, name
            assert f"veneer {name}: cannot reach the database" in line
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            started = time.monotonic()
            assert proc.wait(10) == 0, name
            assert time.monotonic() - started < 3.0, name
    finally:
        for proc in procs.values():
            reap(proc)
