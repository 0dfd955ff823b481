"""Promise 7 beyond one server: every primary of a cluster, replicas on request, sentinel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from audit_helpers import FAST, significant

from topologies import LocalCluster, LocalSentinel
from veneer.audit import AuditOptions, Severity, run_audit

USERS = 900
SESSIONS = 900


@pytest.fixture(scope="module")
def seeded_cluster(cluster: LocalCluster) -> Iterator[LocalCluster]:
    rc = cluster.client()
    try:
        pipe = rc.pipeline()
        for i in range(USERS):
            pipe.set(f"user:{i}", "u" * 30)
        for i in range(SESSIONS):
            pipe.set(f"session:{i}", "s" * 30, ex=3600)
        pipe.execute()
        rc.hset("{big}:hash", mapping={f"f{i}": i for i in range(6000)})
        rc.expire("{big}:hash", 3600)
    finally:
        rc.close()
    cluster.wait_replicated()
    yield cluster


def test_cluster_findings_from_every_primary_merged_per_prefix(
    seeded_cluster: LocalCluster,
) -> None:
    """On a 3-primary cluster every primary is audited and a prefix is one row across nodes."""
    report = run_audit(seeded_cluster.url, FAST)
    primaries = sorted(f"127.0.0.1:{s.port}" for s in seeded_cluster.primaries())

    assert report.server.topology == "cluster"
    assert sorted(n.address for n in report.server.nodes) == primaries
    assert all(n.role == "primary" for n in report.server.nodes)

    users = [p for p in report.prefixes if p.pattern == "user:*"]
    assert len(users) == 1  # merged, not one row per node
    assert users[0].keys_estimated == USERS and users[0].nodes == primaries
    assert users[0].no_ttl_keys_share == 1.0

    found = significant(report)
    assert ("source-of-truth-risk", "user:*") in found
    assert ("no-ttl", "user:*") not in found  # one finding per prefix, not two
    assert ("big-key", "{big}:hash") in found
    assert ("no-ttl", "session:*") not in found
    # Server checks ran on each primary: noeviction and maxmemory 0 everywhere.
    eviction = [f for f in report.findings if f.id == "eviction-policy"]
    assert sorted(n for f in eviction for n in f.nodes) == primaries
    # Each primary has a replica: the risk names asynchronous replication, not "no replica".
    risk = next(f for f in report.findings if f.id == "source-of-truth-risk")
    assert risk.severity is Severity.HIGH
    assert all(v["replicas"] == 1 for v in risk.evidence["nodes"].values())


def test_cluster_reads_keys_from_replicas_when_asked(seeded_cluster: LocalCluster) -> None:
    """--replicas samples keys on replicas (READONLY) while server checks stay on primaries."""
    report = run_audit(
        seeded_cluster.url, AuditOptions(cpu_window=0.1, budget=50_000, replicas=True)
    )
    primaries = {f"127.0.0.1:{s.port}" for s in seeded_cluster.primaries()}
    users = next(p for p in report.prefixes if p.pattern == "user:*")
    assert users.keys_estimated == USERS
    assert not set(users.nodes) & primaries  # read from the replicas
    assert len(users.nodes) == 3
    assert not any("could not be read" in b for b in report.blind_spots)
    truth = next(f for f in report.findings if f.id == "source-of-truth-risk")
    # The facts behind the risk are the primaries' (persistence, eviction, replicas).
    assert set(truth.evidence["nodes"]) == primaries


def test_cluster_url_lists_several_seed_nodes_and_masks_password(
    seeded_cluster: LocalCluster,
) -> None:
    """A cluster URL with several seeds and credentials works; the report shows no password."""
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in seeded_cluster.servers[:3])
    report = run_audit(f"redis+cluster://default:@{hosts}", FAST)
    assert len(report.server.nodes) == 3
    assert report.target.startswith("redis+cluster://default:***@")


def test_sentinel_audits_the_current_primary(sentinel: LocalSentinel) -> None:
    """redis+sentinel://host:port/service audits the primary the sentinel names."""
    c = sentinel.primary.client()
    try:
        for i in range(20):
            c.set(f"cfg:{i}", "v")
    finally:
        c.close()
    report = run_audit(sentinel.url, FAST)
    assert report.server.topology == "sentinel"
    assert [n.address for n in report.server.nodes] == [f"127.0.0.1:{sentinel.primary.port}"]
    assert ("source-of-truth-risk", "cfg:*") in significant(report)


def test_primary_names_its_replicas_when_gossip_lags(seeded_cluster: LocalCluster) -> None:
    """The fallback that asks a primary for its online replicas finds exactly one each."""
    from veneer.audit._target import _common_kwargs, _node, _online_replicas, parse_target

    kwargs = _common_kwargs(parse_target(seeded_cluster.url), 2.0)
    replica_ports = {s.port for s in seeded_cluster.servers} - {
        s.port for s in seeded_cluster.primaries()
    }
    found = set()
    for s in seeded_cluster.primaries():
        reps = _online_replicas(_node("127.0.0.1", s.port, "primary", kwargs))
        assert len(reps) == 1
        found.add(reps[0][1])
    assert found == replica_ports


def test_one_cluster_node_as_plain_url_says_it_is_partial(seeded_cluster: LocalCluster) -> None:
    """redis:// to one cluster node audits that node and says the rest was not covered."""
    node = seeded_cluster.primaries()[0]
    report = run_audit(f"redis://127.0.0.1:{node.port}", FAST)
    assert len(report.server.nodes) == 1
    assert any("redis+cluster://" in b for b in report.blind_spots)
