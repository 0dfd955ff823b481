"""An OpenFeature provider over a veneer flags client (``pip install 'veneer[openfeature]'``).

::

    from openfeature import api
    from veneer.flags.openfeature import VeneerProvider

    api.set_provider(VeneerProvider(flags))        # a Flags (started here) or a started AsyncFlags
    client = api.get_client()
    client.get_boolean_value("new-checkout", False, EvaluationContext("user:42", {"plan": "pro"}))

The evaluation context's ``targeting_key`` is the subject and its ``attributes``
are the attributes. Values are typed as OpenFeature asks: a flag whose served
value is not of the requested type answers the caller's default with
``TYPE_MISMATCH``; an unknown flag answers it with ``FLAG_NOT_FOUND`` (and is
counted in ``flags.status().unknown``). A new snapshot emits
``PROVIDER_CONFIGURATION_CHANGED`` with the names of the flags that changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar, cast

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from ._evaluate import Snapshot, Variant
from ._reader import FlagReader

__all__ = ["VeneerProvider"]

T = TypeVar("T")

_REASONS: dict[str, str] = {
    "disabled": Reason.DISABLED,
    "denied": Reason.TARGETING_MATCH,
    "allowed": Reason.TARGETING_MATCH,
    "rule": Reason.TARGETING_MATCH,
    "split": Reason.SPLIT,
    "fallthrough": Reason.DEFAULT,
    "no_subject": Reason.DEFAULT,
}


def _plain(value: Any) -> Any:
    """A JSON copy of a frozen value (OpenFeature callers may serialise or change it)."""
    if isinstance(value, MappingProxyType):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class VeneerProvider(AbstractProvider):
    """OpenFeature resolution from a :class:`~veneer.flags.Flags` or
    :class:`~veneer.flags.AsyncFlags` snapshot: no I/O per evaluation."""

    def __init__(self, flags: FlagReader, /) -> None:
        super().__init__()
        if not isinstance(flags, FlagReader):
            raise TypeError(f"VeneerProvider takes a Flags or AsyncFlags, got {flags!r}")
        self.flags = flags
        flags.add_listener(self._changed)

    def get_metadata(self) -> Metadata:
        return Metadata(name="veneer")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Start a threaded client that is not running (an asyncio one is started by the
        application, in its event loop)."""
        start = getattr(self.flags, "start", None)
        if self.flags.status().mode == "stopped" and start is not None and not _is_async(start):
            start()

    def shutdown(self) -> None:
        close = getattr(self.flags, "close", None)
        if close is not None and not _is_async(close):
            close()

    def _changed(self, old: Snapshot, new: Snapshot) -> None:
        names = sorted(
            name
            for name in set(old.flags) | set(new.flags)
            if name not in old.flags
            or name not in new.flags
            or old.flags[name].document != new.flags[name].document
        )
        if hasattr(self, "_on_emit"):  # attached to the API
            self.emit_provider_configuration_changed(
                ProviderEventDetails(flags_changed=names, metadata={"version": new.version})
            )

    # ------------------------------------------------------------ resolution

    def _resolve(
        self,
        key: str,
        default: T,
        context: EvaluationContext | None,
        accepts: type | tuple[type, ...],
        convert: Any = None,
    ) -> FlagResolutionDetails[T]:
        snapshot = self.flags.snapshot()
        subject = context.targeting_key if context is not None else None
        attributes = context.attributes if context is not None else None
        served: Variant = self.flags.variant(key, subject=subject, attributes=attributes)
        if served.reason == "unknown":
            return FlagResolutionDetails(
                value=default,
                error_code=ErrorCode.FLAG_NOT_FOUND,
                error_message=f"no flag {key!r} in veneer snapshot version {snapshot.version}",
                reason=Reason.ERROR,
            )
        if served.reason == "error":
            return FlagResolutionDetails(
                value=default,
                error_code=ErrorCode.GENERAL,
                error_message=f"evaluating flag {key!r} failed (logged)",
                reason=Reason.ERROR,
            )
        value = served.value
        wrong_bool = isinstance(value, bool) and bool not in _types(accepts)
        if not isinstance(value, accepts) or wrong_bool:
            return FlagResolutionDetails(
                value=default,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=(
                    f"flag {key!r} served {type(value).__name__} (variant {served.key!r}), "
                    f"not the {_names(accepts)} asked for"
                ),
                reason=Reason.ERROR,
                variant=served.key,
            )
        reason = _REASONS.get(served.reason, Reason.UNKNOWN)
        flag = snapshot.flags.get(key)
        if flag is not None and flag.constant is not None and served.reason == "fallthrough":
            reason = Reason.STATIC
        resolved = cast(T, convert(value) if convert is not None else value)
        return FlagResolutionDetails(
            value=resolved,
            reason=reason,
            variant=served.key,
            flag_metadata={"version": snapshot.version, "source": snapshot.source},
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, bool)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, str)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, int)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, (int, float), float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(
            flag_key, default_value, evaluation_context, (MappingProxyType, tuple), _plain
        )


def _types(accepts: type | tuple[type, ...]) -> tuple[type, ...]:
    return accepts if isinstance(accepts, tuple) else (accepts,)


def _names(accepts: type | tuple[type, ...]) -> str:
    names = {"MappingProxyType": "object", "tuple": "list"}
    return " or ".join(names.get(t.__name__, t.__name__) for t in _types(accepts))


def _is_async(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)
