"""The limiter's options, validated once when it is built, with messages that say what to change."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from .._errors import ConfigurationError

__all__ = ["MAX_KEY_CHARS", "LimiterOptions", "OnUnavailable", "check_group", "check_key"]

OnUnavailable = Literal["local", "allow", "deny"]
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_KEY_CHARS = 1024


@dataclass(frozen=True, slots=True)
class LimiterOptions:
    name: str = "default"
    """Limiters of one name in one namespace share their accounts (and heartbeat)."""
    on_unavailable: OnUnavailable = "local"
    """While Redis cannot answer: "local" (each process enforces its share, limit / workers),
    "allow" (fail open) or "deny" (fail closed)."""
    workers: int | None = None
    """Processes sharing the limits; None: estimated from a heartbeat in Redis."""
    heartbeat: float = 5.0
    """Seconds between heartbeats (when ``workers`` is not given)."""
    shadow: bool = False
    """Decide and count, but allow every hit (roll a limiter out dark)."""
    refusal_cache: int = 10_000
    """Subjects remembered as refused until the time Redis gave (0: off)."""
    local_subjects: int = 100_000
    """Subjects the "local" policy keeps accounts for during an outage."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigurationError(
                f"name={self.name!r}: use 1-64 letters, digits and '_.-' (it is part of every key)"
            )
        if self.on_unavailable not in ("local", "allow", "deny"):
            raise ConfigurationError(
                f"on_unavailable={self.on_unavailable!r}: use 'local' (each process enforces "
                "limit / workers; the default), 'allow' (fail open) or 'deny' (fail closed)"
            )
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise ConfigurationError(
                f"workers={self.workers!r}: give the number of processes (>= 1) sharing the "
                "limits, or None to estimate it from a heartbeat"
            )
        if (
            isinstance(self.heartbeat, bool)
            or not isinstance(self.heartbeat, int | float)
            or not math.isfinite(self.heartbeat)
            or not 0.05 <= self.heartbeat <= 3600
        ):
            raise ConfigurationError(
                f"heartbeat={self.heartbeat!r}: give seconds between heartbeats, 0.05 to 3600"
            )
        for option in ("refusal_cache", "local_subjects"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{option}={value!r} must be an integer >= 0")
        if not isinstance(self.shadow, bool):
            raise ConfigurationError(f"shadow={self.shadow!r} must be True or False")


def check_key(key: object) -> str:
    """The subject of a hit: a non-empty string (a user id, an address, an API key)."""
    if not isinstance(key, str):
        raise TypeError(f"key={key!r}: the subject of a rate limit is a string")
    if not key:
        raise ValueError(
            "key='' is empty: a rate limit needs a subject (a user id, an IP address, "
            "an API key); an empty one would make every caller share one account"
        )
    if len(key) > MAX_KEY_CHARS:
        raise ValueError(
            f"key of {len(key)} characters: at most {MAX_KEY_CHARS}; hash long subjects first"
        )
    return key


def check_group(group: object) -> str:
    if not isinstance(group, str) or (group and not _NAME.match(group)):
        raise ValueError(f"group={group!r}: use 1-64 letters, digits and '_.-' (or '' for none)")
    return group
