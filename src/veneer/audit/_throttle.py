"""The audit's pacing lives in ``veneer._throttle``, shared with ``veneer doctor``."""

from __future__ import annotations

from .._throttle import Throttle

__all__ = ["Throttle"]
