"""Tests of Django's ``BaseCacheTests`` that the safe codec cannot pass, and why.

Each is run anyway, as an expected failure: if one starts passing, the suite fails
and this list must shrink. ``docs/django.md`` lists the same tests with the same
reasons (``tests/django_integration/test_suite_exclusions.py`` checks it).
"""

from __future__ import annotations

SAFE_CODEC: dict[str, str] = {
    "test_data_types": (
        "caches a function and a class: they have no safe serialized form (msgpack "
        "cannot hold code; only pickle, which runs it when read, can)"
    ),
    "test_cache_read_for_model_instance": (
        "caches a model instance: only pickle stores arbitrary objects (cache rows with "
        "cached_get instead)"
    ),
    "test_cache_read_for_model_instance_with_deferred": (
        "caches a queryset of deferred model instances: needs pickle"
    ),
    "test_cache_write_for_model_instance_with_deferred": (
        "caches a queryset of deferred model instances: needs pickle"
    ),
}
"""Excluded with the default codec (msgpack). With ``codec='pickle'`` nothing is."""
