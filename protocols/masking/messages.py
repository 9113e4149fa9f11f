"""Typed, versioned wire messages of SecAgg / SecAgg+ and their strict binary encoding.

Every message is a frozen dataclass. Construction checks the *structure* (types, ranges,
sizes of keys, signatures and shares); whether a message makes sense *to its receiver*
(right round, right stage, right peers) is checked by the state machines.

Binary layout (all integers big-endian unless stated)::

    header  = "SA" | version u8 | type u8 | round_id u64 | sender u64 | recipient u64
    ids     = count u32 | count * u64
    bytes   = length u32 | payload      (optional keys and signatures: length 0 when absent)
    words   = bits u8 | count u32 | count * (u32 or u64, little-endian)   # masked vectors

The server has id :data:`SERVER_ID` (0); clients have ids in ``[1, 2^63 - 1]``.
:func:`decode_message` is strict: a wrong magic or version, an unknown type, a length
that runs past the end, trailing bytes, a payload above ``max_bytes`` or any field out of
range raises :class:`~secagg.errors.MessageError`. Masked vectors are decoded without a
copy (a read-only view of the received buffer).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from protocols.masking.graph import MAX_CLIENT_ID
from secagg.errors import MessageError

__all__ = [
    "FRAME_HEADER",
    "frame",
    "unframe",
    "Stage",
    "MessageType",
    "SERVER_ID",
    "WIRE_VERSION",
    "MAX_MESSAGE_BYTES",
    "Message",
    "RoundStart",
    "AdvertiseKeys",
    "SeedEntry",
    "SeedRequest",
    "SeedReveal",
    "Attestation",
    "PeerKeys",
    "KeyBroadcast",
    "EncryptedShare",
    "ShareKeys",
    "ShareForward",
    "MaskedInput",
    "ConsistencyRequest",
    "ConsistencySignature",
    "SurvivorSignature",
    "UnmaskRequest",
    "RevealedShare",
    "UnmaskResponse",
    "encode_message",
    "decode_message",
    "word_dtype",
]

SERVER_ID = 0
"""The server's party id on the wire; clients have ids in ``[1, 2^63 - 1]``."""
WIRE_VERSION = 2
MAGIC = b"SA"
MAX_MESSAGE_BYTES = 1 << 32
"""Default ceiling for :func:`decode_message` (4 GiB); receivers may pass a tighter one."""

MAX_ROUND_ID = (1 << 64) - 1
MAX_LIST = 1 << 20  # ids or records in one message
MAX_BLOB = 1 << 12  # one ciphertext, signature or share
MAX_WORDS = (1 << 32) - 1
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
COMMITMENT_BYTES = 32
SEED_BYTES = 32

_HEADER = struct.Struct(">2sBBQQQ")


class Stage(str, Enum):
    """Protocol stages, in order.

    ``GRAPH_SEED`` and ``CONSISTENCY_CHECK`` run only against a server that may lie (every
    class but curious): the first fixes the round's graph and execution context from the
    clients' committed random contributions, the second makes every client that reveals
    anything agree on the survivor set.
    """

    ADVERTISE_KEYS = "advertise_keys"
    GRAPH_SEED = "graph_seed"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASKING = "unmasking"

    @property
    def position(self) -> int:
        """0-based position in the protocol order."""
        return _STAGE_ORDER.index(self)


_STAGE_ORDER = tuple(Stage)


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


def word_dtype(bits: int) -> type[np.unsignedinteger[Any]]:
    """Machine word of the ring Z_(2^bits) on the wire and in accumulators."""
    return np.uint32 if bits <= 32 else np.uint64


# ----------------------------------------------------------------------------- checks


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise MessageError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
    return value


def _check_client(name: str, value: object) -> int:
    return _check_int(name, value, 1, MAX_CLIENT_ID)


def _check_bytes(name: str, value: object, *, size: int | None = None, max_size: int = MAX_BLOB) -> bytes:
    if not isinstance(value, bytes):
        raise MessageError(f"{name} must be bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise MessageError(f"{name} must be {size} bytes, got {len(value)}")
    if len(value) > max_size:
        raise MessageError(f"{name} exceeds {max_size} bytes")
    return value


def _check_signature(name: str, value: object) -> bytes:
    sig = _check_bytes(name, value)
    if len(sig) not in (0, SIGNATURE_BYTES):
        raise MessageError(f"{name} must be empty or {SIGNATURE_BYTES} bytes, got {len(sig)}")
    return sig


def _check_optional(name: str, value: object, size: int) -> bytes:
    raw = _check_bytes(name, value)
    if len(raw) not in (0, size):
        raise MessageError(f"{name} must be empty or {size} bytes, got {len(raw)}")
    return raw


def _check_ids(name: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, tuple):
        raise MessageError(f"{name} must be a tuple of client ids")
    if len(value) > MAX_LIST:
        raise MessageError(f"{name} has more than {MAX_LIST} entries")
    # one pass in C per check: these lists hold up to n ids and arrive at every client
    if value and (
        not all(type(v) is int for v in value) or min(value) < 1 or max(value) > MAX_CLIENT_ID
    ):
        raise MessageError(f"{name} must hold client ids in [1, 2^63 - 1]")
    return value


_R = TypeVar("_R")
_K = TypeVar("_K", bound=Enum)


def _check_records(name: str, value: object, kind: type[_R]) -> tuple[_R, ...]:
    if not isinstance(value, tuple) or any(not isinstance(v, kind) for v in value):
        raise MessageError(f"{name} must be a tuple of {kind.__name__}")
    if len(value) > MAX_LIST:
        raise MessageError(f"{name} has more than {MAX_LIST} entries")
    return value


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class PeerKeys:
    """One neighbour's advertised public keys, as relayed by the server."""

    client_id: int
    mask_public: bytes
    share_public: bytes
    signature: bytes = b""
    round_public: bytes = b""
    seed_commitment: bytes = b""

    def __post_init__(self) -> None:
        _check_client("client_id", self.client_id)
        _check_bytes("mask_public", self.mask_public, size=PUBLIC_KEY_BYTES)
        _check_bytes("share_public", self.share_public, size=PUBLIC_KEY_BYTES)
        _check_signature("signature", self.signature)
        _check_optional("round_public", self.round_public, PUBLIC_KEY_BYTES)
        _check_optional("seed_commitment", self.seed_commitment, COMMITMENT_BYTES)


@dataclass(frozen=True, slots=True)
class SeedEntry:
    """One client's commitment to its random contribution to the round's graph seed."""

    client_id: int
    commitment: bytes

    def __post_init__(self) -> None:
        _check_client("client_id", self.client_id)
        _check_bytes("commitment", self.commitment, size=COMMITMENT_BYTES)


@dataclass(frozen=True, slots=True)
class Attestation:
    """``peer``'s signature on the masking set it used (relayed to the holders of its shares)."""

    peer: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_client("peer", self.peer)
        _check_bytes("signature", self.signature, size=SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True)
class EncryptedShare:
    """An AEAD ciphertext of one client's two shares for one peer (``peer`` = the other end)."""

    peer: int
    ciphertext: bytes

    def __post_init__(self) -> None:
        _check_client("peer", self.peer)
        _check_bytes("ciphertext", self.ciphertext)


@dataclass(frozen=True, slots=True)
class SurvivorSignature:
    """A client's signature on the survivor set (consistency check)."""

    signer: int
    signature: bytes
    signer_key: bytes = b""

    def __post_init__(self) -> None:
        _check_client("signer", self.signer)
        _check_bytes("signature", self.signature, size=SIGNATURE_BYTES)
        _check_optional("signer_key", self.signer_key, PUBLIC_KEY_BYTES)


@dataclass(frozen=True, slots=True)
class RevealedShare:
    """A Shamir share (``secagg.primitives.shamir.Share.to_bytes``) of ``owner``'s secret."""

    owner: int
    share: bytes

    def __post_init__(self) -> None:
        _check_client("owner", self.owner)
        _check_bytes("share", self.share)


# ----------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Common header of every message.

    Attributes:
        round_id: the aggregation round, ``[0, 2^64)``.
        sender: the sender's id (``SERVER_ID`` for the server).
        recipient: the recipient's id (``SERVER_ID`` for the server).
    """

    TYPE: ClassVar[MessageType]
    STAGE: ClassVar[Stage]
    FROM_SERVER: ClassVar[bool]

    round_id: int
    sender: int = SERVER_ID
    recipient: int = SERVER_ID

    def __post_init__(self) -> None:
        _check_int("round_id", self.round_id, 0, MAX_ROUND_ID)
        if self.FROM_SERVER:
            _check_int("sender", self.sender, SERVER_ID, SERVER_ID)
            _check_client("recipient", self.recipient)
        else:
            _check_client("sender", self.sender)
            _check_int("recipient", self.recipient, SERVER_ID, SERVER_ID)

    @property
    def client_id(self) -> int:
        """The client end of the message (recipient of a request, sender of a reply)."""
        return self.recipient if self.FROM_SERVER else self.sender

    def to_bytes(self) -> bytes:
        """The binary encoding (see module docstring)."""
        return encode_message(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundStart(Message):
    """Server -> client, ADVERTISE_KEYS: the round begins.

    ``cohort`` (every class but curious) lists the round's clients, from which each client
    derives its own neighbours once the graph seed is fixed; ``neighbours`` (curious server,
    or clients that trust the server's graph) are the peers the server chose.
    """

    TYPE: ClassVar[MessageType] = MessageType.ROUND_START
    STAGE: ClassVar[Stage] = Stage.ADVERTISE_KEYS
    FROM_SERVER: ClassVar[bool] = True

    neighbours: tuple[int, ...]
    cohort: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_ids("neighbours", self.neighbours)
        _check_ids("cohort", self.cohort)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdvertiseKeys(Message):
    """Client -> server, ADVERTISE_KEYS: two fresh X25519 public keys, signed when required.

    ``mask_public`` derives the pairwise mask seeds; ``share_public`` the keys that
    encrypt shares. They must differ: the masking key's private half may be revealed
    (reconstructed) if the client drops, the encryption key's never is.
    """

    TYPE: ClassVar[MessageType] = MessageType.ADVERTISE_KEYS
    STAGE: ClassVar[Stage] = Stage.ADVERTISE_KEYS
    FROM_SERVER: ClassVar[bool] = False

    mask_public: bytes
    share_public: bytes
    signature: bytes = b""
    round_public: bytes = b""
    seed_commitment: bytes = b""

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_bytes("mask_public", self.mask_public, size=PUBLIC_KEY_BYTES)
        _check_bytes("share_public", self.share_public, size=PUBLIC_KEY_BYTES)
        _check_signature("signature", self.signature)
        _check_optional("round_public", self.round_public, PUBLIC_KEY_BYTES)
        _check_optional("seed_commitment", self.seed_commitment, COMMITMENT_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedRequest(Message):
    """Server -> client, GRAPH_SEED: the committed contributions (sorted by id) to reveal against."""

    TYPE: ClassVar[MessageType] = MessageType.SEED_REQUEST
    STAGE: ClassVar[Stage] = Stage.GRAPH_SEED
    FROM_SERVER: ClassVar[bool] = True

    entries: tuple[SeedEntry, ...]

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_records("entries", self.entries, SeedEntry)


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedReveal(Message):
    """Client -> server, GRAPH_SEED: the 32 random bytes behind the client's commitment."""

    TYPE: ClassVar[MessageType] = MessageType.SEED_REVEAL
    STAGE: ClassVar[Stage] = Stage.GRAPH_SEED
    FROM_SERVER: ClassVar[bool] = False

    reveal: bytes

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_bytes("reveal", self.reveal, size=SEED_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyBroadcast(Message):
    """Server -> client, SHARE_KEYS: the keys of the neighbours that advertised.

    ``reveals`` (with a graph seed) are every committed client's revealed contribution, in
    the order of the :class:`SeedRequest` entries.
    """

    TYPE: ClassVar[MessageType] = MessageType.KEY_BROADCAST
    STAGE: ClassVar[Stage] = Stage.SHARE_KEYS
    FROM_SERVER: ClassVar[bool] = True

    peers: tuple[PeerKeys, ...]
    reveals: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_records("peers", self.peers, PeerKeys)
        if not isinstance(self.reveals, tuple) or len(self.reveals) > MAX_LIST:
            raise MessageError("reveals must be a tuple of 32-byte values")
        for r in self.reveals:
            _check_bytes("reveal", r, size=SEED_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareKeys(Message):
    """Client -> server, SHARE_KEYS: encrypted shares for each peer, and ``SHA-256(b_u)``.

    The commitment lets the server check the self-mask seed it reconstructs (a wrong
    share would otherwise silently corrupt the sum); ``b_u`` is 256 uniform bits, so its
    hash reveals nothing usable.
    """

    TYPE: ClassVar[MessageType] = MessageType.SHARE_KEYS
    STAGE: ClassVar[Stage] = Stage.SHARE_KEYS
    FROM_SERVER: ClassVar[bool] = False

    shares: tuple[EncryptedShare, ...]
    commitment: bytes

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_records("shares", self.shares, EncryptedShare)
        _check_bytes("commitment", self.commitment, size=COMMITMENT_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareForward(Message):
    """Server -> client, MASKED_INPUT: ciphertexts addressed to the recipient (``peer`` = author)."""

    TYPE: ClassVar[MessageType] = MessageType.SHARE_FORWARD
    STAGE: ClassVar[Stage] = Stage.MASKED_INPUT
    FROM_SERVER: ClassVar[bool] = True

    shares: tuple[EncryptedShare, ...]

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_records("shares", self.shares, EncryptedShare)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MaskedInput(Message):
    """Client -> server, MASKED_INPUT: ``y_u`` in Z_(2^bits), one machine word per element.

    ``words`` is a read-only 1-D array of :func:`word_dtype` (``uint32`` for ``bits <= 32``,
    else ``uint64``) with every entry below ``2^bits``. ``attestation`` (lying server) signs
    the masking set; ``rejected`` names peers whose encrypted shares did not decrypt (the
    server restarts the round without them and their accuser).
    """

    TYPE: ClassVar[MessageType] = MessageType.MASKED_INPUT
    STAGE: ClassVar[Stage] = Stage.MASKED_INPUT
    FROM_SERVER: ClassVar[bool] = False

    bits: int
    words: npt.NDArray[Any] = field(repr=False)
    attestation: bytes = b""
    rejected: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_signature("attestation", self.attestation)
        _check_ids("rejected", self.rejected)
        _check_int("bits", self.bits, 1, 64)
        w = self.words
        if not isinstance(w, np.ndarray) or w.ndim != 1 or w.dtype != word_dtype(self.bits):
            raise MessageError(
                f"words must be a 1-D {np.dtype(word_dtype(self.bits)).name} array for bits = {self.bits}"
            )
        if w.shape[0] > MAX_WORDS:
            raise MessageError("masked vector too long")
        if self.bits not in (32, 64) and w.size and int(w.max()) >> self.bits:
            raise MessageError(f"masked vector entries must be below 2^{self.bits}")
        if w.flags.writeable:
            view = w.view()
            view.flags.writeable = False
            object.__setattr__(self, "words", view)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyRequest(Message):
    """Server -> client, CONSISTENCY_CHECK: the survivor set (sorted ids) to sign."""

    TYPE: ClassVar[MessageType] = MessageType.CONSISTENCY_REQUEST
    STAGE: ClassVar[Stage] = Stage.CONSISTENCY_CHECK
    FROM_SERVER: ClassVar[bool] = True

    survivors: tuple[int, ...]

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_ids("survivors", self.survivors)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencySignature(Message):
    """Client -> server, CONSISTENCY_CHECK: identity signature on the survivor set."""

    TYPE: ClassVar[MessageType] = MessageType.CONSISTENCY_SIGNATURE
    STAGE: ClassVar[Stage] = Stage.CONSISTENCY_CHECK
    FROM_SERVER: ClassVar[bool] = False

    signature: bytes

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_bytes("signature", self.signature, size=SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskRequest(Message):
    """Server -> client, UNMASKING: who survived (global, sorted) and which peers dropped.

    With a consistency check: ``signatures`` are survivors' signatures on ``survivors``
    (at least the consistency quorum), ``key_sharers`` the clients whose shares the server
    forwarded (``U2``, sorted) and ``attestations`` the masking-set signatures of the
    recipient's surviving peers.
    """

    TYPE: ClassVar[MessageType] = MessageType.UNMASK_REQUEST
    STAGE: ClassVar[Stage] = Stage.UNMASKING
    FROM_SERVER: ClassVar[bool] = True

    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: tuple[SurvivorSignature, ...] = ()
    key_sharers: tuple[int, ...] = ()
    attestations: tuple[Attestation, ...] = ()

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_ids("survivors", self.survivors)
        _check_ids("dropped", self.dropped)
        _check_records("signatures", self.signatures, SurvivorSignature)
        _check_ids("key_sharers", self.key_sharers)
        _check_records("attestations", self.attestations, Attestation)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskResponse(Message):
    """Client -> server, UNMASKING: self-mask shares of survivors, masking-key shares of dropouts."""

    TYPE: ClassVar[MessageType] = MessageType.UNMASK_RESPONSE
    STAGE: ClassVar[Stage] = Stage.UNMASKING
    FROM_SERVER: ClassVar[bool] = False

    self_mask_shares: tuple[RevealedShare, ...]
    mask_key_shares: tuple[RevealedShare, ...]

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        _check_records("self_mask_shares", self.self_mask_shares, RevealedShare)
        _check_records("mask_key_shares", self.mask_key_shares, RevealedShare)


# ----------------------------------------------------------------------------- encoding


class _Writer:
    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = []

    def u8(self, v: int) -> None:
        self.parts.append(struct.pack(">B", v))

    def u32(self, v: int) -> None:
        self.parts.append(struct.pack(">I", v))

    def blob(self, b: bytes) -> None:
        self.u32(len(b))
        self.parts.append(b)

    def fixed(self, b: bytes) -> None:
        self.parts.append(b)

    def ids(self, values: Sequence[int]) -> None:
        self.u32(len(values))
        self.parts.append(np.asarray(values, dtype=">u8").tobytes())


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise MessageError("message truncated")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def count(self, width: int, limit: int) -> int:
        n = self.u32()
        if n > limit:
            raise MessageError(f"list of {n} entries exceeds {limit}")
        if n * width > len(self.buf) - self.pos:
            raise MessageError("message truncated")
        return n

    def blob(self) -> bytes:
        n = self.u32()
        if n > MAX_BLOB:
            raise MessageError(f"field of {n} bytes exceeds {MAX_BLOB}")
        return bytes(self.take(n))

    def fixed(self, n: int) -> bytes:
        return bytes(self.take(n))

    def ids(self) -> tuple[int, ...]:
        n = self.count(8, MAX_LIST)
        raw = np.frombuffer(self.take(8 * n), dtype=">u8")
        return tuple(raw.tolist())

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise MessageError(f"{len(self.buf) - self.pos} trailing bytes")


def _enc_round_start(m: Any, w: _Writer) -> None:
    w.ids(m.neighbours)
    w.ids(m.cohort)


def _dec_round_start(r: _Reader) -> dict[str, Any]:
    return {"neighbours": r.ids(), "cohort": r.ids()}


def _enc_advertise(m: Any, w: _Writer) -> None:
    w.fixed(m.mask_public)
    w.fixed(m.share_public)
    w.blob(m.signature)
    w.blob(m.round_public)
    w.blob(m.seed_commitment)


def _dec_advertise(r: _Reader) -> dict[str, Any]:
    return {
        "mask_public": r.fixed(PUBLIC_KEY_BYTES),
        "share_public": r.fixed(PUBLIC_KEY_BYTES),
        "signature": r.blob(),
        "round_public": r.blob(),
        "seed_commitment": r.blob(),
    }


def _enc_seed_request(m: Any, w: _Writer) -> None:
    w.u32(len(m.entries))
    for e in m.entries:
        w.fixed(struct.pack(">Q", e.client_id))
        w.fixed(e.commitment)


def _dec_seed_request(r: _Reader) -> dict[str, Any]:
    n = r.count(8 + COMMITMENT_BYTES, MAX_LIST)
    out = []
    for _ in range(n):
        (cid,) = struct.unpack(">Q", r.take(8))
        out.append(SeedEntry(int(cid), r.fixed(COMMITMENT_BYTES)))
    return {"entries": tuple(out)}


def _enc_seed_reveal(m: Any, w: _Writer) -> None:
    w.fixed(m.reveal)


def _dec_seed_reveal(r: _Reader) -> dict[str, Any]:
    return {"reveal": r.fixed(SEED_BYTES)}


def _enc_broadcast(m: Any, w: _Writer) -> None:
    w.u32(len(m.peers))
    for p in m.peers:
        w.fixed(struct.pack(">Q", p.client_id))
        w.fixed(p.mask_public)
        w.fixed(p.share_public)
        w.blob(p.signature)
        w.blob(p.round_public)
        w.blob(p.seed_commitment)
    w.u32(len(m.reveals))
    for reveal in m.reveals:
        w.fixed(reveal)


def _dec_broadcast(r: _Reader) -> dict[str, Any]:
    n = r.count(8 + 2 * PUBLIC_KEY_BYTES + 12, MAX_LIST)
    peers = []
    for _ in range(n):
        (cid,) = struct.unpack(">Q", r.take(8))
        peers.append(
            PeerKeys(
                int(cid), r.fixed(PUBLIC_KEY_BYTES), r.fixed(PUBLIC_KEY_BYTES), r.blob(), r.blob(), r.blob()
            )
        )
    count = r.count(SEED_BYTES, MAX_LIST)
    reveals = tuple(r.fixed(SEED_BYTES) for _ in range(count))
    return {"peers": tuple(peers), "reveals": reveals}


def _enc_shares(shares: Sequence[EncryptedShare], w: _Writer) -> None:
    w.u32(len(shares))
    for s in shares:
        w.fixed(struct.pack(">Q", s.peer))
        w.blob(s.ciphertext)


def _dec_shares(r: _Reader) -> tuple[EncryptedShare, ...]:
    n = r.count(12, MAX_LIST)
    out = []
    for _ in range(n):
        (peer,) = struct.unpack(">Q", r.take(8))
        out.append(EncryptedShare(int(peer), r.blob()))
    return tuple(out)


def _enc_share_keys(m: Any, w: _Writer) -> None:
    _enc_shares(m.shares, w)
    w.fixed(m.commitment)


def _dec_share_keys(r: _Reader) -> dict[str, Any]:
    return {"shares": _dec_shares(r), "commitment": r.fixed(COMMITMENT_BYTES)}


def _enc_forward(m: Any, w: _Writer) -> None:
    _enc_shares(m.shares, w)


def _dec_forward(r: _Reader) -> dict[str, Any]:
    return {"shares": _dec_shares(r)}


def _enc_masked(m: Any, w: _Writer) -> None:
    w.blob(m.attestation)
    w.ids(m.rejected)
    w.u8(m.bits)
    words = m.words
    w.u32(words.shape[0])
    little = words.astype(words.dtype.newbyteorder("<"), copy=False)
    w.fixed(memoryview(np.ascontiguousarray(little)).cast("B"))  # type: ignore[arg-type]


def _dec_masked(r: _Reader) -> dict[str, Any]:
    attestation = r.blob()
    rejected = r.ids()
    bits = r.u8()
    if not 1 <= bits <= 64:
        raise MessageError(f"bits must lie in [1, 64], got {bits}")
    dtype = np.dtype(word_dtype(bits)).newbyteorder("<")
    n = r.count(dtype.itemsize, MAX_WORDS)
    raw = np.frombuffer(r.take(n * dtype.itemsize), dtype=dtype)
    words = raw if raw.dtype.isnative else raw.astype(raw.dtype.newbyteorder("="))
    return {"bits": bits, "words": words, "attestation": attestation, "rejected": rejected}


def _enc_ids_msg(name: str) -> Callable[[Any, _Writer], None]:
    def enc(m: Any, w: _Writer) -> None:
        w.ids(getattr(m, name))

    return enc


def _dec_consistency_request(r: _Reader) -> dict[str, Any]:
    return {"survivors": r.ids()}


def _enc_signature(m: Any, w: _Writer) -> None:
    w.fixed(m.signature)


def _dec_signature(r: _Reader) -> dict[str, Any]:
    return {"signature": r.fixed(SIGNATURE_BYTES)}


def _enc_unmask_request(m: Any, w: _Writer) -> None:
    w.ids(m.survivors)
    w.ids(m.dropped)
    w.u32(len(m.signatures))
    for s in m.signatures:
        w.fixed(struct.pack(">Q", s.signer))
        w.fixed(s.signature)
        w.blob(s.signer_key)
    w.ids(m.key_sharers)
    w.u32(len(m.attestations))
    for a in m.attestations:
        w.fixed(struct.pack(">Q", a.peer))
        w.fixed(a.signature)


def _dec_unmask_request(r: _Reader) -> dict[str, Any]:
    survivors = r.ids()
    dropped = r.ids()
    n = r.count(8 + SIGNATURE_BYTES + 4, MAX_LIST)
    sigs = []
    for _ in range(n):
        (signer,) = struct.unpack(">Q", r.take(8))
        sigs.append(SurvivorSignature(int(signer), r.fixed(SIGNATURE_BYTES), r.blob()))
    key_sharers = r.ids()
    count = r.count(8 + SIGNATURE_BYTES, MAX_LIST)
    attestations = []
    for _ in range(count):
        (peer,) = struct.unpack(">Q", r.take(8))
        attestations.append(Attestation(int(peer), r.fixed(SIGNATURE_BYTES)))
    return {
        "survivors": survivors,
        "dropped": dropped,
        "signatures": tuple(sigs),
        "key_sharers": key_sharers,
        "attestations": tuple(attestations),
    }


def _enc_revealed(shares: Sequence[RevealedShare], w: _Writer) -> None:
    w.u32(len(shares))
    for s in shares:
        w.fixed(struct.pack(">Q", s.owner))
        w.blob(s.share)


def _dec_revealed(r: _Reader) -> tuple[RevealedShare, ...]:
    n = r.count(12, MAX_LIST)
    out = []
    for _ in range(n):
        (owner,) = struct.unpack(">Q", r.take(8))
        out.append(RevealedShare(int(owner), r.blob()))
    return tuple(out)


def _enc_unmask_response(m: Any, w: _Writer) -> None:
    _enc_revealed(m.self_mask_shares, w)
    _enc_revealed(m.mask_key_shares, w)


def _dec_unmask_response(r: _Reader) -> dict[str, Any]:
    return {"self_mask_shares": _dec_revealed(r), "mask_key_shares": _dec_revealed(r)}


_CODECS: dict[MessageType, tuple[type[Message], Callable[[Any, _Writer], None], Callable[[_Reader], dict[str, Any]]]] = {
    MessageType.ROUND_START: (RoundStart, _enc_round_start, _dec_round_start),
    MessageType.ADVERTISE_KEYS: (AdvertiseKeys, _enc_advertise, _dec_advertise),
    MessageType.KEY_BROADCAST: (KeyBroadcast, _enc_broadcast, _dec_broadcast),
    MessageType.SHARE_KEYS: (ShareKeys, _enc_share_keys, _dec_share_keys),
    MessageType.SHARE_FORWARD: (ShareForward, _enc_forward, _dec_forward),
    MessageType.MASKED_INPUT: (MaskedInput, _enc_masked, _dec_masked),
    MessageType.CONSISTENCY_REQUEST: (ConsistencyRequest, _enc_ids_msg("survivors"), _dec_consistency_request),
    MessageType.CONSISTENCY_SIGNATURE: (ConsistencySignature, _enc_signature, _dec_signature),
    MessageType.UNMASK_REQUEST: (UnmaskRequest, _enc_unmask_request, _dec_unmask_request),
    MessageType.UNMASK_RESPONSE: (UnmaskResponse, _enc_unmask_response, _dec_unmask_response),
    MessageType.SEED_REQUEST: (SeedRequest, _enc_seed_request, _dec_seed_request),
    MessageType.SEED_REVEAL: (SeedReveal, _enc_seed_reveal, _dec_seed_reveal),
}


def encode_message(message: Message) -> bytes:
    """Encode ``message`` (see the module docstring for the layout)."""
    if not isinstance(message, Message) or type(message) is Message:
        raise MessageError(f"not a protocol message: {type(message).__name__}")
    cls, enc, _ = _CODECS[message.TYPE]
    if type(message) is not cls:
        raise MessageError(f"not a protocol message: {type(message).__name__}")
    w = _Writer()
    w.fixed(_HEADER.pack(MAGIC, WIRE_VERSION, int(message.TYPE), message.round_id, message.sender, message.recipient))
    enc(message, w)
    return b"".join(w.parts)


def decode_message(data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Strictly decode one message.

    Raises:
        MessageError: oversized input, bad magic or version, unknown type, truncation,
            trailing bytes, or any field out of range.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MessageError(f"expected bytes, got {type(data).__name__}")
    buf = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    if len(buf) > max_bytes:
        raise MessageError(f"message of {len(buf)} bytes exceeds the limit of {max_bytes}")
    if len(buf) < _HEADER.size:
        raise MessageError("message truncated")
    magic, version, code, round_id, sender, recipient = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise MessageError("not a secagg-fl message (bad magic)")
    if version != WIRE_VERSION:
        raise MessageError(f"unsupported wire version {version} (this build speaks {WIRE_VERSION})")
    try:
        mtype = MessageType(code)
    except ValueError:
        raise MessageError(f"unknown message type {code}") from None
    cls, _, dec = _CODECS[mtype]
    reader = _Reader(buf, _HEADER.size)
    try:
        fields = dec(reader)
    except (struct.error, ValueError) as exc:
        if isinstance(exc, MessageError):
            raise
        raise MessageError(f"malformed {cls.__name__}: {exc}") from None
    reader.done()
    try:
        return cls(round_id=round_id, sender=sender, recipient=recipient, **fields)
    except TypeError as exc:  # pragma: no cover - codec and classes are kept in sync
        raise MessageError(str(exc)) from None


# --------------------------------------------------------------------------- framing

FRAME_HEADER = struct.Struct(">4sBBQ")
"""Header of the Paillier and key-generation codecs: magic, version, type, a 64-bit field."""


def frame(magic: bytes, version: int, kind: Enum, field: int, body: bytes) -> bytes:
    """``FRAME_HEADER`` (``magic``, ``version``, ``kind.value``, ``field``) followed by ``body``."""
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
