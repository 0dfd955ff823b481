"""veneer on Redis Cluster: batched reads and throughput, as ratios in one run.

    python benchmarks/cluster.py

Starts a 3-primary cluster (no replicas) and one standalone server, then:
1. get_many of 100 keys (L1 off) against 100 single GETs and against redis-py's
   ``RedisCluster.mget_nonatomic``, same keys, same values;
2. PUBLISH against SPUBLISH latency on the cluster (the invalidation channel);
3. throughput of a skewed read load (4 processes, L1 off so every read reaches
   Redis) on 1 node against the 3-primary cluster;
4. the whole cost of one invalidation message on 3 and 6 primaries, classic
   PUBLISH against sharded SPUBLISH: publisher latency, server CPU and bytes
   written summed over every node (``/proc/<pid>/io``), cluster-bus messages
   (``python benchmarks/cluster.py --only fanout`` runs this part alone).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import msgspec
from _timing import compare, report

from servers import RedisServer
from topologies import LocalCluster
from veneer import Cache

ROW = {"id": 1, "name": "x" * 200, "price": 9.99}


def batched_reads(cluster: LocalCluster) -> None:
    keys = [f"item:{i}" for i in range(100)]
    with Cache.from_url(cluster.url, namespace="bench", ttl=600, l1_size=0, stamp_ttl=600) as c:
        c.get_or_load_many(keys, lambda ks: dict.fromkeys(ks, ROW))
        raw = cluster.client()
        payload = msgspec.msgpack.encode(ROW)
        raw_keys = [f"{{raw}}:{i}" for i in range(50)] + [f"raw:{i}" for i in range(50)]
        for k in raw_keys:
            raw.set(k, payload, ex=600)
        decoder = msgspec.msgpack.Decoder()
        results = compare(
            {
                "100 single veneer get": lambda: [c.get(k) for k in keys],
                "RedisCluster.mget_nonatomic + decode": lambda: [
                    decoder.decode(v) for v in raw.mget_nonatomic(raw_keys)
                ],
                "veneer get_many (100 keys)": lambda: c.get_many(keys),
            },
            number=50,
            rounds=5,
        )
        report("cluster: 100 keys", results, "RedisCluster.mget_nonatomic + decode")
        raw.close()


def pubsub_latency(cluster: LocalCluster) -> None:
    raw = cluster.client()
    node = raw.get_primaries()[0]
    client = raw.get_redis_connection(node)
    results = compare(
        {
            "PUBLISH (cluster-wide)": lambda: raw.publish("veneer:inv:{bench}", b"x" * 40),
            "SPUBLISH (shard)": lambda: raw.spublish("veneer:inv:{bench}", b"x" * 40),
        },
        number=500,
        rounds=5,
    )
    report("cluster: one invalidation message", results, "PUBLISH (cluster-wide)")
    _ = client
    raw.close()


def _reader(url: str, seconds: float, out: Any) -> None:
    rng = random.Random()
    weights = [1.0 / (r**1.1) for r in range(1, 2001)]
    keys = [f"k:{i}" for i in rng.choices(range(2000), weights=weights, k=50_000)]
    with Cache.from_url(url, namespace="tput", ttl=600, l1_size=0, stamp_ttl=600) as cache:
        cache.get_or_load_many(list(dict.fromkeys(keys))[:500], lambda ks: dict.fromkeys(ks, 1))
        done = 0
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            cache.get_or_load(keys[i % len(keys)], lambda: 1)
            i += 1
            done += 1
    out.put(done)


def throughput(url: str, processes: int = 4, seconds: float = 5.0) -> float:
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    procs = [ctx.Process(target=_reader, args=(url, seconds, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def _server_totals(cluster: LocalCluster) -> tuple[float, int, int]:
    """(CPU seconds, bytes written, cluster-bus messages sent) summed over every node."""
    cpu = 0.0
    written = 0
    bus = 0
    for server in cluster.servers:
        assert server.proc is not None
        client = server.client()
        info = client.info("cpu")
        cpu += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        stats = client.execute_command("CLUSTER", "INFO")
        text = stats.decode() if isinstance(stats, bytes) else str(stats)
        for line in text.splitlines():
            if line.startswith(
                ("cluster_stats_messages_publish_sent", "cluster_stats_messages_publishshard_sent")
            ):
                bus += int(line.split(":")[1])
        client.close()
        for line in Path(f"/proc/{server.proc.pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                written += int(line.split()[1])
    return cpu, written, bus


SUBSCRIBERS = 6


def fanout(primaries: int, messages: int = 5000) -> dict[str, tuple[float, float, float, float]]:
    """Per invalidation, classic and sharded: publisher us, server CPU us (all nodes), bytes
    written (all nodes), bus messages. SUBSCRIBERS processes listen: spread over the
    primaries (classic), or all on the channel's shard (sharded)."""
    cluster = LocalCluster(primaries=primaries, replicas=0)
    out: dict[str, tuple[float, float, float, float]] = {}
    try:
        raw = cluster.client()
        channel = "veneer:inv:{bench}"
        payload = msgspec.msgpack.encode(("0123456789abcdef", "k", "user:12345", 0))
        subscribers = []
        owner = raw.get_node_from_key(channel)
        for mode in ("classic", "sharded"):
            primaries_list = raw.get_primaries()
            for i in range(SUBSCRIBERS):
                node = primaries_list[i % len(primaries_list)]
                sub = raw.get_redis_connection(owner if mode == "sharded" else node).pubsub()
                if mode == "sharded":
                    sub.ssubscribe(channel)
                else:
                    sub.subscribe(channel)
                subscribers.append(sub)
            publish = raw.spublish if mode == "sharded" else raw.publish
            for _ in range(200):
                publish(channel, payload)
            time.sleep(0.2)
            cpu0, written0, bus0 = _server_totals(cluster)
            started = time.perf_counter()
            for _ in range(messages):
                publish(channel, payload)
            seconds = time.perf_counter() - started
            time.sleep(0.2)  # the bus delivers after the reply
            cpu1, written1, bus1 = _server_totals(cluster)
            out[mode] = (
                seconds / messages * 1e6,
                (cpu1 - cpu0) / messages * 1e6,
                (written1 - written0) / messages,
                (bus1 - bus0) / messages,
            )
            for sub in subscribers:
                sub.close()
            subscribers.clear()
        raw.close()
    finally:
        cluster.stop()
    return out


def fanout_report() -> None:
    print(f"\none invalidation message (40 B), {SUBSCRIBERS} subscribers, per message, all nodes")
    print(f"  {'primaries':>9} {'mode':<8} {'publish us':>10} {'server CPU us':>13} "
          f"{'bytes written':>13} {'bus msgs':>8}")  # fmt: skip
    for primaries in (3, 6):
        for mode, (latency, cpu, written, bus) in fanout(primaries).items():
            print(f"  {primaries:>9} {mode:<8} {latency:>10.1f} {cpu:>13.1f} {written:>13.0f} "
                  f"{bus:>8.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["fanout"], help="run one part only")
    if parser.parse_args().only == "fanout":
        fanout_report()
        return
    cluster = LocalCluster(primaries=3, replicas=0)
    single = RedisServer()
    try:
        batched_reads(cluster)
        pubsub_latency(cluster)
        one = throughput(single.url)
        three = throughput(cluster.url)
        print("\nskewed reads, 4 processes, L1 off (every read reaches Redis)")
        print(f"  1 node:            {one:9.0f} reads/s   1.00x")
        print(f"  3-primary cluster: {three:9.0f} reads/s   {three / one:.2f}x")
    finally:
        cluster.stop()
        single.stop()
    fanout_report()


if __name__ == "__main__":
    main()
