"""The ASGI application uvicorn serves in the integration tests."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_integration.settings")

from django.core.asgi import get_asgi_application

application = get_asgi_application()
