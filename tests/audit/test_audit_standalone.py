"""Promise 7 on one server: the audit names exactly the anti-patterns that are there."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import redis
from audit_helpers import FAST, seed_clean, significant
from click.testing import CliRunner

from servers import RedisServer
from veneer.audit import AuditReport, Severity, render_html, render_text, run_audit
from veneer.audit._facts import version_tuple
from veneer.audit.cli import audit


def _expected_seeded(server: RedisServer) -> set[tuple[str, str]]:
    node = f"127.0.0.1:{server.port}"
    expected = {
        ("source-of-truth-risk", "nottl:*"),
        # sess:<id> with a TTL is express-session's layout (connect-redis): on a server
        # without persistence a restart logs every user out.
        ("session-store", "sess:*"),
        ("eviction-policy", node),
        ("big-key", "blob:1"),
        ("big-key", "bighash:1"),
        ("slowlog-blocking", "KEYS"),
        ("slowlog-blocking", "EVAL"),
        ("blocking-commands", "KEYS"),
        ("blocking-commands", "EVAL"),
        ("logical-dbs", node),
        ("security", node),
    }
    c = server.client()
    try:
        version = str(c.info("server")["redis_version"])
    finally:
        c.close()
    if version_tuple(version) < (7, 0, 0):
        expected.add(("version", node))  # an end-of-life server is a finding too
    return expected


def test_seeded_instance_yields_exactly_its_antipatterns(seeded: RedisServer) -> None:
    """A server seeded with known anti-patterns yields those findings, on the right prefixes."""
    report = run_audit(seeded.url, FAST)
    assert significant(report) == _expected_seeded(seeded)

    by_id = {(f.id, f.where): f for f in report.findings}
    truth = by_id[("source-of-truth-risk", "nottl:*")]
    assert truth.severity is Severity.HIGH  # no persistence: a restart loses it
    assert truth.evidence["keys_estimated"] == 500
    assert truth.evidence["no_ttl_keys_share"] == 1.0
    assert truth.summary.startswith("nottl:*: 500 keys")  # read whole: no "~"
    assert by_id[("big-key", "blob:1")].severity is Severity.HIGH  # 2 MB is 20x the limit
    assert by_id[("big-key", "bighash:1")].evidence["length"] == 6000
    assert by_id[("slowlog-blocking", "KEYS")].evidence["keys_pattern"] == "*"

    prefixes = {(p.db, p.pattern): p for p in report.prefixes}
    assert prefixes[(0, "sess:*")].no_ttl_keys_share == 0.0
    assert prefixes[(0, "nottl:*")].keys_estimated == 500
    assert (1, "other:*") in prefixes
    assert report.sampling.complete and report.sampling.keys_sampled == 1003
    # A complete read has no sampling error: every interval is a point.
    assert prefixes[(0, "nottl:*")].no_ttl_keys_ci95 == (1.0, 1.0)
    assert report.findings[0].severity.rank >= report.findings[-1].severity.rank


def test_clean_instance_has_no_high_finding(server: RedisServer) -> None:
    """A cache where every key expires, under LRU and a password, raises nothing high."""
    password = "s3cret-Pa55"
    seed_clean(server, password)
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    report = run_audit(url, FAST)
    assert [f for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank] == []
    assert {f.id for f in report.findings if f.severity is Severity.LOW} <= {"version"}
    assert all(p.no_ttl_keys_share == 0 for p in report.prefixes)
    assert {p.pattern for p in report.prefixes} == {"product:*", "user:*:profile"}


def test_password_never_appears_in_any_output(server: RedisServer, tmp_path: Path) -> None:
    """The URL's password is masked in the target and absent from text, JSON and HTML."""
    password = "hunter2-Very-Secret"
    seed_clean(server, password)
    url = f"redis://default:{password}@127.0.0.1:{server.port}/0"
    report = run_audit(url, FAST)
    assert report.target == f"redis://default:***@127.0.0.1:{server.port}/0"
    from rich.console import Console

    console = Console(record=True, width=160)
    render_text(report, console)
    outputs = [console.export_text(), report.to_json().decode(), render_html(report)]
    for text in outputs:
        assert password not in text


def test_json_document_is_stable_and_parses_back(seeded: RedisServer) -> None:
    """The JSON report has the documented shape and decodes back into the typed report."""
    report = run_audit(seeded.url, FAST)
    doc = json.loads(report.to_json())
    assert doc["schema"] == "veneer.audit/1"
    assert {"target", "findings", "prefixes", "server", "sampling"} <= set(doc)
    for f in doc["findings"]:
        assert {"id", "severity", "evidence", "advice"} <= set(f)
        assert f["severity"] in {"info", "low", "medium", "high", "critical"}
    assert any("prefix" in f for f in doc["findings"])
    assert any("key" in f for f in doc["findings"])
    assert doc["server"]["topology"] == "standalone"
    again = msgspec.json.decode(report.to_json(), type=AuditReport)
    assert again == report


def test_html_report_is_self_contained_and_escaped(server: RedisServer, tmp_path: Path) -> None:
    """The HTML report has its charts inline, no script, and escapes hostile key names."""
    c = server.client()
    try:
        c.set("<script>alert(1)</script>", "x")
        c.set("user:1", "x", ex=60)
    finally:
        c.close()
    page = render_html(run_audit(server.url, FAST))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert page.count("<svg") >= 3  # findings, memory per prefix, TTL coverage per prefix
    assert "http://" not in page and "https://" not in page


def test_managed_service_without_config_slowlog_acl_memory(tmp_path: Path) -> None:
    """Where CONFIG, SLOWLOG, ACL and MEMORY are disabled the audit runs and says what it missed."""
    disabled = ("CONFIG", "SLOWLOG", "ACL", "MEMORY", "DEBUG")
    args = [a for cmd in disabled for a in ("--rename-command", cmd, "")]
    server = RedisServer(*args)
    try:
        c = server.client()
        try:
            for i in range(50):
                c.set(f"nottl:{i}", "x")
            with_error = False
            try:
                c.execute_command("CONFIG", "GET", "maxmemory")
            except redis.ResponseError:
                with_error = True
            assert with_error
        finally:
            c.close()
        report = run_audit(server.url, FAST)
    finally:
        server.stop()
    blind = " ".join(report.blind_spots)
    for what in ("CONFIG GET", "SLOWLOG", "ACL LIST", "MEMORY USAGE"):
        assert what in blind
    assert ("source-of-truth-risk", "nottl:*") in significant(report)
    prefix = report.prefixes[0]
    assert prefix.bytes_estimated is None and prefix.keys_estimated == 50
    # Without ACL LIST, connecting without a password proves the default user has none.
    assert ("security", f"127.0.0.1:{server.port}") in significant(report)


def test_hot_keys_under_lfu(server: RedisServer) -> None:
    """Under an LFU policy the most accessed key is named as hot."""
    c = server.client()
    try:
        c.config_set("maxmemory", 64 * 1024 * 1024)
        c.config_set("maxmemory-policy", "allkeys-lfu")
        c.config_set("lfu-log-factor", 0)  # every access counts, so 300 hits saturate it
        for i in range(100):
            c.set(f"item:{i}", "v", ex=600)
        pipe = c.pipeline(transaction=False)
        for _ in range(300):
            pipe.get("item:7")
        pipe.execute()
    finally:
        c.close()
    report = run_audit(server.url, FAST)
    hot = [f for f in report.findings if f.id == "hot-key"]
    assert [f.key for f in hot] == ["item:7"]
    assert report.hot_keys[0].key == "item:7"


def test_cli_json_fail_on_and_html(seeded: RedisServer, tmp_path: Path) -> None:
    """`veneer audit --format json --fail-on high --html F` prints JSON, writes HTML, exits 1."""
    page = tmp_path / "report.html"
    result = CliRunner().invoke(
        audit,
        [
            seeded.url,
            "--format",
            "json",
            "--fail-on",
            "high",
            "--html",
            str(page),
            "--cpu-window",
            "0.1",
        ],
    )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert any(f["id"] == "big-key" for f in doc["findings"])
    assert page.read_text().startswith("<!doctype html>")

    result = CliRunner().invoke(audit, [seeded.url, "--fail-on", "critical", "--cpu-window", "0"])
    assert result.exit_code == 0, result.output
    assert "source-of-truth-risk" in result.stdout and "nottl:*" in result.stdout


def test_cli_usage_and_unreachable_exit_codes() -> None:
    """A bad URL is a usage error (2); a server that does not answer is exit code 3."""
    runner = CliRunner()
    bad = runner.invoke(audit, ["http://:pw@host/"])
    assert bad.exit_code == 2
    assert "pw" not in bad.output
    from servers import free_port

    down = runner.invoke(audit, [f"redis://127.0.0.1:{free_port()}", "--timeout", "0.5"])
    assert down.exit_code == 3


def test_tls_url_is_audited_over_tls(tmp_path: Path) -> None:
    """rediss:// with a CA file connects over TLS, and the no-TLS finding disappears."""
    import subprocess

    from servers import free_port, tls_support_problem

    problem = tls_support_problem()
    assert problem is None, problem  # a failure naming what is missing, never a skip
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    openssl = [
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1",
    ]  # fmt: skip
    subprocess.run(openssl, check=True, capture_output=True, timeout=60)
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
    server = RedisServer(*tls)  # CI's redis-server is built with TLS (see tests/topologies.py)
    try:
        c = server.client()
        try:
            c.set("user:1", "v")
        finally:
            c.close()
        report = run_audit(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}", FAST)
    finally:
        server.stop()
    assert report.server.nodes[0].address == f"127.0.0.1:{tls_port}"
    assert ("source-of-truth-risk", "user:*") in significant(report)
    assert not any("without TLS" in f.summary for f in report.findings)


def test_progress_bar_on_a_terminal(server: RedisServer) -> None:
    """On a terminal the audit draws a progress bar through its phases (and removes it)."""
    import io

    from rich.console import Console

    from veneer.audit.cli import _BarProgress

    c = server.client()
    try:
        c.mset({f"k:{i}": i for i in range(200)})
    finally:
        c.close()
    screen = io.StringIO()
    with _BarProgress(Console(file=screen, force_terminal=True, width=100)) as bar:
        report = run_audit(server.url, FAST, progress=bar)
    assert report.sampling.keys_sampled == 200
    assert "sampling keys" in screen.getvalue()
