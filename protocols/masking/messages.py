"""Typed, versioned wire messages of SecAgg / SecAgg+, one frozen dataclass per message.

Each stage of a round (:class:`~protocols.stages.Stage`) has a request from the server
and a reply from each client: ``RoundStart`` / ``AdvertiseKeys`` (advertise keys),
``SeedRequest`` / ``SeedReveal`` (graph seed), ``KeyBroadcast`` / ``ShareKeys`` (share
keys), ``ShareForward`` / ``MaskedInput`` (masked input), ``ConsistencyRequest`` /
``ConsistencySignature`` (consistency check), ``UnmaskRequest`` / ``UnmaskResponse``
(unmasking). Construction checks the *structure* (types, ranges, sizes of keys,
signatures and shares; the nested records are those of :mod:`protocols.masking.records`);
whether a message makes sense *to its receiver* (right round, right stage, right peers) is
checked by the state machines.

The server has id :data:`SERVER_ID` (0); clients have ids in ``[1, 2^63 - 1]``.
:func:`encode_message` and :func:`decode_message` give the binary form; the layout and its
strict checks are :mod:`protocols.masking.codec`'s (a malformed message raises
:class:`~secagg.errors.MessageError`). Masked vectors are decoded without a copy (a
read-only view of the received buffer).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from protocols.framing import FRAME_HEADER, frame, unframe
from protocols.masking.codec import (
    MAX_MESSAGE_BYTES,
    WIRE_VERSION,
    Envelope,
    MessageType,
    Reader,
    Writer,
    open_frame,
)
from protocols.masking.records import (
    COMMITMENT_BYTES,
    MAX_CLIENT_ID,
    MAX_LIST,
    MAX_ROUND_ID,
    MAX_WORDS,
    PUBLIC_KEY_BYTES,
    SEED_BYTES,
    SERVER_ID,
    SIGNATURE_BYTES,
    Attestation,
    EncryptedShare,
    PeerKeys,
    RevealedShare,
    SeedEntry,
    SurvivorSignature,
    blob_field,
    ids_field,
    optional_field,
    records_field,
    set_id_field,
    word_dtype,
)
from protocols.stages import Stage
from secagg.errors import MessageError
from secagg.validation import require_int

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

# names other modules read from here since before the codec and the records had modules
_COMPATIBLE = (MAX_CLIENT_ID, MAX_ROUND_ID, MAX_WORDS, MAX_LIST)


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
        rid = self.round_id
        if type(rid) is not int or not 0 <= rid <= MAX_ROUND_ID:
            rid = require_int("round_id", rid, lo=0, hi=MAX_ROUND_ID, error=MessageError)
            object.__setattr__(self, "round_id", rid)
        server, client = ("sender", "recipient") if self.FROM_SERVER else ("recipient", "sender")
        if type(getattr(self, server)) is not int or getattr(self, server) != SERVER_ID:
            require_int(
                server, getattr(self, server), lo=SERVER_ID, hi=SERVER_ID, error=MessageError
            )
            object.__setattr__(self, server, SERVER_ID)
        set_id_field(self, client)

    @property
    def client_id(self) -> int:
        """The client end of the message (recipient of a request, sender of a reply)."""
        return self.recipient if self.FROM_SERVER else self.sender

    def to_bytes(self) -> bytes:
        """The binary encoding (:mod:`protocols.masking.codec`)."""
        return encode_message(self)

    def _write(self, w: Writer) -> None:
        """Append the fields after the header, in declaration order."""
        raise NotImplementedError

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> Message:
        """The message whose header is ``e`` and whose fields ``r`` reads next."""
        raise NotImplementedError


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
        ids_field("neighbours", self.neighbours)
        ids_field("cohort", self.cohort)

    def _write(self, w: Writer) -> None:
        w.ids(self.neighbours)
        w.ids(self.cohort)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> RoundStart:
        return cls(
            round_id=e.round_id,
            sender=e.sender,
            recipient=e.recipient,
            neighbours=r.ids(),
            cohort=r.ids(),
        )


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
        blob_field("mask_public", self.mask_public, size=PUBLIC_KEY_BYTES)
        blob_field("share_public", self.share_public, size=PUBLIC_KEY_BYTES)
        optional_field("signature", self.signature, SIGNATURE_BYTES)
        optional_field("round_public", self.round_public, PUBLIC_KEY_BYTES)
        optional_field("seed_commitment", self.seed_commitment, COMMITMENT_BYTES)

    def _write(self, w: Writer) -> None:
        w.fixed(self.mask_public)
        w.fixed(self.share_public)
        w.blob(self.signature)
        w.blob(self.round_public)
        w.blob(self.seed_commitment)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> AdvertiseKeys:
        return cls(
            round_id=e.round_id,
            sender=e.sender,
            recipient=e.recipient,
            mask_public=r.fixed(PUBLIC_KEY_BYTES),
            share_public=r.fixed(PUBLIC_KEY_BYTES),
            signature=r.blob(),
            round_public=r.blob(),
            seed_commitment=r.blob(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedRequest(Message):
    """Server -> client, GRAPH_SEED: the committed contributions (by id) to reveal against."""

    TYPE: ClassVar[MessageType] = MessageType.SEED_REQUEST
    STAGE: ClassVar[Stage] = Stage.GRAPH_SEED
    FROM_SERVER: ClassVar[bool] = True

    entries: tuple[SeedEntry, ...]

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        records_field("entries", self.entries, SeedEntry)

    def _write(self, w: Writer) -> None:
        w.entries(self.entries)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> SeedRequest:
        return cls(round_id=e.round_id, sender=e.sender, recipient=e.recipient, entries=r.entries())


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedReveal(Message):
    """Client -> server, GRAPH_SEED: the 32 random bytes behind the client's commitment."""

    TYPE: ClassVar[MessageType] = MessageType.SEED_REVEAL
    STAGE: ClassVar[Stage] = Stage.GRAPH_SEED
    FROM_SERVER: ClassVar[bool] = False

    reveal: bytes

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        blob_field("reveal", self.reveal, size=SEED_BYTES)

    def _write(self, w: Writer) -> None:
        w.fixed(self.reveal)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> SeedReveal:
        return cls(
            round_id=e.round_id, sender=e.sender, recipient=e.recipient, reveal=r.fixed(SEED_BYTES)
        )


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
        records_field("peers", self.peers, PeerKeys)
        if not isinstance(self.reveals, tuple) or len(self.reveals) > MAX_LIST:
            raise MessageError("reveals must be a tuple of 32-byte values")
        reveals = self.reveals
        # every reveal exact bytes of the right size, in two passes in C; else one by one
        if not (set(map(type, reveals)) <= {bytes} and set(map(len, reveals)) <= {SEED_BYTES}):
            for r in reveals:
                blob_field("reveal", r, size=SEED_BYTES)

    def _write(self, w: Writer) -> None:
        w.peers(self.peers)
        w.reveals(self.reveals)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> KeyBroadcast:
        return cls(
            round_id=e.round_id,
            sender=e.sender,
            recipient=e.recipient,
            peers=r.peers(),
            reveals=r.reveals(),
        )


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
        records_field("shares", self.shares, EncryptedShare)
        blob_field("commitment", self.commitment, size=COMMITMENT_BYTES)

    def _write(self, w: Writer) -> None:
        w.shares(self.shares)
        w.fixed(self.commitment)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> ShareKeys:
        return cls(
            round_id=e.round_id,
            sender=e.sender,
            recipient=e.recipient,
            shares=r.shares(),
            commitment=r.fixed(COMMITMENT_BYTES),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareForward(Message):
    """Server -> client, MASKED_INPUT: ciphertexts for the recipient (``peer`` = author)."""

    TYPE: ClassVar[MessageType] = MessageType.SHARE_FORWARD
    STAGE: ClassVar[Stage] = Stage.MASKED_INPUT
    FROM_SERVER: ClassVar[bool] = True

    shares: tuple[EncryptedShare, ...]

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        records_field("shares", self.shares, EncryptedShare)

    def _write(self, w: Writer) -> None:
        w.shares(self.shares)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> ShareForward:
        return cls(round_id=e.round_id, sender=e.sender, recipient=e.recipient, shares=r.shares())


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
    words: npt.NDArray[np.uint32] | npt.NDArray[np.uint64] = field(repr=False)
    attestation: bytes = b""
    rejected: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        optional_field("attestation", self.attestation, SIGNATURE_BYTES)
        ids_field("rejected", self.rejected)
        object.__setattr__(
            self, "bits", require_int("bits", self.bits, lo=1, hi=64, error=MessageError)
        )
        w = self.words
        if not isinstance(w, np.ndarray) or w.ndim != 1 or w.dtype != word_dtype(self.bits):
            raise MessageError(
                f"words must be a 1-D {np.dtype(word_dtype(self.bits)).name} array "
                f"for bits = {self.bits}"
            )
        if w.shape[0] > MAX_WORDS:
            raise MessageError("masked vector too long")
        if self.bits not in (32, 64) and w.size and int(w.max()) >> self.bits:
            raise MessageError(f"masked vector entries must be below 2^{self.bits}")
        if w.flags.writeable:
            view = w.view()
            view.flags.writeable = False
            object.__setattr__(self, "words", view)

    def _write(self, w: Writer) -> None:
        w.blob(self.attestation)
        w.ids(self.rejected)
        w.words(self.bits, self.words)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> MaskedInput:
        attestation = r.blob()
        rejected = r.ids()
        bits, words = r.words()
        return cls(
            round_id=e.round_id,
            sender=e.sender,
            recipient=e.recipient,
            bits=bits,
            words=words,
            attestation=attestation,
            rejected=rejected,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyRequest(Message):
    """Server -> client, CONSISTENCY_CHECK: the survivor set (sorted ids) to sign."""

    TYPE: ClassVar[MessageType] = MessageType.CONSISTENCY_REQUEST
    STAGE: ClassVar[Stage] = Stage.CONSISTENCY_CHECK
    FROM_SERVER: ClassVar[bool] = True

    survivors: tuple[int, ...]

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        ids_field("survivors", self.survivors)

    def _write(self, w: Writer) -> None:
        w.ids(self.survivors)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> ConsistencyRequest:
        return cls(round_id=e.round_id, sender=e.sender, recipient=e.recipient, survivors=r.ids())


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencySignature(Message):
    """Client -> server, CONSISTENCY_CHECK: identity signature on the survivor set."""

    TYPE: ClassVar[MessageType] = MessageType.CONSISTENCY_SIGNATURE
    STAGE: ClassVar[Stage] = Stage.CONSISTENCY_CHECK
    FROM_SERVER: ClassVar[bool] = False

    signature: bytes

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        blob_field("signature", self.signature, size=SIGNATURE_BYTES)

    def _write(self, w: Writer) -> None:
        w.fixed(self.signature)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> ConsistencySignature:
        return cls(
            round_id=e.round_id,
            sender=e.sender,
            recipient=e.recipient,
            signature=r.fixed(SIGNATURE_BYTES),
        )


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
        ids_field("survivors", self.survivors)
        ids_field("dropped", self.dropped)
        records_field("signatures", self.signatures, SurvivorSignature)
        ids_field("key_sharers", self.key_sharers)
        records_field("attestations", self.attestations, Attestation)

    def _write(self, w: Writer) -> None:
        w.ids(self.survivors)
        w.ids(self.dropped)
        w.signatures(self.signatures)
        w.ids(self.key_sharers)
        w.attestations(self.attestations)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> UnmaskRequest:
        return cls(
            round_id=e.round_id,
            sender=e.sender,
            recipient=e.recipient,
            survivors=r.ids(),
            dropped=r.ids(),
            signatures=r.signatures(),
            key_sharers=r.ids(),
            attestations=r.attestations(),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskResponse(Message):
    """Client -> server, UNMASKING: self-mask shares of survivors, mask-key shares of dropouts."""

    TYPE: ClassVar[MessageType] = MessageType.UNMASK_RESPONSE
    STAGE: ClassVar[Stage] = Stage.UNMASKING
    FROM_SERVER: ClassVar[bool] = False

    self_mask_shares: tuple[RevealedShare, ...]
    mask_key_shares: tuple[RevealedShare, ...]

    def __post_init__(self) -> None:
        Message.__post_init__(self)
        records_field("self_mask_shares", self.self_mask_shares, RevealedShare)
        records_field("mask_key_shares", self.mask_key_shares, RevealedShare)

    def _write(self, w: Writer) -> None:
        w.revealed(self.self_mask_shares)
        w.revealed(self.mask_key_shares)

    @classmethod
    def _read(cls, e: Envelope, r: Reader) -> UnmaskResponse:
        return cls(
            round_id=e.round_id,
            sender=e.sender,
            recipient=e.recipient,
            self_mask_shares=r.revealed(),
            mask_key_shares=r.revealed(),
        )


_CLASSES: dict[MessageType, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        RoundStart,
        AdvertiseKeys,
        SeedRequest,
        SeedReveal,
        KeyBroadcast,
        ShareKeys,
        ShareForward,
        MaskedInput,
        ConsistencyRequest,
        ConsistencySignature,
        UnmaskRequest,
        UnmaskResponse,
    )
}


def encode_message(message: Message) -> bytes:
    """Encode ``message`` (the layout is :mod:`protocols.masking.codec`'s).

    Raises:
        MessageError: ``message`` is not one of the protocol's message classes.
    """
    if not isinstance(message, Message) or _CLASSES.get(message.TYPE) is not type(message):
        raise MessageError(f"not a protocol message: {type(message).__name__}")
    w = Writer(
        message.TYPE, round_id=message.round_id, sender=message.sender, recipient=message.recipient
    )
    message._write(w)
    return w.to_bytes()


def decode_message(
    data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> Message:
    """Strictly decode one message.

    Raises:
        MessageError: oversized input, bad magic or version, unknown type, truncation,
            trailing bytes, or any field out of range.
    """
    envelope, reader = open_frame(data, max_bytes=max_bytes)
    cls = _CLASSES[envelope.type]
    try:
        message = cls._read(envelope, reader)
    except MessageError:
        raise
    except (struct.error, ValueError) as exc:
        raise MessageError(f"malformed {cls.__name__}: {exc}") from None
    except TypeError as exc:  # pragma: no cover - the codec and the classes are kept in sync
        raise MessageError(str(exc)) from None
    reader.done()
    return message
