"""``veneer verify`` measures cache/source divergence on a sample of recent fills."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import workers
from servers import RedisServer
from veneer import Cache
from veneer.verify import verify


def fill(url: str, namespace: str, wrong: set[int]) -> None:
    with Cache.from_url(url, namespace=namespace, ttl=60, registry_every=1) as cache:
        for i in range(50):
            key = f"item:{i}"
            value = -1 if i in wrong else workers.source_value(key)
            cache.get_or_load(key, lambda value=value: value)


def test_verify_reports_the_share_that_diverges(redis_server: RedisServer, namespace: str) -> None:
    """5 of 50 entries hold a value the source no longer has: verify finds exactly those."""
    fill(redis_server.url, namespace, wrong={3, 7, 11, 19, 42})
    with Cache.from_url(redis_server.url, namespace=namespace, l1_size=0) as cache:
        report = verify(cache, workers.source_value, sample=50)
    assert (report.sampled, report.checked, report.diverged) == (50, 50, 5)
    assert report.divergence == 0.1
    assert {d.key for d in report.examples} <= {"item:3", "item:7", "item:11", "item:19", "item:42"}
    assert all(d.cached == -1 for d in report.examples)


def test_verify_cli(redis_server: RedisServer, namespace: str) -> None:
    """The command prints JSON and fails CI above --max-divergence."""
    fill(redis_server.url, namespace, wrong={1})
    command = [
        sys.executable, "-m", "veneer.cli", "verify", "--redis", redis_server.url,
        "--namespace", namespace, "--reload", "workers:source_value", "--sample", "50",
        "--format", "json",
    ]  # fmt: skip
    env_path = str(Path(__file__).parent)
    env = {"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=True)
    report = json.loads(done.stdout)
    assert report["checked"] == 50 and report["diverged"] == 1
    failed = subprocess.run(
        [*command, "--max-divergence", "0.01"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert failed.returncode == 1
