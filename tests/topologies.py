"""Multi-process topologies for the tests: Redis Cluster, Sentinel, and TLS servers.

Every process is started on a free loopback port and stopped by PID; nothing
here touches the shared instance on 6379.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from servers import RedisServer, free_port, redis_server_binary, tls_support_problem


def redis_cli_binary() -> str:
    """The redis-cli that ships with the redis-server the tests use."""
    server = Path(redis_server_binary())
    sibling = server.with_name("redis-cli")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("redis-cli")
    if found is None:  # pragma: no cover - CI installs redis-tools with redis-server
        raise RuntimeError("redis-cli not found next to redis-server nor on PATH")
    return found


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port <= 55535 and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except redis.RedisError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


class LocalCluster:
    """``primaries`` primaries with ``replicas`` replicas each, created with redis-cli --cluster."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="veneer-cluster-"))
        self.replicas = replicas
        self.servers: list[RedisServer] = []
        try:
            for i in range(primaries * (1 + replicas)):
                args = [
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(self.dir / f"nodes-{i}.conf"),
                    "--cluster-node-timeout", "2000",
                ]  # fmt: skip
                self.servers.append(RedisServer(*args, port=cluster_port()))
            addresses = [f"127.0.0.1:{s.port}" for s in self.servers]
            create = [
                redis_cli_binary(), "--cluster", "create", *addresses,
                "--cluster-replicas", str(replicas), "--cluster-yes",
            ]  # fmt: skip
            subprocess.run(
                create,
                check=True,
                capture_output=True,
                timeout=60,
            )
            for s in self.servers:
                _wait(lambda s=s: self._state_ok(s), 30, f"cluster_state:ok on {s.port}")
            _wait(self._replicas_up, 30, "replicas in sync")
            _wait(self._views_agree, 30, "every node to see every replica")
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _state_ok(server: RedisServer) -> bool:
        c = server.client(socket_timeout=1)
        try:
            info = c.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            return "cluster_state:ok" in text
        finally:
            c.close()

    def _replicas_up(self) -> bool:
        for s in self.servers:
            c = s.client(socket_timeout=1)
            try:
                info = c.info("replication")
            finally:
                c.close()
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def _views_agree(self) -> bool:
        """Gossip has converged: every node's CLUSTER SLOTS lists a replica per range."""
        for s in self.servers:
            c = s.client(socket_timeout=1)
            try:
                ranges = c.execute_command("CLUSTER", "SLOTS")
            finally:
                c.close()
            if any(len(r) < 3 + self.replicas for r in ranges):
                return False
        return True

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers[:2])

    def primaries(self) -> list[RedisServer]:
        out = []
        for s in self.servers:
            c = s.client(socket_timeout=1)
            try:
                if c.info("replication")["role"] == "master":
                    out.append(s)
            finally:
                c.close()
        return out

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.servers[0].port)

    def wait_replicated(self) -> None:
        """Block until every replica has the primaries' writes."""
        for s in self.primaries():
            c = s.client(socket_timeout=10)
            try:
                c.execute_command("WAIT", 1, 5000)
            finally:
                c.close()

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class LocalSentinel:
    """One primary watched by one sentinel (quorum 1) under the name ``service``."""

    def __init__(self, service: str = "veneer") -> None:
        self.service = service
        self.primary = RedisServer()
        self.dir = Path(tempfile.mkdtemp(prefix="veneer-sentinel-"))
        self.port = free_port()
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {service} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {service} 5000\n"
        )
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel", "--logfile", str(self.dir / "s.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(self._knows_primary, 15, "sentinel to know its primary")
        except BaseException:
            self.stop()
            raise

    def _knows_primary(self) -> bool:
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            addr = c.execute_command("SENTINEL", "get-master-addr-by-name", self.service)
            return bool(addr)
        finally:
            c.close()

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
        self.primary.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """A primary, one replica and three sentinels (quorum 2), for failover tests."""

    def __init__(self, service: str = "veneer") -> None:
        self.service = service
        self.dir = Path(tempfile.mkdtemp(prefix="veneer-sentinels-"))
        self.primary = RedisServer()
        self.replica = RedisServer("--replicaof", "127.0.0.1", str(self.primary.port))
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for i, port in enumerate(self.sentinel_ports):
                conf = self.dir / f"sentinel-{i}.conf"
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                    f"sentinel monitor {service} 127.0.0.1 {self.primary.port} 2\n"
                    f"sentinel down-after-milliseconds {service} 1000\n"
                    f"sentinel failover-timeout {service} 5000\n"
                    f"sentinel parallel-syncs {service} 1\n"
                )
                self.procs.append(
                    subprocess.Popen(
                        [redis_server_binary(), str(conf), "--sentinel",
                         "--logfile", str(self.dir / f"s{i}.log")],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
            _wait(self._replica_up, 20, "the replica to sync")
            _wait(self._sentinels_see_each_other, 30, "sentinels to find each other")
        except BaseException:
            self.stop()
            raise

    def _replica_up(self) -> bool:
        c = self.replica.client(socket_timeout=1)
        try:
            return c.info("replication").get("master_link_status") == "up"
        finally:
            c.close()

    def _sentinels_see_each_other(self) -> bool:
        for port in self.sentinel_ports:
            c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
            try:
                state = c.sentinel_master(self.service)
                if int(state.get("num-other-sentinels", 0)) < 2:
                    return False
                if int(state.get("num-slaves", 0)) < 1:
                    return False
            finally:
                c.close()
        return True

    def current_primary_port(self) -> int:
        c = redis.Redis(host="127.0.0.1", port=self.sentinel_ports[0], socket_timeout=1)
        try:
            _host, port = c.execute_command("SENTINEL", "get-master-addr-by-name", self.service)
            return int(port)
        finally:
            c.close()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.procs.clear()
        self.primary.stop()
        self.replica.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def tls_material(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate it signed (for 127.0.0.1), and an unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.pem" for name in ("ca", "ca_key", "cert", "key", "csr",
                                                      "other_ca", "other_key")}  # fmt: skip
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    for ca, key in (("ca", "ca_key"), ("other_ca", "other_key")):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(paths[key]),
            "-out",
            str(paths[ca]),
            "-subj",
            f"/CN=veneer {ca}",
        )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(paths["key"]),
        "-out",
        str(paths["csr"]),
        "-subj",
        "/CN=127.0.0.1",
    )
    openssl("x509", "-req", "-in", str(paths["csr"]), "-CA", str(paths["ca"]),
            "-CAkey", str(paths["ca_key"]), "-CAcreateserial", "-days", "1",
            "-out", str(paths["cert"]), "-extfile", str(ext))  # fmt: skip
    return paths


class TLSRedisServer(RedisServer):
    """A redis-server that speaks TLS only, with a certificate signed by ``material['ca']``."""

    def __init__(self, material: dict[str, Path]) -> None:
        problem = tls_support_problem()
        if problem:
            raise RuntimeError(problem)  # a failure naming what is missing, never a skip
        self.tls_port = free_port()
        super().__init__(
            "--tls-port", str(self.tls_port),
            "--tls-cert-file", str(material["cert"]),
            "--tls-key-file", str(material["key"]),
            "--tls-ca-cert-file", str(material["ca"]),
            "--tls-auth-clients", "no",
        )  # fmt: skip

    def tls_url(self, ca: Path) -> str:
        return f"rediss://127.0.0.1:{self.tls_port}/0?ssl_ca_certs={ca}"
