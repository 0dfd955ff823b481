"""Integrations with the source of truth: invalidate the cache when the database changes.

- :mod:`veneer.integrations.sqlalchemy`: after-commit invalidation for SQLAlchemy
  ``Session`` and ``AsyncSession`` (savepoint-aware, with an optional outbox).
- :mod:`veneer.integrations.outbox`: the outbox table and the relay that drains it.
- :mod:`veneer.integrations.postgres`: a trigger that names changed keys over
  ``pg_notify`` and the listener that invalidates them.

Each module imports its own third-party dependencies; importing this package
imports none of them.
"""
