"""``veneer demo`` runs on the embedded default and on real servers, and cleans up after itself."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

from servers import POSTGRES_URL, RedisServer


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veneer.cli", "demo", "--products", "200", "--reads", "2000",
         "--format", "json", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def test_demo_on_the_embedded_default_and_stops_its_redis() -> None:
    """With no options: a private redis-server and SQLite; veneer loads each key at most once."""
    done = run_demo()
    results = {r["name"]: r for r in json.loads(done.stdout)}
    assert results["no cache"]["source_queries"] == 2000
    naive = results["naive cache-aside (redis-py)"]
    veneer = results["veneer (L1 + Redis)"]
    assert 0 < veneer["source_queries"] <= 200
    assert veneer["source_queries"] == naive["source_queries"]  # both load each key once
    assert veneer["l1_hit_ratio"] > 0.5
    assert results["veneer, 2nd process (warm Redis)"]["source_queries"] == 0
    port = int(re.search(r"redis://127\.0\.0\.1:(\d+)", done.stderr).group(1))
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the demo's redis-server is still running"


def test_demo_on_postgresql_and_a_given_redis(redis_server: RedisServer) -> None:
    """--db and --redis point the demo at real servers."""
    dsn = POSTGRES_URL
    done = run_demo("--db", dsn, "--redis", redis_server.url)
    results = json.loads(done.stdout)
    assert results[0]["name"] == "no cache"
    assert results[0]["source_queries"] == 2000
    assert results[2]["source_queries"] <= 200
    assert "started a private redis-server" not in done.stderr
    # A Redis given with --redis is left as it was found.
    assert "removed the demo's" in done.stderr
    client = redis_server.client()
    try:
        assert list(client.scan_iter(match="*veneer-demo*", count=1000)) == []
    finally:
        client.close()
