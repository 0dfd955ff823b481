"""HTTP caching: a cached JSON route against the same route uncached and fastapi-cache2.

    python benchmarks/http.py [--seconds 5] [--concurrency 32] [--rounds 3]

Needs PostgreSQL (``VENEER_TEST_POSTGRES``) and ``pip install -e '.[dev,bench]'``.
One FastAPI app, one route that reads a product row from PostgreSQL and returns it
as JSON (about 1 KiB), served three ways, each by uvicorn with one worker on
loopback: uncached; behind ``veneer.http.HttpCache``; with fastapi-cache2's
``@cache`` on its ``RedisBackend`` (same private Redis). An asyncio load generator
in another process keeps ``--concurrency`` keep-alive connections busy over 20
product URLs (all cached after the warm-up) and reports requests/s, p50 and p99,
as the median over interleaved rounds. Then 2,000 distinct responses are stored
through each cache and Redis's ``used_memory`` growth per response is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

# This file is named http.py: take its folder off sys.path before anything imports the
# standard library's http package, which it would shadow.
_HERE = Path(__file__).resolve().parent
_TESTS = _HERE.parent / "tests"
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_TESTS))

import psycopg  # noqa: E402
import redis  # noqa: E402

from servers import POSTGRES_URL, RedisServer, free_port  # noqa: E402

DSN = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
KINDS = ["uncached", "veneer", "fastapi-cache2"]
PATHS = [f"/products/{i}" for i in range(1, 21)]


# ---------------------------------------------------------------- load generator


async def _connection(
    port: int, paths: list[str], offset: int, stop_at: float, start_at: float,
    latencies: list[float], errors: list[int],
) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            path = paths[i % len(paths)]
            i += 1
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench.test\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            await _read_body(reader, head)
            if now >= start_at:
                latencies.append(time.perf_counter() - now)
                if status != 200:
                    errors.append(status)
    finally:
        writer.close()


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    fields = head.lower()
    marker = b"\r\ncontent-length:"
    at = fields.find(marker)
    if at >= 0:
        end = fields.index(b"\r\n", at + 2)
        return await reader.readexactly(int(fields[at + len(marker) : end]))
    chunks = []
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def load(port: int, concurrency: int, warmup: float, seconds: float, out: Any) -> None:
    """Runs in its own process: ``concurrency`` connections for warmup + seconds."""

    async def main() -> tuple[list[float], list[int]]:
        latencies: list[float] = []
        errors: list[int] = []
        start_at = time.perf_counter() + warmup
        stop_at = start_at + seconds
        await asyncio.gather(
            *[
                _connection(port, PATHS, i, stop_at, start_at, latencies, errors)
                for i in range(concurrency)
            ]
        )
        return latencies, errors

    latencies, errors = asyncio.run(main())
    out.put((latencies, errors))


def measure(port: int, concurrency: int, warmup: float, seconds: float) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=load, args=(port, concurrency, warmup, seconds, queue))
    proc.start()
    latencies, errors = queue.get(timeout=warmup + seconds + 60)
    proc.join(30)
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": float(len(errors)),
    }


# --------------------------------------------------------------------- servers


class Server:
    def __init__(self, kind: str, redis_url: str, table: str) -> None:
        self.port = free_port()
        env = dict(os.environ, BENCH_KIND=kind, BENCH_REDIS=redis_url, BENCH_TABLE=table,
                   PYTHONPATH=str(_TESTS))  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "httpcache.bench_apps:app",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
             "--no-access-log", "--log-level", "warning"],
            cwd=_TESTS, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{kind} server exited") from None
                time.sleep(0.05)
        raise RuntimeError(f"{kind} server did not start")

    def get(self, path: str) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), 5) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def make_table() -> str:
    table = f"bench_products_{uuid.uuid4().hex[:8]}"
    description = "A sturdy product that does what it says. " * 18  # about 1 KiB of JSON
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY, name text, price numeric, description text)"
        )
        rows = "SELECT g, 'product ' || g, g * 1.5, %s FROM generate_series(1, 5000) g"
        conn.execute(f"INSERT INTO {table} {rows}", (description,))
    return table


def drop_table(table: str) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


def memory_per_response(
    kind: str, redis_server: RedisServer, table: str, n: int
) -> tuple[float, int]:
    """Redis ``used_memory`` growth per stored response, and one response's body size."""
    client = redis_server.client()
    server = Server(kind, redis_server.url, table)
    try:
        server.get("/products/4999")  # one-time keys (stamps, epoch) before the baseline
        time.sleep(0.2)
        before = int(client.info("memory")["used_memory"])
        body = b""
        for pid in range(1000, 1000 + n):
            body = server.get(f"/products/{pid}").split(b"\r\n\r\n", 1)[1]
        time.sleep(0.5)
        after = int(client.info("memory")["used_memory"])
    finally:
        server.stop()
        client.close()
    return (after - before) / n, len(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--responses", type=int, default=2000)
    args = parser.parse_args()

    redis_server = RedisServer()
    table = make_table()
    try:
        results: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        for _ in range(args.rounds):
            for kind in KINDS:
                redis.Redis(port=redis_server.port).flushall()
                server = Server(kind, redis_server.url, table)
                try:
                    results[kind].append(
                        measure(server.port, args.concurrency, args.warmup, args.seconds)
                    )
                finally:
                    server.stop()
        memory = {}
        for kind in ("veneer", "fastapi-cache2"):
            redis.Redis(port=redis_server.port).flushall()
            memory[kind] = memory_per_response(kind, redis_server, table, args.responses)
    finally:
        drop_table(table)
        redis_server.stop()

    base = statistics.median(r["rps"] for r in results["uncached"])
    print(
        f"{args.concurrency} connections, {args.seconds:g} s per round, "
        f"median of {args.rounds} rounds\n"
    )
    print("| case | requests/s | p50 ms | p99 ms | vs uncached |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind in KINDS:
        rows = results[kind]
        rps = statistics.median(r["rps"] for r in rows)
        p50 = statistics.median(r["p50"] for r in rows)
        p99 = statistics.median(r["p99"] for r in rows)
        errors = sum(r["errors"] for r in rows)
        note = f" ({errors:g} non-200)" if errors else ""
        print(f"| {kind}{note} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {rps / base:.2f}x |")
    print("\n| store | Redis bytes per stored response | body bytes |")
    print("| --- | ---: | ---: |")
    for kind, (per, body) in memory.items():
        print(f"| {kind} | {per:,.0f} | {body:,} |")


if __name__ == "__main__":
    main()
