"""Cache keys for ``@cached`` functions: stable across processes, equal for equal calls.

A key is ``module.qualname:`` followed by the arguments, or an explicit
template such as ``"user:{uid}"`` formatted with the bound arguments. Calls
that mean the same (``f(1)``, ``f(x=1)``, ``f(1, y=<default>)``) get the same
key, so ``f.invalidate(...)`` reaches the entry whatever form the call had.
Arguments must have a representation that is the same in every process;
anything else is refused with an error that says to pass ``key=``.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from ._errors import VeneerError

__all__ = ["KeyBuilder", "UncacheableArguments"]

_SCALARS = (int, str, float, bool, type(None), bytes)
_json = msgspec.json.Encoder(order="deterministic")


class UncacheableArguments(VeneerError, TypeError):
    """A ``@cached`` call whose arguments have no stable key."""


def _arg_repr(value: Any) -> str:
    cls = value.__class__
    if cls in _SCALARS:
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{cls.__qualname__}.{value.name}"
    if cls is tuple or cls is list:
        return "(" + ",".join(_arg_repr(v) for v in value) + ")"
    try:
        name: str = cls.__qualname__
        return name + _json.encode(value).decode()
    except (TypeError, msgspec.EncodeError):
        raise UncacheableArguments(
            f"argument of type {cls.__qualname__} has no stable cache key (its repr may differ "
            "between processes); pass key='template {name}' to @cached, or pass plain values"
        ) from None


class KeyBuilder:
    """Built once per decorated function; ``__call__`` runs on every call."""

    __slots__ = ("_fast_arity", "_names", "_prefix", "_signature", "_tag_templates", "_template")

    def __init__(self, fn: Callable[..., Any], template: str | None, tags: Sequence[str]) -> None:
        self._signature = inspect.signature(fn)
        self._template = template
        self._prefix = f"{fn.__module__}.{fn.__qualname__}:"
        params = list(self._signature.parameters.values())
        self._names = tuple(p.name for p in params)
        simple = all(
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.default is p.empty
            for p in params
        )
        # The common call f(a, b) with every parameter given positionally needs
        # no signature binding: that is what keeps @cached under ~1.5 us.
        self._fast_arity = len(params) if simple else -1
        self._tag_templates = tuple(t for t in tags if "{" in t)
        if template is not None:
            self._check_template(template)
        for tag in self._tag_templates:
            self._check_template(tag)

    def _check_template(self, template: str) -> None:
        try:
            template.format(**dict.fromkeys(self._names, 0))
        except (KeyError, IndexError) as exc:
            raise VeneerError(
                f"template {template!r} names {exc} which is not a parameter of the function "
                f"(parameters: {', '.join(self._names) or 'none'})"
            ) from None

    def _bound(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if not kwargs and len(args) == self._fast_arity:
            return dict(zip(self._names, args, strict=True))
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self._template is not None:
            return self._template.format(**self._bound(args, kwargs))
        if not kwargs and len(args) == self._fast_arity:
            if len(args) == 1:
                return self._prefix + _arg_repr(args[0])
            return self._prefix + ",".join([_arg_repr(a) for a in args])
        # Every other call form is bound to the signature (defaults applied) and
        # rendered in parameter order, which gives the same key as the fast path.
        values = self._bound(args, kwargs).values()
        return self._prefix + ",".join([_arg_repr(v) for v in values])

    def compile(self) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
        """A key function specialised for the common call shape (one scalar argument).

        A closure with the checks inlined costs about half of a ``__call__`` through
        this object; ``@cached`` calls it on every call, hits included.
        """
        general = self.__call__
        if self._template is not None or self._fast_arity != 1:
            return general
        prefix = self._prefix
        scalars = _SCALARS

        def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            if not kwargs and len(args) == 1:
                arg = args[0]
                if arg.__class__ in scalars:
                    return prefix + repr(arg)
            return general(args, kwargs)

        return key_of

    def tags(
        self, static: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, ...]:
        if not self._tag_templates:
            return static
        arguments = self._bound(args, kwargs)
        return tuple(t.format(**arguments) if "{" in t else t for t in static)
