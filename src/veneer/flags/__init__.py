"""Feature flags whose truth is the application's database, evaluated in process.

::

    from veneer.flags import Flags, Flag, Rule, Condition, create_tables

    create_tables(engine)                                   # or tables_ddl() in a migration
    flags = Flags(engine, cache, defaults={"new-checkout": False})
    flags.start()                                           # once per process
    flags.enabled("new-checkout", subject="user:42", attributes={"country": "FR"})
    flags.set_flag("new-checkout", enabled=True, session=session)   # joins your transaction

Every process evaluates from an immutable in-memory snapshot (no I/O per call);
changes are pushed after commit through Redis, and polled from the database
while Redis is down. See ``docs/flags.md`` for the rules, the tables and the
worst-case propagation delay of each failure.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import FlagNotFound, InvalidFlag

if TYPE_CHECKING:
    from ._async._client import AsyncFlags
    from ._evaluate import Snapshot, Variant, bucket
    from ._model import OPERATORS, Condition, Flag, Rule
    from ._reader import FlagsStatus
    from ._sql import FlagChange
    from ._sync._client import Flags
    from ._tables import FlagTables, create_tables, flag_tables, tables_ddl

__all__ = [
    "OPERATORS",
    "AsyncFlags",
    "Condition",
    "Flag",
    "FlagChange",
    "FlagNotFound",
    "FlagTables",
    "Flags",
    "FlagsStatus",
    "InvalidFlag",
    "Rule",
    "Snapshot",
    "Variant",
    "bucket",
    "create_tables",
    "flag_tables",
    "tables_ddl",
]

# name -> the private module that defines it: a sync program never imports the
# asyncio client (nor redis.asyncio).
_LAZY: dict[str, str] = {
    "OPERATORS": "._model",
    "AsyncFlags": "._async._client",
    "Condition": "._model",
    "Flag": "._model",
    "FlagChange": "._sql",
    "FlagTables": "._tables",
    "Flags": "._sync._client",
    "FlagsStatus": "._reader",
    "Rule": "._model",
    "Snapshot": "._evaluate",
    "Variant": "._evaluate",
    "bucket": "._evaluate",
    "create_tables": "._tables",
    "flag_tables": "._tables",
    "tables_ddl": "._tables",
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'veneer.flags' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
