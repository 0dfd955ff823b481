"""Settings for the session suite (``runtests.py --settings=veneer_settings``): Django's
test settings with PostgreSQL, a test database named for this process."""

from __future__ import annotations

import os

_common = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": os.environ.get("VENEER_SUITE_PG_NAME", "test"),
    "USER": os.environ.get("VENEER_SUITE_PG_USER", "postgres"),
    "PASSWORD": os.environ.get("VENEER_SUITE_PG_PASSWORD", ""),
    "HOST": os.environ.get("VENEER_SUITE_PG_HOST", "127.0.0.1"),
    "PORT": os.environ.get("VENEER_SUITE_PG_PORT", "5432"),
}
DATABASES = {
    "default": {**_common, "TEST": {"NAME": f"test_veneer_suite_{os.getpid()}"}},
    "other": {**_common, "TEST": {"NAME": f"test_veneer_suite_other_{os.getpid()}"}},
}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
