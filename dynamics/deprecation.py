"""Renamed keyword arguments: the old name keeps working for a while, with a warning.

`renamed_argument` is the one place that resolves an old keyword (e.g. ``eps=``) against its
new name (e.g. ``t_min=``): passing both is an error, passing the old one alone warns with a
`DeprecationWarning` naming the new one. `renamed_attribute` is the read-only property that
keeps an old attribute name (``.eps``) working the same way.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

from .errors import InputError

__all__ = ["renamed_argument", "renamed_attribute", "UNSET"]


class _Unset:
    """The default of a deprecated keyword: tells "not passed" from ``None``."""

    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()


def renamed_argument(old: str, old_value: Any, new: str, new_value: Any, where: str,
                     default: Optional[Any] = None, stacklevel: int = 3) -> Any:
    """The value of the argument now called ``new`` of ``where``: ``new_value``, or (with a
    `DeprecationWarning`) ``old_value`` when only the old name ``old`` was passed
    (``old_value`` is `UNSET` when it was not). ``new_value`` counts as not passed when it
    equals ``default``."""
    if old_value is UNSET:
        return new_value
    same = new_value is default or (isinstance(new_value, (bool, int, float, str))
                                    and new_value == default)
    if not same:
        raise InputError(f"{where}: pass `{new}` only (`{old}` is its deprecated old name); "
                         f"got both {new}={new_value!r} and {old}={old_value!r}")
    warnings.warn(f"{where}: `{old}` is deprecated, use `{new}`", DeprecationWarning,
                  stacklevel=stacklevel)
    return old_value


def renamed_attribute(old: str, new: str) -> property:
    """A read-only property ``old`` returning attribute ``new``, with a `DeprecationWarning`."""
    def get(self: Any) -> Any:
        warnings.warn(f"{type(self).__name__}.{old} is deprecated, use .{new}",
                      DeprecationWarning, stacklevel=2)
        return getattr(self, new)
    return property(get, doc=f"Deprecated name of `{new}`.")
