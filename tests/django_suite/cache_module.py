"""Django's ``BaseCacheTests`` on one cache backend, copied into Django's own ``tests/cache``
as ``tests_veneer.py`` by ``tests/django_suite/run.py`` (never run from here).

``VENEER_SUITE`` picks the backend: ``safe`` (VeneerCache, msgpack), ``pickle``
(VeneerCache with the pickle opt-in) or ``reference`` (Django's RedisCache).
"""

from __future__ import annotations

import os
import unittest
from typing import Any

from django.test import TestCase, override_settings

from .tests import BaseCacheTests, caches_setting_for_tests
from .veneer_exclusions import SAFE_CODEC

SUITE = os.environ["VENEER_SUITE"]
REDIS = os.environ["VENEER_SUITE_REDIS"]

if SUITE == "reference":
    BACKEND = "django.core.cache.backends.redis.RedisCache"
    # A database of its own: its clear() is FLUSHDB.
    PARAMS: dict[str, Any] = {"LOCATION": f"{REDIS}/{os.environ['VENEER_SUITE_REFERENCE_DB']}"}
else:
    BACKEND = "veneer.integrations.django.VeneerCache"
    PARAMS = {
        "LOCATION": REDIS + "/0",
        "OPTIONS": {
            "namespace": f"suite-{SUITE}-{os.getpid()}",
            "codec": "pickle" if SUITE == "pickle" else "msgpack",
        },
    }


@override_settings(
    CACHES=caches_setting_for_tests(
        BACKEND=BACKEND,
        # As for Django's RedisCacheTests: culling is left to Redis.
        exclude={"cull", "zero_cull"},
        **PARAMS,
    )
)
class SuiteCacheTests(BaseCacheTests, TestCase):  # type: ignore[misc]
    if SUITE == "reference":

        @property
        def incr_decr_type_error(self) -> type[Exception]:
            import redis

            return redis.ResponseError  # as Django's RedisCacheTests says


for _name in SAFE_CODEC if SUITE == "safe" else ():
    setattr(SuiteCacheTests, _name, unittest.expectedFailure(getattr(BaseCacheTests, _name)))
