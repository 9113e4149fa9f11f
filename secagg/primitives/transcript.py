"""Canonical, injective byte encodings of tuples of fields.

Used wherever several values are bound together cryptographically: HKDF ``info``
strings, AEAD associated data and signed transcripts. Each field is tagged with its
type and length-prefixed, so two different tuples never encode to the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from enum import Enum
from typing import cast

from secagg.errors import InvalidParameterError

__all__ = ["Field", "canonical"]

Field = bytes | str | int | Enum | Sequence[int]

_TAG_BYTES = b"B"
_TAG_STR = b"S"
_TAG_UINT = b"U"
_TAG_INT_LIST = b"L"
_UINT_END = 1 << 64
_INT_ONLY = frozenset({int})
_LENGTH = struct.Struct(">I")
_BYTES_HEAD = struct.Struct(">cI")
_UINT_RECORD = struct.Struct(">cIQ")


def _encode_uint(value: int) -> bytes:
    if value < 0 or value >= 1 << 64:
        raise InvalidParameterError(f"integer fields must lie in [0, 2^64), got {value}")
    return struct.pack(">Q", value)


def _encode_uints(values: Sequence[int]) -> bytes:
    """Big-endian u64s, one ``struct.pack`` call (survivor sets and masking sets hold up to n
    ids)."""
    items = values if set(map(type, values)) <= _INT_ONLY else [int(v) for v in values]
    if items and (min(items) < 0 or max(items) >= 1 << 64):
        bad = next(v for v in items if not 0 <= v < 1 << 64)
        raise InvalidParameterError(f"integer fields must lie in [0, 2^64), got {bad}")
    return struct.pack(f">{len(items)}Q", *items)


def _encode_field(field: object) -> bytes:
    """One ``tag || length || payload`` record, for any supported field type."""
    if isinstance(field, Enum):
        field = str(field.value)
    if isinstance(field, bool):
        raise InvalidParameterError("bool is not a transcript field; use an int")
    if isinstance(field, (bytes, bytearray, memoryview)):
        tag, payload = _TAG_BYTES, bytes(field)
    elif isinstance(field, str):
        tag, payload = _TAG_STR, field.encode("utf-8")
    elif isinstance(field, int):
        tag, payload = _TAG_UINT, _encode_uint(field)
    elif isinstance(field, Sequence):
        tag, payload = _TAG_INT_LIST, _encode_uints(cast(Sequence[int], field))
    else:
        raise InvalidParameterError(f"unsupported transcript field type {type(field).__name__}")
    return tag + _LENGTH.pack(len(payload)) + payload


def canonical(*fields: Field) -> bytes:
    """Encode ``fields`` as ``tag || length || payload`` records, concatenated.

    Supported fields: ``bytes``, ``str`` (UTF-8), ``Enum`` (its ``value``, which must be a
    ``str``), non-negative ``int`` below 2^64 (8 bytes, big-endian) and sequences of such
    ints (for example a sorted survivor set).

    The records are independent, so ``canonical(*a) + canonical(*b) == canonical(*a, *b)``:
    a transcript's constant part may be encoded once and joined with the rest.
    """
    parts: list[bytes] = []
    append = parts.append
    # exact types first (transcripts are built by the thousand per round); any other
    # value, including every subclass, takes the general path
    for field in fields:
        kind = type(field)
        if kind is int:
            if 0 <= field < _UINT_END:  # type: ignore[operator]
                append(_UINT_RECORD.pack(_TAG_UINT, 8, field))
                continue
        elif kind is bytes:
            append(_BYTES_HEAD.pack(_TAG_BYTES, len(field)))  # type: ignore[arg-type]
            append(field)  # type: ignore[arg-type]
            continue
        elif kind is str:
            payload = field.encode("utf-8")  # type: ignore[union-attr]
            append(_BYTES_HEAD.pack(_TAG_STR, len(payload)))
            append(payload)
            continue
        elif kind is tuple or kind is list:
            payload = _encode_uints(field)  # type: ignore[arg-type]
            append(_BYTES_HEAD.pack(_TAG_INT_LIST, len(payload)))
            append(payload)
            continue
        append(_encode_field(field))
    return b"".join(parts)
