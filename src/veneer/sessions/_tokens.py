"""Session tokens: 256 random bits from ``secrets``; only a digest of a token is ever stored.

The token is what the client holds (the cookie). The database row and the Redis
key are named by its digest (SHA-256, or HMAC-SHA256 with a secret key), so a
dump of either gives no token that a client could present.
"""

from __future__ import annotations

import hmac
import re
import secrets
from hashlib import sha256

__all__ = ["TOKEN_BYTES", "TokenDigest", "new_token"]

TOKEN_BYTES = 32
"""256 bits: ``secrets.token_urlsafe(32)`` is 43 characters of base64url without padding."""

_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


class TokenDigest:
    """Turns a presented token into the id the database and Redis know it by.

    A string that cannot be a token (wrong length or alphabet) has no id: it is
    refused before any store is asked, so junk cookies cost nothing.
    """

    __slots__ = ("_key", "keyed")

    def __init__(self, secret: bytes | str | None) -> None:
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is not None and len(secret) < 16:
            # Short keys add nothing over the plain digest and suggest a placeholder.
            raise ValueError("secret must be at least 16 bytes (or None for plain SHA-256)")
        self._key = secret
        self.keyed = secret is not None

    def __repr__(self) -> str:
        return f"TokenDigest(keyed={self.keyed})"  # never the key

    def id_of(self, token: object) -> str | None:
        """The hex digest of ``token``, or None when it is not a well-formed token."""
        if type(token) is not str or len(token) != 43 or _TOKEN_SHAPE.fullmatch(token) is None:
            return None
        data = token.encode("ascii")
        if self._key is None:
            return sha256(data).hexdigest()
        return hmac.digest(self._key, data, "sha256").hex()
