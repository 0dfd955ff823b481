"""Typed shims over the few redis-py calls that carry no annotations.

Kept in one place so that mypy --strict checks everything else, and so that
every raw command the audit can send is easy to review.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.client import Pipeline

__all__ = ["command", "queue"]


def command(client: redis.Redis, *args: Any) -> Any:
    """Send one command and return redis-py's (raw or parsed) reply."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def queue(pipe: Pipeline, *args: Any) -> None:
    """Queue one command on a pipeline."""
    pipe.execute_command(*args)  # type: ignore[no-untyped-call]
