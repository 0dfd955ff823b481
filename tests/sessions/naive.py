"""A Redis-only session store as Flask-Session and starsessions keep sessions: the control
that shows the outage tests can fail."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
import redis


class NaiveRedisSessions:
    """``SET session:<token> <json> EX ttl`` and ``GET`` + decode: Redis is the only copy."""

    def __init__(self, client: redis.Redis, ttl: int = 3600) -> None:
        self.client = client
        self.ttl = ttl
        self._encode = msgspec.json.Encoder().encode
        self._decode = msgspec.json.Decoder(dict[str, Any]).decode

    def create(self, data: dict[str, Any]) -> str:
        token = secrets.token_urlsafe(32)
        self.client.set(f"session:{token}", self._encode(data), ex=self.ttl)
        return token

    def load(self, token: str) -> dict[str, Any] | None:
        raw = self.client.get(f"session:{token}")
        return None if raw is None else self._decode(raw)
