"""Django: a cache backend, a session backend, ORM invalidation after commit, and checks.

::

    CACHES = {"default": {
        "BACKEND": "veneer.integrations.django.VeneerCache",
        "LOCATION": "redis://127.0.0.1:6379/0",
    }}
    SESSION_ENGINE = "veneer.integrations.django.sessions"
    INSTALLED_APPS = [..., "veneer.integrations.django"]   # ORM hooks and checks

See ``docs/django.md`` for what each Django semantic becomes and what it costs.
"""

from __future__ import annotations

from ._backend import VeneerCache
from ._codecs import UncacheableValue

__all__ = ["UncacheableValue", "VeneerCache"]
