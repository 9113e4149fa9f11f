"""Checks of incoming values, written once: every layer validates through these.

Each check returns the value in its canonical type (an ``int``, a ``float``, ``bytes``)
or raises the error class it is given (default
:class:`~secagg.errors.InvalidParameterError`; message codecs pass
:class:`~secagg.errors.MessageError`). ``bool`` is never accepted as a number, although
Python makes it an ``int``. The ``require_*`` checks accept numpy integers and floats and
return the Python value; :func:`is_int` is the exact predicate (a Python ``int``).

>>> require_int("threshold", 3, lo=2, hi=10)
3
>>> require_real("delta", 1e-5, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
1e-05
>>> require_int("rounds", True, lo=1)
Traceback (most recent call last):
  ...
secagg.errors.InvalidParameterError: rounds must be an int >= 1, got True
"""

from __future__ import annotations

import math
import numbers
from typing import TypeGuard

from secagg.errors import InvalidParameterError, SecAggError

__all__ = [
    "is_int",
    "is_real",
    "require_int",
    "require_real",
    "require_positive",
    "require_bytes",
]


def is_int(value: object) -> TypeGuard[int]:
    """``value`` is a Python ``int`` and not a ``bool`` (numpy integers are not: use
    :func:`require_int` to accept and convert them)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """``value`` is a real number (int or float, Python or numpy) and not a ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _range_text(
    lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, spec: str = "g"
) -> str:
    """The bounds as a message reads them (``spec``: ``"g"`` for reals, ``""`` for ints)."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:{spec}}, {hi:{spec}}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:{spec}}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:{spec}}"
    return ""


def require_int(
    name: str,
    value: object,
    *,
    lo: int | None = None,
    hi: int | None = None,
    error: type[SecAggError] = InvalidParameterError,
) -> int:
    """``value`` as an ``int`` within ``[lo, hi]`` (either bound optional).

    Raises:
        error: ``value`` is not an integer (or is a ``bool``) or lies outside the bounds.
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        v = int(value)
        if (lo is None or v >= lo) and (hi is None or v <= hi):
            return v
    bounds = _range_text(lo, hi, False, False, spec="")
    raise error(f"{name} must be an int {bounds}".rstrip() + f", got {value!r}")


def require_real(
    name: str,
    value: object,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    error: type[SecAggError] = InvalidParameterError,
) -> float:
    """``value`` as a finite ``float`` within the bounds (open or closed, either optional).

    Raises:
        error: ``value`` is not a real number (or is a ``bool``), is not finite, or lies
            outside the bounds.
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise error(f"{name} must be a real number, got {value!r}")
    v = float(value)
    ok = math.isfinite(v)
    if lo is not None:
        ok = ok and (v > lo if lo_open else v >= lo)
    if hi is not None:
        ok = ok and (v < hi if hi_open else v <= hi)
    if not ok:
        bounds = _range_text(lo, hi, lo_open, hi_open)
        raise error(f"{name} must be finite{' and ' + bounds if bounds else ''}, got {value!r}")
    return v


def require_positive(
    name: str, value: object, *, error: type[SecAggError] = InvalidParameterError
) -> float:
    """``value`` as a finite ``float > 0``.

    Raises:
        error: ``value`` is not a positive finite real number.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = float(value)
        if math.isfinite(v) and v > 0:
            return v
    raise error(f"{name} must be a positive finite number, got {value!r}")


def require_bytes(
    name: str,
    value: object,
    *,
    size: int | None = None,
    sizes: tuple[int, ...] | None = None,
    max_size: int | None = None,
    error: type[SecAggError] = InvalidParameterError,
) -> bytes:
    """``value`` as ``bytes`` of exactly ``size`` bytes, one of ``sizes``, or at most ``max_size``.

    Raises:
        error: ``value`` is not ``bytes`` or has a length the bounds do not allow.
    """
    if not isinstance(value, bytes):
        raise error(f"{name} must be bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise error(f"{name} must be {size} bytes, got {len(value)}")
    if sizes is not None and len(value) not in sizes:
        raise error(f"{name} must be one of {list(sizes)} bytes long, got {len(value)}")
    if max_size is not None and len(value) > max_size:
        raise error(f"{name} exceeds {max_size} bytes")
    return value
