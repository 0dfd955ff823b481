"""The public API's types, as an application's mypy sees them: the value type of a
``get_or_load`` comes from the loader, a coroutine function's included (on the asyncio
front a loader may be either, and a union left mypy with ``Never``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

APP = textwrap.dedent(
    """
    from veneer import AsyncCache, Cache

    acache = AsyncCache.from_url("redis://127.0.0.1:1", namespace="n")
    cache = Cache.from_url("redis://127.0.0.1:1", namespace="n")


    async def load() -> dict[str, int]:
        return {"id": 1}


    def load_sync() -> dict[str, int]:
        return {"id": 1}


    class Loader:
        async def __call__(self) -> int:
            return 1


    @acache.cached(ttl=5)
    async def user(uid: int) -> list[int]:
        return [uid]


    async def main() -> None:
        reveal_type(await acache.get_or_load("k", load))
        reveal_type(await acache.get_or_load("k", lambda: load()))
        reveal_type(await acache.get_or_load("k", load_sync))
        reveal_type(await acache.get_or_load("k", load, ttl=lambda v: float(v["id"])))
        reveal_type(await acache.get_or_load("k", Loader()))
        reveal_type(await acache.refresh("k", load))
        reveal_type(await user(1))
        reveal_type(cache.get_or_load("k", load_sync))
    """
)

EXPECTED = [
    "dict[str, int]",
    "dict[str, int]",
    "dict[str, int]",
    "dict[str, int]",
    "int",
    "dict[str, int] | Any",  # refresh: the loaded value, or its ``default``
    "list[int]",
    "dict[str, int]",
]


def test_an_applications_mypy_gets_the_loaders_type(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--no-error-summary",
         "--hide-error-context", "--show-absolute-path", str(app)],
        check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    errors = [line for line in lines if ": error:" in line]
    assert errors == [], done.stdout
    marker = 'Revealed type is "'
    revealed = [line.split(marker, 1)[1].rstrip('"') for line in lines if marker in line]
    assert revealed == EXPECTED, done.stdout
