"""The Django app ``veneer.integrations.django``: ORM hooks, checks, session tables."""

from __future__ import annotations

from django.apps import AppConfig


class VeneerConfig(AppConfig):  # type: ignore[misc]  # Django is untyped
    name = "veneer.integrations.django"
    label = "veneer"
    verbose_name = "veneer"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from . import checks as veneer_checks
        from .orm import connect_signals

        connect_signals()
        checks.register(veneer_checks.check_caches, checks.Tags.caches)
        checks.register(veneer_checks.check_sessions)
