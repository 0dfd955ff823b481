"""veneer.flags' public names are pinned: adding or removing one is a deliberate change."""

from __future__ import annotations

import veneer
import veneer.flags as flags


def test_flags_public_api() -> None:
    """The public names, their one error root, and the same methods on both clients."""
    assert sorted(flags.__all__) == [
        "AsyncFlags",
        "Condition",
        "Flag",
        "FlagChange",
        "FlagNotFound",
        "FlagTables",
        "Flags",
        "FlagsStatus",
        "InvalidFlag",
        "OPERATORS",
        "Rule",
        "Snapshot",
        "Variant",
        "bucket",
        "create_tables",
        "flag_tables",
        "tables_ddl",
    ]
    for name in flags.__all__:
        assert getattr(flags, name) is not None
    assert sorted(dir(flags)) == sorted(set(dir(flags)))
    for name in ("InvalidFlag", "FlagNotFound"):
        assert issubclass(getattr(flags, name), veneer.VeneerError)
    public = {n for n in dir(flags.Flags) if not n.startswith("_")}
    assert public == {n for n in dir(flags.AsyncFlags) if not n.startswith("_")}
    assert {"enabled", "variant", "value", "status", "set_flag", "history", "start"} <= public
