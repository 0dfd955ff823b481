"""Django settings of the integration tests, for the test process and the servers it starts.

Everything that differs per run comes from the environment, so a uvicorn server in
another process builds the same project: the table suffix, the Redis URL.
"""

from __future__ import annotations

import os

import sqlalchemy as sa

from servers import POSTGRES_URL

_db = sa.engine.make_url(POSTGRES_URL)
_redis = os.environ.get("VENEER_DJ_REDIS", "redis://127.0.0.1:1/0")  # set by the fixtures

SECRET_KEY = "veneer-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "django_integration.urls"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "veneer.integrations.django",
    "django_integration.shop",
]
MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
SESSION_COOKIE_SECURE = False  # plain HTTP on loopback
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.database,
        "USER": _db.username,
        "PASSWORD": _db.password or "",
        "HOST": _db.host,
        "PORT": str(_db.port or 5432),
        "ATOMIC_REQUESTS": True,
    }
}
CACHES = {
    "default": {
        "BACKEND": "veneer.integrations.django.VeneerCache",
        "LOCATION": _redis,
        "OPTIONS": {
            "namespace": os.environ.get("VENEER_DJ_NAMESPACE", "dj"),
            "redis_timeout": 0.1,
        },
    },
    # Django's own backend on the same Redis: the control of the outage tests.
    "control": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _redis,
        "OPTIONS": {"socket_timeout": 0.1, "socket_connect_timeout": 0.1},
    },
}
SESSION_ENGINE = "veneer.integrations.django.sessions"
VENEER_SESSIONS = {
    "CACHE": "default",
    "TABLE": "vdj_sessions_" + os.environ.get("VENEER_DJ_SUFFIX", "x"),
}
LOGGING_CONFIG = None
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
