"""`manage.py check` names the settings that make Redis a second database or hide it."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.test.utils import override_settings

from veneer.integrations.django.checks import check_caches, check_sessions

VENEER = "veneer.integrations.django.VeneerCache"
REDIS = "django.core.cache.backends.redis.RedisCache"


QUIET = {"SESSION_ENGINE": "django.contrib.sessions.backends.db", "VENEER_ORM": {"MODELS": []}}


def _ids(caches: dict[str, Any], **settings: Any) -> list[str]:
    with override_settings(CACHES=caches, **{**QUIET, **settings}):
        return sorted(m.id for m in check_caches() + check_sessions())


def test_unsafe_settings_are_warned_about() -> None:
    """pickle on Redis, no TTL ceiling, ignored exceptions and Redis-only sessions each get
    their warning; a VeneerCache with its defaults gets none."""
    url = "redis://127.0.0.1:6379/0"
    assert _ids({"default": {"BACKEND": VENEER, "LOCATION": url}}) == []
    assert _ids({"default": {"BACKEND": REDIS, "LOCATION": url}}) == ["veneer.W001"]
    assert _ids({"default": {"BACKEND": REDIS, "LOCATION": url, "TIMEOUT": None}}) == [
        "veneer.W001",
        "veneer.W002",
    ]
    assert _ids(
        {"default": {"BACKEND": VENEER, "LOCATION": url, "OPTIONS": {"codec": "pickle"}}}
    ) == ["veneer.W001"]
    assert _ids(
        {
            "default": {"BACKEND": VENEER, "LOCATION": url},
            "dr": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": url,
                "OPTIONS": {
                    "IGNORE_EXCEPTIONS": True,
                    "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
                },
            },
        }
    ) == ["veneer.W003"]
    assert _ids(
        {"default": {"BACKEND": REDIS, "LOCATION": url, "OPTIONS": {"serializer": "x.Json"}}},
        SESSION_ENGINE="django.contrib.sessions.backends.cache",
    ) == ["veneer.W004"]


def test_broken_veneer_settings_are_errors() -> None:
    """A VeneerCache that cannot be built, or ORM/session settings naming another backend,
    are errors that stop runserver and migrate."""
    bad = {"default": {"BACKEND": VENEER, "LOCATION": "redis://h/0", "OPTIONS": {"codec": "x"}}}
    assert _ids(bad) == ["veneer.E001"]
    other = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert _ids(other) == []
    assert _ids(other, VENEER_ORM={}) == ["veneer.E002"]
    assert _ids(other, SESSION_ENGINE="veneer.integrations.django.sessions") == ["veneer.E002"]


def test_the_checks_are_registered_with_the_app() -> None:
    """`manage.py check` runs them once the app is installed."""
    with override_settings(
        CACHES={"default": {"BACKEND": REDIS, "LOCATION": "redis://127.0.0.1:1/0"}}, **QUIET
    ):
        import io

        out = io.StringIO()
        call_command("check", stdout=out, stderr=out)
        assert "veneer.W001" in out.getvalue()
