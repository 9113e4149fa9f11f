"""Wire messages of distributed Paillier key generation (:mod:`protocols.paillier.keygen`).

Three typed, frozen messages, each validated at construction (:class:`~secagg.errors.MessageError`):
:class:`KeygenHello` (a member's signed X25519 key), :class:`KeygenShares` (an AES-GCM
ciphertext for one peer, of a pairwise :class:`KeygenPhase`) and :class:`KeygenBroadcast`
(signed public values of a broadcast phase). Binary encoding
(:func:`encode_keygen_message`, :func:`decode_keygen_message`):
``magic "SAPK" | version 1 | type | session (u64) | body``, strictly decoded against the
key generation's parameters. Also the transcripts that signatures and the channels' associated
data bind, and the fixed-width integer payloads the parties exchange.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from protocols.framing import MAX_U64, frame, unframe
from secagg.errors import MessageError, ProtocolAbortError
from secagg.primitives.aead import NONCE_BYTES as AEAD_NONCE_BYTES
from secagg.primitives.aead import TAG_BYTES as AEAD_TAG_BYTES
from secagg.primitives.distributed_paillier import I64, KeygenParameters
from secagg.primitives.signing import SIGNATURE_BYTES
from secagg.primitives.transcript import canonical
from secagg.validation import is_int, require_bytes, require_int

__all__ = [
    "MAGIC",
    "WIRE_VERSION",
    "PROTOCOL",
    "DIGEST_BYTES",
    "MAX_ATTEMPTS",
    "KeygenPhase",
    "KeygenHello",
    "KeygenShares",
    "KeygenBroadcast",
    "KeygenMessage",
    "encode_keygen_message",
    "decode_keygen_message",
    "hello_transcript",
    "broadcast_transcript",
    "channel_round",
    "pack_ints",
    "unpack_ints",
    "pack_residues",
    "unpack_residues",
    "signed_width",
    "is_u64",
    "MAX_SESSION",
]

MAGIC = b"SAPK"
"""First bytes of every key-generation message."""
WIRE_VERSION = 1
"""Version of the encoding; a change of the bytes is a change of this number."""
_HELLO = struct.Struct(">Q32s64s")
_SHARES = struct.Struct(">QQBII")
_BROADCAST = struct.Struct(">QBII")
PROTOCOL = "secagg/paillier-keygen/v1"
"""Domain separator of every transcript of the key generation."""
MAX_SESSION = MAX_U64
"""The largest session (and party) id: they travel as unsigned 64-bit integers."""
DIGEST_BYTES = 32
"""Length of the public-transcript digest in the verification broadcast."""
MAX_ATTEMPTS = 1 << 20
"""Candidate batches one session may draw before it gives up."""


class KeygenPhase(Enum):
    """The message rounds of a distributed key generation, in order."""

    HELLO = 1
    SIEVE = 2
    SIEVE_OPEN = 3
    MODULUS = 4
    MODULUS_OPEN = 5
    BIPRIMALITY = 6
    BIPRIMALITY_CONFIRM = 7
    EXPONENT = 8
    THETA = 9
    KEY_SHARES = 10
    VERIFICATION = 11

    @property
    def pairwise(self) -> bool:
        """Whether each party sends one encrypted message per peer (else one signed broadcast)."""
        return self in _PAIRWISE


_PAIRWISE = frozenset(
    {KeygenPhase.SIEVE, KeygenPhase.MODULUS, KeygenPhase.EXPONENT, KeygenPhase.KEY_SHARES}
)


class _Kind(Enum):
    HELLO = 1
    SHARES = 2
    BROADCAST = 3


def is_u64(value: object) -> bool:
    """``value`` is a Python ``int`` in ``[0, 2^64)`` (a session or party id on the wire)."""
    return is_int(value) and 0 <= value <= MAX_SESSION


def _u64(message: object, name: str) -> None:
    """Check the field ``name`` is in ``[0, 2^64)``; store it as a Python ``int``."""
    value = require_int(name, getattr(message, name), lo=0, hi=MAX_SESSION, error=MessageError)
    object.__setattr__(message, name, value)


def _attempt(message: KeygenShares | KeygenBroadcast) -> None:
    """Check the attempt number is in ``[0, MAX_ATTEMPTS)``; store it as a Python ``int``."""
    checked = require_int("attempt", message.attempt, lo=0, hi=MAX_ATTEMPTS - 1, error=MessageError)
    object.__setattr__(message, "attempt", checked)


@dataclass(frozen=True)
class KeygenHello:
    """Party -> everyone: its X25519 key for this session, signed with its identity key."""

    session: int
    sender: int
    exchange_key: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _u64(self, "session")
        _u64(self, "sender")
        require_bytes("exchange_key", self.exchange_key, size=32, error=MessageError)
        require_bytes("signature", self.signature, size=SIGNATURE_BYTES, error=MessageError)


@dataclass(frozen=True)
class KeygenShares:
    """Party -> one peer (relayed): an AES-GCM ciphertext of this phase's shares for it."""

    session: int
    sender: int
    recipient: int
    phase: KeygenPhase
    attempt: int
    ciphertext: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _u64(self, "session")
        _u64(self, "sender")
        _u64(self, "recipient")
        if not isinstance(self.phase, KeygenPhase) or not self.phase.pairwise:
            raise MessageError("shares must belong to a pairwise phase")
        _attempt(self)
        require_bytes("ciphertext", self.ciphertext, error=MessageError)
        if len(self.ciphertext) < AEAD_NONCE_BYTES + AEAD_TAG_BYTES:
            raise MessageError("ciphertext is too short")
        if self.sender == self.recipient:
            raise MessageError("a party does not send shares to itself")


@dataclass(frozen=True)
class KeygenBroadcast:
    """Party -> everyone (relayed): this phase's public values, signed with its identity key."""

    session: int
    sender: int
    phase: KeygenPhase
    attempt: int
    payload: bytes = field(repr=False)
    signature: bytes = b""

    def __post_init__(self) -> None:
        _u64(self, "session")
        _u64(self, "sender")
        if (
            not isinstance(self.phase, KeygenPhase)
            or self.phase.pairwise
            or self.phase is KeygenPhase.HELLO
        ):
            raise MessageError("a broadcast must belong to a broadcast phase")
        _attempt(self)
        require_bytes("payload", self.payload, error=MessageError)
        require_bytes("signature", self.signature, size=SIGNATURE_BYTES, error=MessageError)


KeygenMessage = KeygenHello | KeygenShares | KeygenBroadcast


def hello_transcript(session: int, sender: int, exchange_key: bytes) -> bytes:
    """What a member signs with its hello: ``(protocol, session, sender, X25519 key)``."""
    return canonical(PROTOCOL, "hello", session, sender, exchange_key)


def broadcast_transcript(
    session: int, sender: int, phase: KeygenPhase, attempt: int, payload: bytes
) -> bytes:
    """What a member signs with a broadcast: session, sender, phase, attempt, payload hash."""
    return canonical(
        PROTOCOL,
        "broadcast",
        session,
        sender,
        phase.value,
        attempt,
        hashlib.sha256(payload).digest(),
    )


def channel_round(session: int, attempt: int, phase: KeygenPhase) -> int:
    """The 63-bit "round" of the pairwise channel's associated data for one phase.

    It binds session, attempt and phase (a hash of the three), so that a ciphertext of
    one phase cannot be replayed into another.
    """
    digest = hashlib.sha256(canonical(PROTOCOL, "channel", session, attempt, phase.value)).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _max_payload(params: KeygenParameters) -> int:
    # the SIEVE shares dominate; every other payload is far below this for sane sizes
    sieve = 3 * params.batch_size * len(params.sieve_moduli) * 4
    field_width = (params.field_prime.bit_length() + 7) // 8
    modulus = 3 * params.batch_size * field_width
    bounds = params.bounds
    big = 8 * (max(bounds.key_share_bits, bounds.product_bits + params.key_bits) // 8 + 16)
    return max(sieve, modulus, big, 2 * params.key_bits // 8 * (params.biprimality_rounds + 1))


def encode_keygen_message(message: KeygenMessage, params: KeygenParameters) -> bytes:
    """Compact binary encoding of a key-generation message.

    Raises:
        MessageError: not a key-generation message, or a field out of its wire range.
    """
    if isinstance(message, KeygenHello):
        kind = _Kind.HELLO
        body = _HELLO.pack(message.sender, message.exchange_key, message.signature)
    elif isinstance(message, KeygenShares):
        kind = _Kind.SHARES
        body = (
            _SHARES.pack(
                message.sender,
                message.recipient,
                message.phase.value,
                message.attempt,
                len(message.ciphertext),
            )
            + message.ciphertext
        )
    elif isinstance(message, KeygenBroadcast):
        kind = _Kind.BROADCAST
        body = (
            _BROADCAST.pack(
                message.sender, message.phase.value, message.attempt, len(message.payload)
            )
            + message.payload
            + message.signature
        )
    else:
        raise MessageError(f"not a key-generation message: {type(message).__name__}")
    if len(body) > _max_payload(params) + 256:
        raise MessageError("message exceeds the size this key generation allows")
    return frame(MAGIC, WIRE_VERSION, kind, message.session, body)


def _phase(value: int) -> KeygenPhase:
    try:
        return KeygenPhase(value)
    except ValueError:
        raise MessageError("unknown key-generation phase") from None


def decode_keygen_message(
    data: bytes | bytearray | memoryview, params: KeygenParameters
) -> KeygenMessage:
    """Strictly decode a key-generation message (sizes checked against ``params``).

    Raises:
        MessageError: unknown magic, version, type or phase, wrong sizes, malformed fields.
    """
    kind, session, body = unframe(
        data, magic=MAGIC, version=WIRE_VERSION, kinds=_Kind, what="a key-generation message"
    )
    if kind is _Kind.HELLO:
        if len(body) != _HELLO.size:
            raise MessageError("hello has the wrong size")
        sender, key, signature = _HELLO.unpack(body)
        return KeygenHello(session=session, sender=sender, exchange_key=key, signature=signature)
    limit = _max_payload(params) + AEAD_NONCE_BYTES + AEAD_TAG_BYTES
    if kind is _Kind.SHARES:
        if len(body) < _SHARES.size:
            raise MessageError("shares are truncated")
        sender, recipient, phase, attempt, length = _SHARES.unpack_from(body)
        if length > limit or len(body) != _SHARES.size + length:
            raise MessageError("shares have the wrong size")
        return KeygenShares(
            session=session,
            sender=sender,
            recipient=recipient,
            phase=_phase(phase),
            attempt=attempt,
            ciphertext=body[_SHARES.size :],
        )
    if len(body) < _BROADCAST.size:
        raise MessageError("broadcast is truncated")
    sender, phase, attempt, length = _BROADCAST.unpack_from(body)
    if length > limit or len(body) != _BROADCAST.size + length + SIGNATURE_BYTES:
        raise MessageError("broadcast has the wrong size")
    start = _BROADCAST.size
    return KeygenBroadcast(
        session=session,
        sender=sender,
        phase=_phase(phase),
        attempt=attempt,
        payload=body[start : start + length],
        signature=body[start + length :],
    )


# --------------------------------------------------------------------------- payloads


def pack_ints(values: Iterable[int], width: int) -> bytes:
    """Signed big-endian integers of ``width`` bytes each, concatenated.

    Raises:
        ProtocolAbortError: a value does not fit ``width`` bytes.
    """
    try:
        return b"".join(int(v).to_bytes(width, "big", signed=True) for v in values)
    except OverflowError:
        raise ProtocolAbortError("a value exceeds its wire width") from None


def unpack_ints(payload: bytes, width: int, count: int) -> list[int]:
    """The ``count`` signed integers of :func:`pack_ints`.

    Raises:
        MessageError: the payload is not ``width * count`` bytes.
    """
    if len(payload) != width * count:
        raise MessageError(f"payload has {len(payload)} bytes, expected {width * count}")
    return [
        int.from_bytes(payload[k * width : (k + 1) * width], "big", signed=True)
        for k in range(count)
    ]


def pack_residues(values: I64) -> bytes:
    """Residues modulo the sieve primes as big-endian 32-bit integers."""
    return np.ascontiguousarray(values, dtype=">i4").tobytes()


def unpack_residues(payload: bytes, shape: tuple[int, ...], moduli: Sequence[int]) -> I64:
    """The residues of :func:`pack_residues`, of ``shape``, each below its modulus.

    Raises:
        MessageError: the payload has the wrong size, or a residue is out of range.
    """
    expected = int(np.prod(shape)) * 4
    if len(payload) != expected:
        raise MessageError(f"payload has {len(payload)} bytes, expected {expected}")
    out = np.frombuffer(payload, dtype=">i4").astype(np.int64).reshape(shape)
    if (out < 0).any() or (out >= np.asarray(moduli, dtype=np.int64)).any():
        raise MessageError("residue out of range")
    return out


def signed_width(bits: int) -> int:
    """Bytes of a signed integer of magnitude below ``2^bits``."""
    return (bits + 1 + 7) // 8
