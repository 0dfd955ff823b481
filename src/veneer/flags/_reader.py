"""The evaluating half of a flags client, shared by ``Flags`` and ``AsyncFlags``.

Plain synchronous code with no I/O: it reads the current :class:`Snapshot` (one
attribute, replaced whole by :meth:`FlagReader._swap`) and never raises. The
client subclasses add loading, propagation and writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._evaluate import CompiledFlag, Snapshot, Variant, compile_flag, constant_flag, frozen
from ._model import Flag

__all__ = ["FlagReader", "FlagsStatus"]

log = logging.getLogger("veneer")

# Distinct unknown names counted one by one; beyond this, under "<other>" (a caller
# looping over made-up names must not grow memory without bound).
_MAX_UNKNOWN_NAMES = 1000


@dataclass(frozen=True, slots=True)
class FlagsStatus:
    """Where this process's flags come from, and how fresh they are.

    ``source``: ``cache``, ``database``, ``file`` or ``defaults`` (see
    :class:`Snapshot`). ``age``: seconds since this process loaded the snapshot;
    ``confirmed_age``: seconds since it last knew the snapshot was the latest (a
    database check found no newer version, or the change channel was subscribed);
    ``None`` if it never did. ``mode``: ``push`` (subscribed to changes), ``poll``
    (polling the database every ``poll_interval``) or ``stopped``.
    ``unknown``: evaluations of names not in the snapshot, per name (served the
    default). ``errors``: evaluations that failed and were served the default.
    """

    source: str
    version: int
    token: str
    flags: int
    loaded_at: float
    age: float
    changed_at: float | None
    confirmed_age: float | None
    mode: str
    invalid: tuple[str, ...] = ()
    unknown: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    load_failures: int = 0
    publish_failures: int = 0
    last_error: str | None = None


def _empty_snapshot() -> Snapshot:
    return Snapshot(
        version=0,
        token="",
        flags={},
        source="defaults",
        loaded_at=time.time(),
        changed_at=None,
        invalid=(),
    )


class FlagReader:
    """Evaluate flags from the current snapshot. Nothing here does I/O or raises."""

    def __init__(self, defaults: Mapping[str, Any] | None = None) -> None:
        fallbacks: dict[str, CompiledFlag] = {}
        for name, value in (defaults or {}).items():
            if isinstance(value, Flag):
                if value.name != name:
                    raise ValueError(f"defaults[{name!r}] is a Flag named {value.name!r}")
                fallbacks[name] = compile_flag(value)
            else:
                fallbacks[name] = constant_flag(name, value)
        self._fallbacks = fallbacks
        self._snapshot = _empty_snapshot()
        self._unknown: dict[str, int] = {}
        self._errors = 0
        self._load_failures = 0
        self._publish_failures = 0
        self._last_error: str | None = None
        self._confirmed: float | None = None  # monotonic
        self._mode = "stopped"
        self._listeners: list[Callable[[Snapshot, Snapshot], None]] = []
        self._warned_unstarted = False

    # ------------------------------------------------------------ evaluation

    def enabled(
        self,
        name: str,
        /,
        *,
        subject: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        default: bool | None = None,
    ) -> bool:
        """Whether ``name`` serves ``subject`` anything but its off variant.

        An unknown flag answers ``default`` if given, else the default declared in
        code, else False, and is counted in ``status().unknown``. Never raises.
        """
        flag = self._snapshot.flags.get(name)
        if flag is not None:
            constant = flag.constant
            if constant is not None:
                return constant.enabled
            try:
                return flag.evaluate(subject, attributes).enabled
            except Exception:
                return self._failed(name, default, subject, attributes).enabled
        return self._fallback(name, default, subject, attributes).enabled

    def variant(
        self,
        name: str,
        /,
        *,
        subject: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        default: Any = None,
    ) -> Variant:
        """The variant ``name`` serves ``subject`` (its key, read-only value and reason).

        An unknown flag serves the variant ``default`` with ``default``'s value if given,
        else the default declared in code; reason ``unknown``. Never raises.
        """
        flag = self._snapshot.flags.get(name)
        if flag is not None:
            try:
                return flag.evaluate(subject, attributes)
            except Exception:
                return self._failed(name, default, subject, attributes)
        return self._fallback(name, default, subject, attributes)

    def value(
        self,
        name: str,
        /,
        default: Any = None,
        *,
        subject: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Any:
        """The value of the variant served (runtime configuration); ``default`` if unknown."""
        return self.variant(name, subject=subject, attributes=attributes, default=default).value

    def _fallback(
        self, name: str, default: Any, subject: str | None, attributes: Mapping[str, Any] | None
    ) -> Variant:
        """What an unknown flag serves (reason ``unknown``), counted per name."""
        self._count_unknown(name)
        return self._default(name, default, subject, attributes, "unknown")

    def _failed(
        self, name: str, default: Any, subject: str | None, attributes: Mapping[str, Any] | None
    ) -> Variant:
        """What a flag whose evaluation raised serves (reason ``error``), counted."""
        self._errors += 1
        log.exception("veneer.flags: evaluating %r failed; served the default", name)
        return self._default(name, default, subject, attributes, "error")

    def _default(
        self,
        name: str,
        default: Any,
        subject: str | None,
        attributes: Mapping[str, Any] | None,
        reason: str,
    ) -> Variant:
        if default is not None:
            return Variant("default", frozen(default), reason, bool(default))
        declared = self._fallbacks.get(name)
        if declared is not None:
            try:
                served = declared.evaluate(subject, attributes)
                return Variant(served.key, served.value, reason, served.enabled)
            except Exception:
                self._errors += 1
        return Variant("default", None, reason, False)

    def _count_unknown(self, name: str) -> None:
        counts = self._unknown
        if name not in counts and len(counts) >= _MAX_UNKNOWN_NAMES:
            name = "<other>"
        counts[name] = counts.get(name, 0) + 1
        if self._mode == "stopped" and not self._warned_unstarted:
            self._warned_unstarted = True
            log.warning(
                "veneer.flags: %r evaluated before start(): serving defaults; call "
                "start() (or use the client as a context manager) when the process starts",
                name,
            )

    # --------------------------------------------------------------- snapshot

    def snapshot(self) -> Snapshot:
        """The snapshot evaluations read now (immutable)."""
        return self._snapshot

    def add_listener(self, listener: Callable[[Snapshot, Snapshot], None], /) -> None:
        """Call ``listener(old, new)`` after each new snapshot is swapped in (from the
        client's background worker; exceptions are logged)."""
        self._listeners.append(listener)

    def _swap(self, new: Snapshot) -> None:
        old, self._snapshot = self._snapshot, new
        for listener in list(self._listeners):
            try:
                listener(old, new)
            except Exception:
                log.exception("veneer.flags: a snapshot listener failed")

    def _confirmed_time(self) -> float | None:
        return self._confirmed

    def status(self) -> FlagsStatus:
        """Where the snapshot came from, how old it is, and what was served by default."""
        snap = self._snapshot
        now = time.monotonic()
        confirmed = self._confirmed_time()
        return FlagsStatus(
            source=snap.source,
            version=snap.version,
            token=snap.token,
            flags=len(snap.flags),
            loaded_at=snap.loaded_at,
            age=max(0.0, time.time() - snap.loaded_at),
            changed_at=snap.changed_at,
            confirmed_age=None if confirmed is None else max(0.0, now - confirmed),
            mode=self._mode,
            invalid=snap.invalid,
            unknown=dict(self._unknown),
            errors=self._errors,
            load_failures=self._load_failures,
            publish_failures=self._publish_failures,
            last_error=self._last_error,
        )
