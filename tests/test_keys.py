"""Key layout: every key that guards a value shares its hash slot, whatever the user key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from veneer._keys import KeyLayout, validate_namespace

namespaces = st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)


@given(ns=namespaces, key=st.text(min_size=1, max_size=50))
def test_value_and_lease_share_a_slot(ns: str, key: str) -> None:
    layout = KeyLayout(ns)
    value = layout.value(key).encode("utf-8", "surrogatepass")
    lease = layout.lease(key).encode("utf-8", "surrogatepass")
    assert key_slot(value) == key_slot(lease)


@given(ns=namespaces, a=st.text(min_size=1, max_size=30), b=st.text(min_size=1, max_size=30))
def test_distinct_keys_get_distinct_redis_keys(ns: str, a: str, b: str) -> None:
    layout = KeyLayout(ns)
    assert (layout.value(a) == layout.value(b)) == (a == b)


@given(n1=namespaces, n2=namespaces, k1=st.text(max_size=20), k2=st.text(max_size=20))
def test_namespaces_never_share_a_key(n1: str, n2: str, k1: str, k2: str) -> None:
    """A namespace holds no ':', so the first ':' ends it: two namespaces never collide."""
    if n1 != n2:
        assert KeyLayout(n1).value(k1) != KeyLayout(n2).value(k2)
        assert KeyLayout(n1).tag(k1) != KeyLayout(n2).tag(k2)


def test_keys_spread_over_slots() -> None:
    layout = KeyLayout("shop")
    slots = {key_slot(layout.value(f"user:{i}").encode()) for i in range(1000)}
    assert len(slots) > 900


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "a:b", "x" * 65, "sp ace", 3])
def test_bad_namespaces(bad: object) -> None:
    with pytest.raises(ValueError, match="namespace"):
        validate_namespace(bad)
