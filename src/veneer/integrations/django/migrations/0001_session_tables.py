"""The session tables of ``veneer.integrations.django.sessions`` (``VENEER_SESSIONS['TABLE']``)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations


def _statements(vendor: str) -> list[str]:
    from veneer.integrations.django.sessions import tables
    from veneer.sessions import tables_ddl

    if vendor not in ("postgresql", "sqlite"):
        return []  # veneer sessions need PostgreSQL or SQLite; the checks say so
    ddl = tables_ddl(vendor, tables())
    return [s.strip() for s in ddl.split(";") if s.strip()]


def create(apps: Any, schema_editor: Any) -> None:
    for statement in _statements(schema_editor.connection.vendor):
        schema_editor.execute(statement)


def drop(apps: Any, schema_editor: Any) -> None:
    found = tables()
    for table in (found.sessions, found.users):
        schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(table.name)}")


def tables() -> Any:
    from veneer.integrations.django.sessions import tables as configured

    return configured()


class Migration(migrations.Migration):  # type: ignore[misc]  # Django is untyped
    initial = True
    dependencies: ClassVar[list[tuple[str, str]]] = []
    operations: ClassVar[list[Any]] = [migrations.RunPython(create, drop)]
