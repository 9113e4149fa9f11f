"""The strict binary encoding of the masking protocols' wire messages.

Every message is a header followed by its fields in declaration order (all integers
big-endian unless stated)::

    header  = "SA" | version u8 | type u8 | round_id u64 | sender u64 | recipient u64
    ids     = count u32 | count * u64
    bytes   = length u32 | payload      (optional keys and signatures: length 0 when absent)
    fixed   = payload                   (keys, signatures, commitments of a known size)
    records = count u32 | count * (the record's fields, its client id first as u64)
    words   = bits u8 | count u32 | count * (u32 or u64, little-endian)   # masked vectors

:class:`Writer` and :class:`Reader` are the two directions; each message class of
:mod:`protocols.masking.messages` writes and reads its own fields with them.
:func:`open_frame` and the reader are strict: a wrong magic or version, an unknown type,
a length that runs past the end, a list longer than its bound or than the bytes left,
a blob above ``MAX_BLOB``, trailing bytes or a payload above ``max_bytes`` raise
:class:`~secagg.errors.MessageError`, before anything is allocated for it. Masked vectors
are read without a copy (a view of the received buffer).

Compatibility rule: the layout changes only together with :data:`WIRE_VERSION`; the
golden bytes of ``tests/protocols/test_golden_wire_masking.py`` pin it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from protocols.masking.records import (
    COMMITMENT_BYTES,
    MAX_BLOB,
    MAX_LIST,
    MAX_WORDS,
    PUBLIC_KEY_BYTES,
    SEED_BYTES,
    SIGNATURE_BYTES,
    Attestation,
    EncryptedShare,
    PeerKeys,
    RevealedShare,
    SeedEntry,
    SurvivorSignature,
    word_dtype,
)
from secagg.errors import MessageError

__all__ = [
    "MAGIC",
    "WIRE_VERSION",
    "MAX_MESSAGE_BYTES",
    "HEADER",
    "MessageType",
    "Envelope",
    "Writer",
    "Reader",
    "open_frame",
]

MAGIC = b"SA"
"""The first two bytes of every masking-protocol message."""
WIRE_VERSION = 3
"""The version of the layout; a decoder refuses every other."""
MAX_MESSAGE_BYTES = 1 << 32
"""Default ceiling for :func:`open_frame` (4 GiB); receivers may pass a tighter one."""
HEADER = struct.Struct(">2sBBQQQ")
"""Magic, version, type, round id, sender, recipient."""

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_PEER_HEAD = struct.Struct(f">Q{PUBLIC_KEY_BYTES}s{PUBLIC_KEY_BYTES}s")


class MessageType(IntEnum):
    """Wire type codes (one per message class)."""

    ROUND_START = 1
    ADVERTISE_KEYS = 2
    KEY_BROADCAST = 3
    SHARE_KEYS = 4
    SHARE_FORWARD = 5
    MASKED_INPUT = 6
    CONSISTENCY_REQUEST = 7
    CONSISTENCY_SIGNATURE = 8
    UNMASK_REQUEST = 9
    UNMASK_RESPONSE = 10
    SEED_REQUEST = 11
    SEED_REVEAL = 12


@dataclass(frozen=True, slots=True)
class Envelope:
    """The header fields of a received message (magic and version already checked)."""

    type: MessageType
    round_id: int
    sender: int
    recipient: int


class Writer:
    """Appends one message's fields to its header; :meth:`to_bytes` joins them."""

    __slots__ = ("_parts",)

    def __init__(self, kind: MessageType, *, round_id: int, sender: int, recipient: int) -> None:
        self._parts: list[bytes | memoryview] = [
            HEADER.pack(MAGIC, WIRE_VERSION, int(kind), round_id, sender, recipient)
        ]

    def to_bytes(self) -> bytes:
        """The encoded message."""
        return b"".join(self._parts)

    def u8(self, v: int) -> None:
        """One unsigned byte."""
        self._parts.append(struct.pack(">B", v))

    def u32(self, v: int) -> None:
        """A big-endian 32-bit count or length."""
        self._parts.append(_U32.pack(v))

    def u64(self, v: int) -> None:
        """A big-endian 64-bit id."""
        self._parts.append(_U64.pack(v))

    def blob(self, b: bytes) -> None:
        """A length-prefixed byte string."""
        self.u32(len(b))
        self._parts.append(b)

    def fixed(self, b: bytes | memoryview) -> None:
        """A byte string whose length the reader knows."""
        self._parts.append(b)

    def ids(self, values: Sequence[int]) -> None:
        """A counted list of 64-bit ids."""
        self.u32(len(values))
        self._parts.append(np.asarray(values, dtype=">u8").tobytes())

    def reveals(self, values: Sequence[bytes]) -> None:
        """A counted list of graph-seed contributions."""
        self.u32(len(values))
        for value in values:
            self.fixed(value)

    def entries(self, entries: Sequence[SeedEntry]) -> None:
        """A counted list of :class:`~protocols.masking.records.SeedEntry`."""
        self.u32(len(entries))
        for e in entries:
            self.u64(e.client_id)
            self.fixed(e.commitment)

    def peers(self, peers: Sequence[PeerKeys]) -> None:
        """A counted list of :class:`~protocols.masking.records.PeerKeys`."""
        self.u32(len(peers))
        for p in peers:
            self.u64(p.client_id)
            self.fixed(p.mask_public)
            self.fixed(p.share_public)
            self.blob(p.signature)
            self.blob(p.round_public)
            self.blob(p.seed_commitment)

    def shares(self, shares: Sequence[EncryptedShare]) -> None:
        """A counted list of :class:`~protocols.masking.records.EncryptedShare`."""
        self.u32(len(shares))
        for s in shares:
            self.u64(s.peer)
            self.blob(s.ciphertext)

    def revealed(self, shares: Sequence[RevealedShare]) -> None:
        """A counted list of :class:`~protocols.masking.records.RevealedShare`."""
        self.u32(len(shares))
        for s in shares:
            self.u64(s.owner)
            self.blob(s.share)

    def signatures(self, signatures: Sequence[SurvivorSignature]) -> None:
        """A counted list of :class:`~protocols.masking.records.SurvivorSignature`."""
        self.u32(len(signatures))
        for s in signatures:
            self.u64(s.signer)
            self.fixed(s.signature)
            self.blob(s.signer_key)

    def attestations(self, attestations: Sequence[Attestation]) -> None:
        """A counted list of :class:`~protocols.masking.records.Attestation`."""
        self.u32(len(attestations))
        for a in attestations:
            self.u64(a.peer)
            self.fixed(a.signature)

    def words(self, bits: int, words: npt.NDArray[np.uint32] | npt.NDArray[np.uint64]) -> None:
        """A masked vector: ``bits``, the count, and the words little-endian."""
        self.u8(bits)
        self.u32(words.shape[0])
        little = words.astype(words.dtype.newbyteorder("<"), copy=False)
        self.fixed(memoryview(np.ascontiguousarray(little)).cast("B"))  # type: ignore[arg-type]


class Reader:
    """Reads one message's fields in order, refusing anything out of bounds."""

    __slots__ = ("_buf", "_pos", "_end", "_raw")

    def __init__(self, buf: memoryview, pos: int, raw: bytes | None = None) -> None:
        self._buf = buf
        self._pos = pos
        self._end = len(buf)
        # the received bytes object itself when there is one: slicing it gives the field's
        # bytes in one step (fields are read by the thousand per message)
        self._raw = raw

    def _advance(self, n: int) -> int:
        """The position of the next ``n`` bytes, which are consumed."""
        pos = self._pos
        if n < 0 or pos + n > self._end:
            raise MessageError("message truncated")
        self._pos = pos + n
        return pos

    def take(self, n: int) -> memoryview:
        """The next ``n`` bytes (a view)."""
        pos = self._advance(n)
        return self._buf[pos : pos + n]

    def u8(self) -> int:
        """One unsigned byte."""
        return self._buf[self._advance(1)]

    def u32(self) -> int:
        """A big-endian 32-bit count or length."""
        value: int = _U32.unpack_from(self._buf, self._advance(4))[0]
        return value

    def u64(self) -> int:
        """A big-endian 64-bit id."""
        value: int = _U64.unpack_from(self._buf, self._advance(8))[0]
        return value

    def count(self, width: int, limit: int) -> int:
        """A list count, refused above ``limit`` or above what the bytes left can hold."""
        n = self.u32()
        if n > limit:
            raise MessageError(f"list of {n} entries exceeds {limit}")
        if n * width > self._end - self._pos:
            raise MessageError("message truncated")
        return n

    def blob(self) -> bytes:
        """A length-prefixed byte string of at most ``MAX_BLOB`` bytes."""
        n = self.u32()
        if n > MAX_BLOB:
            raise MessageError(f"field of {n} bytes exceeds {MAX_BLOB}")
        return self.fixed(n)

    def fixed(self, n: int) -> bytes:
        """A byte string of ``n`` bytes."""
        pos = self._advance(n)
        raw = self._raw
        return raw[pos : pos + n] if raw is not None else bytes(self._buf[pos : pos + n])

    def ids(self) -> tuple[int, ...]:
        """A counted list of 64-bit ids."""
        n = self.count(8, MAX_LIST)
        raw = np.frombuffer(self.take(8 * n), dtype=">u8")
        return tuple(raw.tolist())

    def reveals(self) -> tuple[bytes, ...]:
        """A counted list of graph-seed contributions."""
        n = self.count(SEED_BYTES, MAX_LIST)
        return tuple(self.fixed(SEED_BYTES) for _ in range(n))

    def entries(self) -> tuple[SeedEntry, ...]:
        """A counted list of :class:`~protocols.masking.records.SeedEntry`."""
        n = self.count(8 + COMMITMENT_BYTES, MAX_LIST)
        return tuple(SeedEntry(self.u64(), self.fixed(COMMITMENT_BYTES)) for _ in range(n))

    def peers(self) -> tuple[PeerKeys, ...]:
        """A counted list of :class:`~protocols.masking.records.PeerKeys`."""
        n = self.count(8 + 2 * PUBLIC_KEY_BYTES + 12, MAX_LIST)
        out = []
        for _ in range(n):
            # the fixed part (id and both keys) in one unpack
            client_id, mask_public, share_public = _PEER_HEAD.unpack_from(
                self._buf, self._advance(_PEER_HEAD.size)
            )
            out.append(
                PeerKeys(
                    client_id, mask_public, share_public, self.blob(), self.blob(), self.blob()
                )
            )
        return tuple(out)

    def shares(self) -> tuple[EncryptedShare, ...]:
        """A counted list of :class:`~protocols.masking.records.EncryptedShare`."""
        n = self.count(12, MAX_LIST)
        return tuple(EncryptedShare(self.u64(), self.blob()) for _ in range(n))

    def revealed(self) -> tuple[RevealedShare, ...]:
        """A counted list of :class:`~protocols.masking.records.RevealedShare`."""
        n = self.count(12, MAX_LIST)
        return tuple(RevealedShare(self.u64(), self.blob()) for _ in range(n))

    def signatures(self) -> tuple[SurvivorSignature, ...]:
        """A counted list of :class:`~protocols.masking.records.SurvivorSignature`."""
        n = self.count(8 + SIGNATURE_BYTES + 4, MAX_LIST)
        return tuple(
            SurvivorSignature(self.u64(), self.fixed(SIGNATURE_BYTES), self.blob())
            for _ in range(n)
        )

    def attestations(self) -> tuple[Attestation, ...]:
        """A counted list of :class:`~protocols.masking.records.Attestation`."""
        n = self.count(8 + SIGNATURE_BYTES, MAX_LIST)
        return tuple(Attestation(self.u64(), self.fixed(SIGNATURE_BYTES)) for _ in range(n))

    def words(self) -> tuple[int, npt.NDArray[np.uint32] | npt.NDArray[np.uint64]]:
        """A masked vector: ``(bits, words)``, the words a view of the received buffer."""
        bits = self.u8()
        if not 1 <= bits <= 64:
            raise MessageError(f"bits must lie in [1, 64], got {bits}")
        dtype = np.dtype(word_dtype(bits)).newbyteorder("<")
        n = self.count(dtype.itemsize, MAX_WORDS)
        raw = np.frombuffer(self.take(n * dtype.itemsize), dtype=dtype)
        words = raw if raw.dtype.isnative else raw.astype(raw.dtype.newbyteorder("="))
        return bits, words

    def done(self) -> None:
        """Refuse trailing bytes."""
        if self._pos != len(self._buf):
            raise MessageError(f"{len(self._buf) - self._pos} trailing bytes")


def open_frame(
    data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> tuple[Envelope, Reader]:
    """Check the header of one received message; the reader starts at its first field.

    Raises:
        MessageError: not bytes, oversized input, truncated header, bad magic or version,
            unknown type.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError(f"expected bytes, got {type(data).__name__}")
    buf = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    if len(buf) > max_bytes:
        raise MessageError(f"message of {len(buf)} bytes exceeds the limit of {max_bytes}")
    if len(buf) < HEADER.size:
        raise MessageError("message truncated")
    magic, version, code, round_id, sender, recipient = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise MessageError("not a secagg-fl message (bad magic)")
    if version != WIRE_VERSION:
        raise MessageError(f"unsupported wire version {version} (this build speaks {WIRE_VERSION})")
    try:
        kind = MessageType(code)
    except ValueError:
        raise MessageError(f"unknown message type {code}") from None
    raw = data if type(data) is bytes else None
    return Envelope(kind, round_id, sender, recipient), Reader(buf, HEADER.size, raw)
