"""Errors of the flags component: a definition refused when written, a flag that is not there."""

from __future__ import annotations

from .._errors import VeneerError

__all__ = ["FlagNotFound", "InvalidFlag"]


class InvalidFlag(VeneerError, ValueError):
    """A flag definition that cannot be evaluated; it was refused and nothing was written.

    The message names the flag, where the problem is (``rules[1].when[0].op``) and
    what is accepted there. Evaluation never raises this: a definition is checked
    when it is written, and a stored one that fails the check (edited by hand) is
    skipped when a snapshot is loaded, so its callers get their defaults.
    """


class FlagNotFound(VeneerError, LookupError):
    """No flag of that name in the database (``delete_flag``, ``definition``, the CLI)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"no flag named {name!r} in the flags tables; `veneer flags list` shows them"
        )
