"""Django's ``SessionTestsMixin`` on ``veneer.integrations.django.sessions``, copied into
Django's own ``tests/sessions_tests`` as ``tests_veneer.py`` by
``tests/django_suite/run.py`` (never run from here). The rows go to the test
database the runner creates (PostgreSQL)."""

from __future__ import annotations

import os

from django.test import TestCase, override_settings

from veneer.integrations.django import sessions

from .tests import SessionTestsMixin


@override_settings(
    CACHES={
        "default": {
            "BACKEND": "veneer.integrations.django.VeneerCache",
            "LOCATION": os.environ["VENEER_SUITE_REDIS"] + "/0",
            "OPTIONS": {"namespace": f"suite-sessions-{os.getpid()}"},
        }
    },
    VENEER_SESSIONS={"TABLE": "veneer_suite_sessions"},
)
class SuiteSessionTests(SessionTestsMixin, TestCase):  # type: ignore[misc]
    backend = sessions.SessionStore

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        sessions.create_session_tables()

    @classmethod
    def tearDownClass(cls) -> None:
        sessions.close_all()  # its connections must not keep the test database open
        super().tearDownClass()
