"""Errors of the session store: bad session data, and a database that cannot take a write."""

from __future__ import annotations

from .._errors import VeneerError

__all__ = ["SessionDataTooLarge", "SourceUnavailable", "UnencodableSessionData"]


class SessionDataTooLarge(VeneerError, ValueError):
    """Session data whose encoded size is above ``max_data_bytes``; nothing was written."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"session data is {size} bytes encoded, above max_data_bytes={limit}; nothing was "
            "written. Keep large objects in your own tables and store their ids in the session, "
            "or raise max_data_bytes"
        )


class UnencodableSessionData(VeneerError, TypeError):
    """Session data the store's format (JSON or msgpack) cannot encode; nothing was written."""


class SourceUnavailable(VeneerError):
    """The database could not be reached (or failed) for a write, revocation or check.

    Raised instead of losing the operation silently: nothing was changed, so the
    caller may retry, show an error, or refuse the request.
    """
