"""tests/django_suite/run.py reads Django's test output right, judges it right, and the
exclusions it allows are the ones docs/django.md lists."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "django_suite"))

import run  # noqa: E402
from exclusions import SAFE_CODEC  # noqa: E402

OUTPUT = """\
test_add (cache.tests_veneer.SuiteCacheTests.test_add) ... ok
test_cull (cache.tests_veneer.SuiteCacheTests.test_cull) ... skipped "Culling isn't implemented."
test_data_types (cache.tests_veneer.SuiteCacheTests.test_data_types) ... expected failure
test_default_used_when_none_is_set (cache.tests_veneer.SuiteCacheTests.test_default_used_when_none_is_set)
If None is cached, get() returns it instead of the default. ... ok
  test_unicode (cache.tests_veneer.SuiteCacheTests.test_unicode) (key='ascii') ... FAIL
test_unicode (cache.tests_veneer.SuiteCacheTests.test_unicode) ... ok
test_x (cache.tests_veneer.SuiteCacheTests.test_x) ... skipped 'why'
test_cache_read_for_model_instance (cache.tests_veneer.SuiteCacheTests.test_cache_read_for_model_instance) ... unexpected success

Ran 7 tests in 1.0s
"""  # noqa: E501


def test_output_is_parsed_per_test_with_the_worst_subtest_outcome() -> None:
    """Docstring lines, both quotings of skip reasons and failing subtests are read."""
    result = run.Result("5.2", "safe", "cmd")
    run.parse(result, OUTPUT)
    assert result.ran == 7
    assert result.outcomes == {
        "test_add": "ok",
        "test_cull": "skipped",
        "test_data_types": "expected failure",
        "test_default_used_when_none_is_set": "ok",
        "test_unicode": "FAIL",
        "test_x": "skipped",
        "test_cache_read_for_model_instance": "unexpected success",
    }
    assert result.reasons == {"test_cull": "Culling isn't implemented.", "test_x": "why"}


def test_failures_and_stale_exclusions_fail_the_run_but_not_the_reference() -> None:
    """A failing veneer test, an excluded test that passes, or an exclusion that did not run
    fail the run; the reference backend's own results never do."""
    result = run.Result("5.2", "safe", "cmd")
    run.parse(result, OUTPUT)
    problems = run.judge([result], SAFE_CODEC)
    assert any("failed test_unicode" in p for p in problems)
    assert any("excluded but passing" in p for p in problems)
    assert any("did not run" in p for p in problems)
    reference = run.Result("5.2", "reference", "cmd")
    run.parse(reference, OUTPUT)
    assert run.judge([reference], SAFE_CODEC) == []
    clean = run.Result("5.2", "pickle", "cmd", outcomes={"test_add": "ok"}, ran=1)
    assert run.judge([clean], SAFE_CODEC) == []


def test_the_documented_exclusions_are_the_allowed_ones() -> None:
    """docs/django.md lists exactly the tests of exclusions.py, each with its reason."""
    text = (ROOT / "docs" / "django.md").read_text()
    section = text.split("### Excluded with the safe codec", 1)[1].split("\n#", 1)[0]
    rows = dict(re.findall(r"^\| `(test_\w+)` \| (.+?) \|$", section, re.MULTILINE))
    assert rows == SAFE_CODEC
