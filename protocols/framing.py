"""The frame of the Paillier and key-generation wire codecs, written once.

Every message of those codecs starts with :data:`FRAME_HEADER` (big-endian)::

    magic 4 bytes | version u8 | type u8 | field u64 | body

where ``field`` is the codec's 64-bit header value (a round or session id). :func:`unframe`
is strict: anything that is not bytes, is shorter than the header, carries another magic
or version, or an unknown type raises :class:`~secagg.errors.MessageError`. The masking
protocols have their own header (:mod:`protocols.masking.codec`).
"""

from __future__ import annotations

import struct
from enum import Enum
from typing import TypeVar

from secagg.errors import MessageError

__all__ = ["FRAME_HEADER", "MAX_U64", "frame", "unframe"]

MAX_U64 = (1 << 64) - 1
"""The largest value of an unsigned 64-bit wire field (round ids, sessions, counters)."""

FRAME_HEADER = struct.Struct(">4sBBQ")
"""Header of the Paillier and key-generation codecs: magic, version, type, a 64-bit field."""

_K = TypeVar("_K", bound=Enum)


def frame(magic: bytes, version: int, kind: Enum, field: int, body: bytes) -> bytes:
    """``FRAME_HEADER`` (``magic``, ``version``, ``kind.value``, ``field``) then ``body``."""
    return FRAME_HEADER.pack(magic, version, kind.value, field) + body


def unframe(
    data: bytes | bytearray | memoryview, *, magic: bytes, version: int, kinds: type[_K], what: str
) -> tuple[_K, int, bytes]:
    """Strictly split a framed message into ``(kind, field, body)``.

    Args:
        data: the received bytes.
        magic, version: what the codec writes; anything else is refused.
        kinds: the codec's message-type enum.
        what: the codec's messages, for the error (e.g. ``"a Paillier round message"``).

    Raises:
        MessageError: not bytes, truncated, another magic or version, an unknown type.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError("message must be bytes")
    data = bytes(data)
    if len(data) < FRAME_HEADER.size:
        raise MessageError("message is truncated")
    got_magic, got_version, kind_value, field = FRAME_HEADER.unpack_from(data)
    if got_magic != magic or got_version != version:
        raise MessageError(f"not {what} of a supported version")
    try:
        kind = kinds(kind_value)
    except ValueError:
        raise MessageError("unknown message type") from None
    return kind, field, data[FRAME_HEADER.size :]
