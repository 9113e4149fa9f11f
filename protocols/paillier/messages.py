"""Typed wire messages of a Paillier round and their strict binary encoding.

Every message is a frozen dataclass whose construction checks the *structure* (types,
ranges, sizes of nonces, contexts and signatures) and raises
:class:`~secagg.errors.MessageError` otherwise; whether a message makes sense *to its
receiver* (right round, right stage, right execution) is checked by the state machines
(:mod:`protocols.paillier.verification`).

Binary layout (:func:`encode_message`, :func:`decode_message`; integers big-endian)::

    frame   = "SAPM" | version u8 | type u8 | round_id u64 | body
    nonce   = party u64 | nonce 32 | sig_len u8 | signature          (sig_len 0 or 64)
    upload  = client u64 | context 32 | sig_len u8 | signature
              | proof flag u8 [| challenge | response | response unit] | ciphertexts

Decoding is strict and sized by the round's configuration: a wrong magic or version, an
unknown type, a truncated or oversized body or a field out of range raises
:class:`~secagg.errors.MessageError`. The key-generation codec
(:mod:`protocols.paillier.keygen_messages`) uses the same frame with its own magic.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from protocols.framing import frame, unframe
from protocols.paillier.config import MAX_U64, PaillierRoundConfig
from secagg.errors import MessageError, ReplayError
from secagg.primitives.paillier import (
    PLAINTEXT_CHALLENGE_BITS,
    EncryptedVector,
    PlaintextProof,
    validate_ciphertext,
)
from secagg.primitives.signing import SIGNATURE_BYTES
from secagg.primitives.threshold_paillier import (
    CHALLENGE_BITS,
    DecryptionProof,
    PartialDecryption,
    proof_response_bits,
)
from secagg.validation import is_int, require_bytes, require_int

__all__ = [
    "MAGIC",
    "WIRE_VERSION",
    "NONCE_BYTES",
    "CONTEXT_BYTES",
    "MessageType",
    "NonceRequest",
    "DecryptorNonce",
    "UploadRequest",
    "Upload",
    "DecryptionRequest",
    "PartialDecryptionMessage",
    "PaillierMessage",
    "MESSAGE_CLASSES",
    "check_message",
    "encode_message",
    "decode_message",
]

MAGIC = b"SAPM"
"""First bytes of every Paillier round message."""
WIRE_VERSION = 2
"""Version of the encoding; a change of the bytes is a change of this number."""
NONCE_BYTES = 32
"""Length of a decryptor's fresh nonce."""
CONTEXT_BYTES = 32
"""Length of an execution context (a SHA-256 digest)."""

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


class MessageType(Enum):
    """Wire message kinds of a Paillier round."""

    UPLOAD = 1
    DECRYPTION_REQUEST = 2
    PARTIAL_DECRYPTION = 3
    UPLOAD_REQUEST = 4
    NONCE_REQUEST = 5
    DECRYPTOR_NONCE = 6


def _u64(message: object, name: str) -> None:
    """Check the field ``name`` is an id in ``[0, 2^64)``; store it as a Python ``int``."""
    value = require_int(name, getattr(message, name), lo=0, hi=MAX_U64, error=MessageError)
    object.__setattr__(message, name, value)


def _signature(value: object) -> None:
    require_bytes("signature", value, sizes=(0, SIGNATURE_BYTES), error=MessageError)


@dataclass(frozen=True)
class NonceRequest:
    """Server -> decryptor: a new execution of the round starts; commit a fresh nonce."""

    round_id: int
    recipient: int

    def __post_init__(self) -> None:
        _u64(self, "round_id")
        _u64(self, "recipient")


@dataclass(frozen=True)
class DecryptorNonce:
    """Decryptor -> server (relayed to every party): a fresh nonce, signed by the decryptor."""

    round_id: int
    party_id: int
    nonce: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _u64(self, "round_id")
        _u64(self, "party_id")
        require_bytes("nonce", self.nonce, size=NONCE_BYTES, error=MessageError)
        _signature(self.signature)


@dataclass(frozen=True)
class UploadRequest:
    """Server -> client (and decryptor): the execution's nonces; upload over their context."""

    round_id: int
    recipient: int
    nonces: tuple[DecryptorNonce, ...]

    def __post_init__(self) -> None:
        _u64(self, "round_id")
        _u64(self, "recipient")
        if not isinstance(self.nonces, tuple) or not all(
            isinstance(m, DecryptorNonce) for m in self.nonces
        ):
            raise MessageError("nonces must be a tuple of DecryptorNonce")
        parties = [m.party_id for m in self.nonces]
        if parties != sorted(set(parties)):
            raise MessageError("nonces must be sorted by party id, one per party")
        if any(m.round_id != self.round_id for m in self.nonces):
            raise ReplayError("a nonce of another round")


@dataclass(frozen=True)
class Upload:
    """A client's signed, encrypted contribution (client -> server, forwarded to decryptors)."""

    round_id: int
    client_id: int
    vector: EncryptedVector
    context: bytes
    signature: bytes = b""
    proof: PlaintextProof | None = None

    def __post_init__(self) -> None:
        _u64(self, "round_id")
        _u64(self, "client_id")
        if not isinstance(self.vector, EncryptedVector):
            raise MessageError("vector must be an EncryptedVector")
        require_bytes("context", self.context, size=CONTEXT_BYTES, error=MessageError)
        _signature(self.signature)
        if self.proof is not None and not isinstance(self.proof, PlaintextProof):
            raise MessageError("proof must be a PlaintextProof or None")


@dataclass(frozen=True)
class DecryptionRequest:
    """Server -> decryptor: decrypt the product of these clients' contributions."""

    round_id: int
    recipient: int
    contributors: tuple[int, ...]

    def __post_init__(self) -> None:
        _u64(self, "round_id")
        _u64(self, "recipient")
        if not isinstance(self.contributors, tuple) or not all(
            is_int(c) and 0 <= c <= MAX_U64 for c in self.contributors
        ):
            raise MessageError("contributors must be a tuple of client ids in [0, 2^64)")


@dataclass(frozen=True)
class PartialDecryptionMessage:
    """Decryptor -> server: a partial decryption of the decryptor's own aggregate."""

    round_id: int
    partial: PartialDecryption

    def __post_init__(self) -> None:
        _u64(self, "round_id")
        if not isinstance(self.partial, PartialDecryption):
            raise MessageError("partial must be a PartialDecryption")


PaillierMessage = (
    NonceRequest
    | DecryptorNonce
    | UploadRequest
    | Upload
    | DecryptionRequest
    | PartialDecryptionMessage
)
MESSAGE_CLASSES = (
    NonceRequest,
    DecryptorNonce,
    UploadRequest,
    Upload,
    DecryptionRequest,
    PartialDecryptionMessage,
)
"""Every message class of the protocol (what :data:`PaillierMessage` is the union of)."""


def check_message(message: object) -> None:
    """Refuse an object that is not a message of this protocol (malformed input).

    Raises:
        MessageError: ``message`` is not one of :data:`MESSAGE_CLASSES`.
    """
    if not isinstance(message, MESSAGE_CLASSES):
        raise MessageError(f"not a Paillier message: {type(message).__name__}")


def _unit_width(config: PaillierRoundConfig) -> int:
    return (config.public_key.n.bit_length() + 7) // 8


def _response_width(config: PaillierRoundConfig) -> int:
    return (proof_response_bits(config.public_key) + 7) // 8


def encode_message(message: PaillierMessage, config: PaillierRoundConfig) -> bytes:
    """Compact binary encoding of a message of this round's protocol.

    Raises:
        MessageError: not a message of this protocol, or a field out of its wire range.
    """
    try:
        return _encode(message, config)
    except (OverflowError, struct.error, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, MessageError):
            raise
        raise MessageError(f"message does not fit the wire format: {exc}") from None


def _encode_nonce(m: DecryptorNonce) -> bytes:
    return _U64.pack(m.party_id) + m.nonce + bytes([len(m.signature)]) + m.signature


def _encode_upload(message: Upload, config: PaillierRoundConfig) -> bytes:
    proof = message.proof
    if proof is None:
        proof_bytes = b"\x00"
    else:
        width = _unit_width(config)
        proof_bytes = (
            b"\x01"
            + proof.challenge.to_bytes(PLAINTEXT_CHALLENGE_BITS // 8, "big")
            + proof.response.to_bytes(width, "big")
            + proof.response_unit.to_bytes(width, "big")
        )
    return (
        _U64.pack(message.client_id)
        + message.context
        + bytes([len(message.signature)])
        + message.signature
        + proof_bytes
        + message.vector.to_bytes(config.public_key.paillier)
    )


def _encode_partial(message: PartialDecryptionMessage, config: PaillierRoundConfig) -> bytes:
    p = message.partial
    width = config.ciphertext_width
    body = (
        _U32.pack(p.index)
        + _U32.pack(len(p.values))
        + b"".join(v.to_bytes(width, "big") for v in p.values)
    )
    if p.proof is None:
        return body + b"\x00"
    return (
        body
        + b"\x01"
        + p.proof.challenge.to_bytes(CHALLENGE_BITS // 8, "big")
        + p.proof.response.to_bytes(_response_width(config), "big")
    )


def _encode(message: PaillierMessage, config: PaillierRoundConfig) -> bytes:
    if isinstance(message, Upload):
        body = _encode_upload(message, config)
        kind = MessageType.UPLOAD
    elif isinstance(message, UploadRequest):
        body = (
            _U64.pack(message.recipient)
            + _U32.pack(len(message.nonces))
            + b"".join(_encode_nonce(m) for m in message.nonces)
        )
        kind = MessageType.UPLOAD_REQUEST
    elif isinstance(message, NonceRequest):
        body = _U64.pack(message.recipient)
        kind = MessageType.NONCE_REQUEST
    elif isinstance(message, DecryptorNonce):
        body = _encode_nonce(message)
        kind = MessageType.DECRYPTOR_NONCE
    elif isinstance(message, DecryptionRequest):
        body = (
            _U64.pack(message.recipient)
            + _U32.pack(len(message.contributors))
            + b"".join(_U64.pack(c) for c in message.contributors)
        )
        kind = MessageType.DECRYPTION_REQUEST
    elif isinstance(message, PartialDecryptionMessage):
        body = _encode_partial(message, config)
        kind = MessageType.PARTIAL_DECRYPTION
    else:
        raise MessageError(f"not a Paillier message: {type(message).__name__}")
    return frame(MAGIC, WIRE_VERSION, kind, message.round_id, body)


def _decode_nonce(body: bytes, offset: int, round_id: int) -> tuple[DecryptorNonce, int]:
    head = _U64.size + NONCE_BYTES
    if len(body) < offset + head + 1:
        raise MessageError("nonce is truncated")
    (party_id,) = _U64.unpack_from(body, offset)
    nonce = body[offset + _U64.size : offset + head]
    sig_len = body[offset + head]
    end = offset + head + 1 + sig_len
    if sig_len not in (0, SIGNATURE_BYTES) or len(body) < end:
        raise MessageError("nonce has a malformed signature field")
    sig = body[offset + head + 1 : end]
    return DecryptorNonce(round_id=round_id, party_id=party_id, nonce=nonce, signature=sig), end


def _decode_upload(body: bytes, round_id: int, config: PaillierRoundConfig) -> Upload:
    head = _U64.size + CONTEXT_BYTES
    if len(body) < head + 1:
        raise MessageError("upload is truncated")
    (client_id,) = _U64.unpack_from(body)
    context = body[_U64.size : head]
    sig_len = body[head]
    if sig_len not in (0, SIGNATURE_BYTES) or len(body) < head + 1 + sig_len:
        raise MessageError("upload has a malformed signature field")
    offset = head + 1 + sig_len
    sig = body[head + 1 : offset]
    if len(body) < offset + 1 or body[offset] not in (0, 1):
        raise MessageError("upload has a malformed proof field")
    proof = None
    if body[offset] == 1:
        width = _unit_width(config)
        clen = PLAINTEXT_CHALLENGE_BITS // 8
        if len(body) < offset + 1 + clen + 2 * width:
            raise MessageError("upload is truncated")
        start = offset + 1
        proof = PlaintextProof(
            challenge=int.from_bytes(body[start : start + clen], "big"),
            response=int.from_bytes(body[start + clen : start + clen + width], "big"),
            response_unit=int.from_bytes(
                body[start + clen + width : start + clen + 2 * width], "big"
            ),
        )
        offset = start + clen + 2 * width
    else:
        offset += 1
    vector = EncryptedVector.from_bytes(body[offset:], config.public_key.paillier, config.packing)
    if vector.length != config.encoded_length:
        raise MessageError("upload has the wrong vector length")
    return Upload(
        round_id=round_id,
        client_id=client_id,
        vector=vector,
        context=context,
        signature=sig,
        proof=proof,
    )


def _decode_upload_request(
    body: bytes, round_id: int, config: PaillierRoundConfig
) -> UploadRequest:
    head = _U64.size + _U32.size
    if len(body) < head:
        raise MessageError("upload request is truncated")
    (recipient,) = _U64.unpack_from(body)
    (count,) = _U32.unpack_from(body, _U64.size)
    if count > config.public_key.n_decryptors:
        raise MessageError("upload request lists more nonces than decryptors")
    nonces = []
    offset = head
    for _ in range(count):
        nonce, offset = _decode_nonce(body, offset, round_id)
        nonces.append(nonce)
    if offset != len(body):
        raise MessageError("upload request has the wrong size")
    return UploadRequest(round_id=round_id, recipient=recipient, nonces=tuple(nonces))


def _decode_decryption_request(
    body: bytes, round_id: int, config: PaillierRoundConfig
) -> DecryptionRequest:
    head = _U64.size + _U32.size
    if len(body) < head:
        raise MessageError("decryption request is truncated")
    (recipient,) = _U64.unpack_from(body)
    (count,) = _U32.unpack_from(body, _U64.size)
    if count > config.packing.max_clients or len(body) != head + count * _U64.size:
        raise MessageError("decryption request has the wrong size")
    ids = tuple(_U64.unpack_from(body, head + i * _U64.size)[0] for i in range(count))
    return DecryptionRequest(round_id=round_id, recipient=recipient, contributors=ids)


def _decode_partial(
    body: bytes, round_id: int, config: PaillierRoundConfig
) -> PartialDecryptionMessage:
    width = config.ciphertext_width
    expected = config.packing.num_ciphertexts(config.encoded_length)
    if len(body) < 2 * _U32.size:
        raise MessageError("partial decryption is truncated")
    index, count = _U32.unpack_from(body)[0], _U32.unpack_from(body, _U32.size)[0]
    offset = 2 * _U32.size
    if count != expected or len(body) < offset + count * width + 1:
        raise MessageError("partial decryption has the wrong size")
    n, n2 = config.public_key.n, config.public_key.n_squared
    values = tuple(
        validate_ciphertext(
            int.from_bytes(body[offset + i * width : offset + (i + 1) * width], "big"), n, n2
        )
        for i in range(count)
    )
    offset += count * width
    flag = body[offset]
    offset += 1
    decryption_proof = None
    if flag == 1:
        rw = _response_width(config)
        if len(body) != offset + CHALLENGE_BITS // 8 + rw:
            raise MessageError("partial decryption has the wrong size")
        e = int.from_bytes(body[offset : offset + CHALLENGE_BITS // 8], "big")
        z = int.from_bytes(body[offset + CHALLENGE_BITS // 8 :], "big")
        decryption_proof = DecryptionProof(challenge=e, response=z)
    elif flag != 0 or len(body) != offset:
        raise MessageError("partial decryption has a malformed proof field")
    return PartialDecryptionMessage(
        round_id=round_id,
        partial=PartialDecryption(index=index, values=values, proof=decryption_proof),
    )


def decode_message(data: bytes, config: PaillierRoundConfig) -> PaillierMessage:
    """Strictly decode a wire message; sizes are checked against the round's configuration.

    Raises:
        MessageError: unknown magic, version or type, wrong sizes, malformed fields.
    """
    kind, round_id, body = unframe(
        data,
        magic=MAGIC,
        version=WIRE_VERSION,
        kinds=MessageType,
        what="a Paillier round message",
    )
    if kind is MessageType.UPLOAD:
        return _decode_upload(body, round_id, config)
    if kind is MessageType.UPLOAD_REQUEST:
        return _decode_upload_request(body, round_id, config)
    if kind is MessageType.NONCE_REQUEST:
        if len(body) != _U64.size:
            raise MessageError("nonce request has the wrong size")
        return NonceRequest(round_id=round_id, recipient=_U64.unpack(body)[0])
    if kind is MessageType.DECRYPTOR_NONCE:
        nonce, offset = _decode_nonce(body, 0, round_id)
        if offset != len(body):
            raise MessageError("nonce has the wrong size")
        return nonce
    if kind is MessageType.DECRYPTION_REQUEST:
        return _decode_decryption_request(body, round_id, config)
    return _decode_partial(body, round_id, config)
