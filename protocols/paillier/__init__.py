"""Paillier aggregation with threshold decryption: clients, server and decryptors as state machines.

One execution of a round (the threat model and the parameters are in
:mod:`threat_models.paillier`):

1. ``advertise_keys``: the server sends each decryptor a :class:`NonceRequest`. The decryptor
   claims ``("paillier-decrypt", round)`` in its round log (refusing a round it already took
   part in), draws a fresh 32-byte nonce and answers with a :class:`DecryptorNonce` signed
   with its identity key. The server verifies each signature on receipt; with fewer than
   ``t`` valid nonces the round aborts (:class:`~secagg.errors.ThresholdNotMetError`).
2. ``masked_input``: the server sends every client and every committed decryptor an
   :class:`UploadRequest` carrying the nonces. Its *execution context*
   (:func:`execution_context`) is the hash of key, round and those nonces. A client checks
   the nonce signatures and that at least ``t`` decryptors committed, claims
   ``("paillier-upload", round)`` in its round log, quantises its update (a
   :class:`~secagg.primitives.encoding.VectorEncoder`), packs and encrypts it under the dealt key
   (:mod:`secagg.primitives.paillier`), proves that it knows the plaintexts and signs
   ``(key id, round, context, client id, ciphertext digest)``; the proof is bound to the same
   context and sender. A decryptor adopts the context only if it holds its own nonce of
   this execution. The server verifies each :class:`Upload` on receipt (round, stage,
   context, roster, signature, proof, ciphertexts), multiplies it into its running
   aggregate and forwards it to every committed decryptor, which verifies it again
   (including that it names *its* context) and keeps its own running product. Memory is
   O(d) for everyone.
3. ``unmasking``: the server sends each committed decryptor a :class:`DecryptionRequest`
   naming the contributors. A decryptor answers (:class:`PartialDecryptionMessage`) only if
   this is its first decryption in the round, the named set equals the set of valid
   contributions it received itself, and it holds at least ``min_aggregate_size`` of them
   (and no more than the packing capacity). It partially decrypts *its own* product, with a
   proof of correctness unless the server is curious. The server verifies the proofs,
   combines ``t`` partials, unpacks and decodes the sum.

What each server class gets, and what it needs:

* Against every class: the server learns the sum of at least ``min_aggregate_size``
  contributions of one execution, nothing about a single one, provided that the dealer is
  honest and erased the factorisation, that fewer than ``t`` decryptors collude
  (``t > c``, with ``c`` counted by :meth:`threat_models.model.ThreatModel.max_colluders`)
  and that the public key reached the clients authenticated.
* ``SEMI_MALICIOUS`` and ``MALICIOUS`` (a server that lies about contributions, re-runs a
  round id, forwards different uploads to different decryptors, replays old messages,
  colludes with ``C`` clients and ``c`` decryptors) additionally need: a PKI for the
  clients' and the decryptors' identity keys (nonces and uploads are signed); quorums that
  intersect in an honest decryptor (``2t - l > c``), so that two decryptions in one round
  would need an honest decryptor to decrypt twice, which it refuses; and round logs that
  persist across restarts, kept where the party's keys are
  (:meth:`protocols.round_log.RoundLog.at`), so that no party takes part in two executions
  of one round. Freshness does not rest on the logs alone: an upload is bound to the
  context of the execution in which it was made, and an honest decryptor accepts only the
  context holding the nonce it drew for the current execution, so uploads of an earlier
  execution are refused even by a decryptor whose log was lost.
* ``CURIOUS`` follows the protocol: no signatures or proofs (the nonces, contexts and round
  logs are still used).

Robustness: every message is verified by its receiver before anything is relayed, so one
client (or the colluding fraction) cannot abort a round the honest parties could finish: an
upload or nonce that fails verification leaves its sender out (it counts as dropped), and a
partial decryption that fails its proof is discarded. A client that vanishes before or at
``masked_input`` is simply absent; a decryptor that vanishes sends no partial decryption,
which is tolerated down to the threshold ``t``; below it the round aborts with
:class:`~secagg.errors.ThresholdNotMetError`. A bad message raises a typed error
(:class:`~secagg.errors.MessageError` for malformed ones, also at construction of a message
object) and changes no state.

Parties are driven like the masking protocols' (``start`` / ``handle`` / ``advance`` on the
server, ``handle`` on the others); :class:`PaillierRoundRunner` is the in-process
transport with the stepping interface of :class:`protocols.masking.driver.RoundRunner`, and
:func:`simulate_paillier` is what ``protocols.simulate(..., protocol="paillier")`` runs.
:class:`PaillierHardening` switches single decryptor checks off for attack demonstrations.

Wire messages have a compact, strict binary encoding (:func:`encode_message`,
:func:`decode_message`): ``magic "SAPM" | version 2 | type | round | payload``.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from protocols.inputs import client_weights, default_encoder, parse_dropouts, weight_encoder
from protocols.masking.messages import Stage, frame, unframe
from protocols.paillier.keygen import KeyGeneration, generate_distributed_key
from protocols.result import SimulationResult
from protocols.round_log import RoundLog, identity_log
from protocols.runner import SteppedRound
from secagg.errors import (
    AlreadyFinalizedError,
    AuthenticationError,
    CapacityError,
    InvalidParameterError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
    SecAggError,
    StageError,
    ThresholdNotMetError,
)
from secagg.primitives.encoding import FixedPointEncoder, VectorEncoder
from secagg.primitives.paillier import (
    DEFAULT_KEY_BITS,
    PLAINTEXT_CHALLENGE_BITS,
    EncryptedVector,
    PackingScheme,
    PaillierAggregator,
    PlaintextProof,
    Randomness,
    validate_ciphertext,
    verify_plaintext_knowledge,
)
from secagg.primitives.signing import SIGNATURE_BYTES, IdentityKey, verify_signature
from secagg.primitives.threshold_paillier import (
    CHALLENGE_BITS,
    DecryptionProof,
    KeyShare,
    PartialDecryption,
    ThresholdPublicKey,
    combine_partial_decryptions,
    deal_threshold_key,
    partial_decrypt,
    proof_response_bits,
    verify_partial_decryption,
)
from secagg.primitives.transcript import canonical
from threat_models.model import ThreatModel
from threat_models.paillier import PaillierParameters, paillier_parameters

__all__ = [
    "PaillierRoundConfig",
    "MessageType",
    "Upload",
    "DecryptionRequest",
    "PartialDecryptionMessage",
    "PaillierMessage",
    "encode_message",
    "decode_message",
    "contribution_transcript",
    "plaintext_proof_context",
    "PaillierClient",
    "PaillierServer",
    "PaillierDecryptor",
    "PaillierHardening",
    "PaillierRoundOutcome",
    "PaillierRoundRunner",
    "PaillierParty",
    "PaillierResult",
    "PaillierSetup",
    "UploadRequest",
    "NonceRequest",
    "DecryptorNonce",
    "NONCE_BYTES",
    "CONTEXT_BYTES",
    "execution_context",
    "nonce_transcript",
    "setup_paillier_round",
    "WeightedEncoder",
    "run_round",
    "simulate_paillier",
]

_MAGIC = b"SAPM"
_VERSION = 2
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_PROTOCOL = "secagg/paillier-round/v2"
_UPLOAD_SCOPE = "paillier-upload"
_DECRYPT_SCOPE = "paillier-decrypt"
NONCE_BYTES = 32
CONTEXT_BYTES = 32

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]


class MessageType(Enum):
    """Wire message kinds of a Paillier round."""

    UPLOAD = 1
    DECRYPTION_REQUEST = 2
    PARTIAL_DECRYPTION = 3
    UPLOAD_REQUEST = 4
    NONCE_REQUEST = 5
    DECRYPTOR_NONCE = 6


@dataclass(frozen=True)
class PaillierRoundConfig:
    """Everything the parties of one round agree on before it starts.

    Attributes:
        round_id: the round (binds signatures and proofs; replays across rounds fail). The
            server picks it, so it is not fresh by itself: every execution also gets a fresh
            context from the decryptors' nonces (see the module docstring).
        public_key: the dealt threshold key (authenticated out of band).
        encoder: quantiser of the updates (ring Z_(2^bits), ``max_clients`` summands).
        packing: slot layout derived from key and encoder.
        length: ``d``, the update dimension.
        min_aggregate_size: fewest contributions a decryptor will help decrypt.
        roster: client id -> Ed25519 identity public key (from a PKI); the clients allowed
            to contribute. With ``signed_contributions=False`` the keys may be empty bytes.
        decryptors: party id -> key-share index of every decryptor (default ``i -> i``). When
            the clients are the decryptors, the party ids are client ids.
        decryptor_keys: party id -> Ed25519 identity public key of every decryptor (from the
            same PKI), which signs its fresh nonces. Default: the roster's key of each
            decryptor that is also a client. Required for the others with
            ``signed_contributions``.
        signed_contributions: contributions and decryptor nonces must carry valid signatures.
        plaintext_proofs: contributions carry proofs of plaintext knowledge (bound to the
            execution and the sender), verified by the server and the decryptors.
        decryption_proofs: partial decryptions carry proofs that the server verifies.
        randomness: encryption randomness (``FIXED_BASE`` by default; a key without a fixed
            base, as made by distributed key generation, needs ``STANDARD``).
    """

    round_id: int
    public_key: ThresholdPublicKey
    encoder: VectorEncoder
    packing: PackingScheme
    length: int
    min_aggregate_size: int
    roster: Mapping[int, bytes]
    decryptors: Mapping[int, int] | None = None
    decryptor_keys: Mapping[int, bytes] | None = None
    signed_contributions: bool = True
    plaintext_proofs: bool = True
    decryption_proofs: bool = True
    randomness: Randomness = Randomness.FIXED_BASE

    def __post_init__(self) -> None:
        if not _is_u64(self.round_id):
            raise InvalidParameterError("round_id must be an int in [0, 2^64)")
        if not isinstance(self.public_key, ThresholdPublicKey):
            raise InvalidParameterError("public_key must be a ThresholdPublicKey")
        if not isinstance(self.packing, PackingScheme):
            raise InvalidParameterError("packing must be a PackingScheme")
        if self.public_key.encryption_base is None and self.randomness is not Randomness.STANDARD:
            raise InvalidParameterError(
                "this key has no checked fixed encryption base (distributed key generation); "
                "use randomness=Randomness.STANDARD"
            )
        if self.packing.value_bits != self.encoder.bits:
            raise InvalidParameterError("packing and encoder use different rings")
        if self.packing.max_clients < self.encoder.max_clients:
            raise InvalidParameterError("packing capacity is below the encoder's max_clients")
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise InvalidParameterError("length must be a positive int")
        size = self.min_aggregate_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidParameterError("min_aggregate_size must be a positive int")
        if self.min_aggregate_size > self.packing.max_clients:
            raise InvalidParameterError("min_aggregate_size exceeds the packing capacity")
        if not isinstance(self.roster, Mapping) or not self.roster or not all(
            _is_u64(k) and isinstance(v, bytes) for k, v in self.roster.items()
        ):
            raise InvalidParameterError(
                "roster must map client ids in [0, 2^64) to identity key bytes"
            )
        roster = dict(self.roster)
        object.__setattr__(self, "roster", roster)
        count = self.public_key.n_decryptors
        decryptors = (
            {i: i for i in range(1, count + 1)}
            if self.decryptors is None
            else dict(self.decryptors)
        )
        if sorted(decryptors.values()) != list(range(1, count + 1)) or not all(
            _is_u64(k) for k in decryptors
        ):
            raise InvalidParameterError(
                f"decryptors must map {count} party ids in [0, 2^64) to the share indices 1..{count}"
            )
        object.__setattr__(self, "decryptors", decryptors)
        given = {} if self.decryptor_keys is None else dict(self.decryptor_keys)
        if not set(given) <= set(decryptors) or not all(isinstance(v, bytes) for v in given.values()):
            raise InvalidParameterError("decryptor_keys must map decryptor party ids to key bytes")
        keys = {pid: given.get(pid, roster.get(pid, b"")) for pid in decryptors}
        if self.signed_contributions and not all(keys.values()):
            raise InvalidParameterError(
                "signed contributions need every decryptor's identity key (decryptor_keys)"
            )
        object.__setattr__(self, "decryptor_keys", keys)

    @property
    def decryptor_parties(self) -> dict[int, int]:
        """Party id -> share index of every decryptor."""
        return dict(self.decryptors or {})

    @property
    def decryptor_identities(self) -> dict[int, bytes]:
        """Party id -> identity public key of every decryptor (empty bytes when unsigned)."""
        return dict(self.decryptor_keys or {})

    @property
    def encoded_length(self) -> int:
        """Ring elements per update after encoding."""
        return self.encoder.encoded_length(self.length)

    @property
    def context(self) -> bytes:
        """Bytes that bind partial-decryption proofs to this key and round."""
        return canonical(_PROTOCOL, self.public_key.key_id, self.round_id)

    @property
    def ciphertext_width(self) -> int:
        return (self.public_key.n_squared.bit_length() + 7) // 8


def nonce_transcript(config: PaillierRoundConfig, party_id: int, nonce: bytes) -> bytes:
    """What a decryptor signs with its fresh nonce: ``(protocol, key id, round, party, nonce)``."""
    return canonical(
        _PROTOCOL, "decryptor-nonce", config.public_key.key_id, config.round_id, party_id, nonce
    )


def execution_context(config: PaillierRoundConfig, nonces: Sequence[DecryptorNonce]) -> bytes:
    """The fresh context of one execution of the round (32 bytes).

    ``SHA-256(protocol, key id, round, (party, nonce) for every committed decryptor)``, the
    nonces sorted by party id. Every upload is signed and proven over it, and an honest
    decryptor accepts only uploads over the context that holds the nonce it drew for this
    execution.
    """
    fields: list[bytes | str | int] = [
        _PROTOCOL,
        "execution",
        config.public_key.key_id,
        config.round_id,
    ]
    for m in sorted(nonces, key=lambda m: m.party_id):
        fields += [m.party_id, m.nonce]
    return hashlib.sha256(canonical(*fields)).digest()


def plaintext_proof_context(config: PaillierRoundConfig, execution: bytes, client_id: int) -> bytes:
    """What a client's proof of plaintext knowledge is bound to: key, round, execution, sender."""
    return canonical(
        _PROTOCOL, "plaintext", config.public_key.key_id, config.round_id, execution, client_id
    )


def contribution_transcript(
    config: PaillierRoundConfig, execution: bytes, client_id: int, digest: bytes
) -> bytes:
    """What a client signs: ``(protocol, key id, round, execution context, client id, digest)``."""
    return canonical(
        _PROTOCOL,
        "contribution",
        config.public_key.key_id,
        config.round_id,
        execution,
        client_id,
        digest,
    )


# --------------------------------------------------------------------------- messages

_U64_LIMIT = 1 << 64


def _is_u64(value: object) -> bool:
    return type(value) is int and 0 <= value < _U64_LIMIT


def _check_u64(name: str, value: object) -> None:
    if not _is_u64(value):
        raise MessageError(f"{name} must be an int in [0, 2^64), got {value!r}")


def _check_blob(name: str, value: object, sizes: tuple[int, ...]) -> None:
    if not isinstance(value, bytes) or len(value) not in sizes:
        raise MessageError(f"{name} must be bytes of length {' or '.join(map(str, sizes))}")


@dataclass(frozen=True)
class NonceRequest:
    """Server -> decryptor: a new execution of the round starts; commit a fresh nonce."""

    round_id: int
    recipient: int

    def __post_init__(self) -> None:
        _check_u64("round_id", self.round_id)
        _check_u64("recipient", self.recipient)


@dataclass(frozen=True)
class DecryptorNonce:
    """Decryptor -> server (relayed to every party): a fresh nonce, signed by the decryptor."""

    round_id: int
    party_id: int
    nonce: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_u64("round_id", self.round_id)
        _check_u64("party_id", self.party_id)
        _check_blob("nonce", self.nonce, (NONCE_BYTES,))
        _check_blob("signature", self.signature, (0, SIGNATURE_BYTES))


@dataclass(frozen=True)
class UploadRequest:
    """Server -> client (and decryptor): the execution's nonces; upload over their context."""

    round_id: int
    recipient: int
    nonces: tuple[DecryptorNonce, ...]

    def __post_init__(self) -> None:
        _check_u64("round_id", self.round_id)
        _check_u64("recipient", self.recipient)
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
        _check_u64("round_id", self.round_id)
        _check_u64("client_id", self.client_id)
        if not isinstance(self.vector, EncryptedVector):
            raise MessageError("vector must be an EncryptedVector")
        _check_blob("context", self.context, (CONTEXT_BYTES,))
        _check_blob("signature", self.signature, (0, SIGNATURE_BYTES))
        if self.proof is not None and not isinstance(self.proof, PlaintextProof):
            raise MessageError("proof must be a PlaintextProof or None")


@dataclass(frozen=True)
class DecryptionRequest:
    """Server -> decryptor: decrypt the product of these clients' contributions."""

    round_id: int
    recipient: int
    contributors: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_u64("round_id", self.round_id)
        _check_u64("recipient", self.recipient)
        if not isinstance(self.contributors, tuple) or not all(
            _is_u64(c) for c in self.contributors
        ):
            raise MessageError("contributors must be a tuple of client ids in [0, 2^64)")


@dataclass(frozen=True)
class PartialDecryptionMessage:
    """Decryptor -> server: a partial decryption of the decryptor's own aggregate."""

    round_id: int
    partial: PartialDecryption

    def __post_init__(self) -> None:
        _check_u64("round_id", self.round_id)
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
_MESSAGE_CLASSES = (
    NonceRequest,
    DecryptorNonce,
    UploadRequest,
    Upload,
    DecryptionRequest,
    PartialDecryptionMessage,
)


def _check_message(message: object) -> None:
    """Refuse an object that is not a message of this protocol (malformed input)."""
    if not isinstance(message, _MESSAGE_CLASSES):
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


def _encode(message: PaillierMessage, config: PaillierRoundConfig) -> bytes:
    if isinstance(message, Upload):
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
        body = (
            _U64.pack(message.client_id)
            + message.context
            + bytes([len(message.signature)])
            + message.signature
            + proof_bytes
            + message.vector.to_bytes(config.public_key.paillier)
        )
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
        body = (_U64.pack(message.recipient) + _U32.pack(len(message.contributors))) + b"".join(
            _U64.pack(c) for c in message.contributors
        )
        kind = MessageType.DECRYPTION_REQUEST
    elif isinstance(message, PartialDecryptionMessage):
        p = message.partial
        width = config.ciphertext_width
        body = (
            _U32.pack(p.index)
            + _U32.pack(len(p.values))
            + b"".join(v.to_bytes(width, "big") for v in p.values)
        )
        if p.proof is None:
            body += b"\x00"
        else:
            body += (
                b"\x01"
                + p.proof.challenge.to_bytes(CHALLENGE_BITS // 8, "big")
                + p.proof.response.to_bytes(_response_width(config), "big")
            )
        kind = MessageType.PARTIAL_DECRYPTION
    else:
        raise MessageError(f"not a Paillier message: {type(message).__name__}")
    return frame(_MAGIC, _VERSION, kind, message.round_id, body)


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


def decode_message(data: bytes, config: PaillierRoundConfig) -> PaillierMessage:
    """Strictly decode a wire message; sizes are checked against the round's configuration.

    Raises:
        MessageError: unknown magic, version or type, wrong sizes, malformed fields.
    """
    kind, round_id, body = unframe(
        data, magic=_MAGIC, version=_VERSION, kinds=MessageType, what="a Paillier round message"
    )
    if kind is MessageType.UPLOAD:
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
        vector = EncryptedVector.from_bytes(
            body[offset:], config.public_key.paillier, config.packing
        )
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
    if kind is MessageType.UPLOAD_REQUEST:
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
        head = _U64.size + _U32.size
        if len(body) < head:
            raise MessageError("decryption request is truncated")
        (recipient,) = _U64.unpack_from(body)
        (count,) = _U32.unpack_from(body, _U64.size)
        if count > config.packing.max_clients or len(body) != head + count * _U64.size:
            raise MessageError("decryption request has the wrong size")
        ids = tuple(_U64.unpack_from(body, head + i * _U64.size)[0] for i in range(count))
        return DecryptionRequest(round_id=round_id, recipient=recipient, contributors=ids)
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


def _check_round(config: PaillierRoundConfig, round_id: int) -> None:
    if round_id != config.round_id:
        raise ReplayError(f"message of round {round_id} in round {config.round_id}")


def _check_nonce(config: PaillierRoundConfig, message: DecryptorNonce) -> None:
    """One decryptor's signed nonce (raises; never mutates)."""
    _check_round(config, message.round_id)
    keys = config.decryptor_identities
    if message.party_id not in keys:
        raise MessageError("nonce from a party that is not a decryptor of the round")
    if config.signed_contributions:
        verify_signature(
            keys[message.party_id],
            message.signature,
            nonce_transcript(config, message.party_id, message.nonce),
        )


def _check_upload_request(config: PaillierRoundConfig, message: UploadRequest) -> bytes:
    """The checks every receiver of an upload request makes; returns the execution context.

    At least ``t`` distinct decryptors of the round, each nonce signed by its decryptor.
    """
    _check_round(config, message.round_id)
    for nonce in message.nonces:
        _check_nonce(config, nonce)
    if len(message.nonces) < config.public_key.threshold:
        raise ThresholdNotMetError(
            f"{len(message.nonces)} decryptors committed to this execution, "
            f"the threshold is {config.public_key.threshold}"
        )
    return execution_context(config, message.nonces)


def _check_contribution(
    config: PaillierRoundConfig, message: Upload, *, check_proof: bool = True
) -> None:
    """Validation shared by the server and the decryptors (raises; never mutates).

    The signature and the proof are checked over the context the upload names; the caller
    checks that this context is the execution's.
    """
    _check_round(config, message.round_id)
    if message.client_id not in config.roster:
        raise MessageError("contribution from a client outside the round's roster")
    vector = message.vector
    if vector.length != config.encoded_length:
        raise MessageError("contribution has the wrong vector length")
    if config.signed_contributions:
        verify_signature(
            config.roster[message.client_id],
            message.signature,
            contribution_transcript(config, message.context, message.client_id, vector.digest()),
        )
    if config.plaintext_proofs and check_proof:
        if message.proof is None:
            raise AuthenticationError()
        verify_plaintext_knowledge(
            config.public_key.paillier,
            vector,
            message.proof,
            context=plaintext_proof_context(config, message.context, message.client_id),
        )


def _default_log(identity: IdentityKey | None) -> RoundLog:
    return identity_log(identity.public_bytes) if identity is not None else RoundLog.in_memory()


# --------------------------------------------------------------------------- parties


class PaillierClient:
    """A contributing client: encode, encrypt, prove, sign, upload -- once per round.

    Args:
        config: the round.
        client_id: this client's id (must be in the roster).
        identity_key: its long-term signing key (required with ``signed_contributions``).
        update: the float update to send when the server's :class:`UploadRequest` arrives
            (:meth:`handle`); :meth:`upload` takes it directly instead.
        rng: generator for the encoder's stochastic rounding (simulation data only).
        round_log: where this client records the rounds it uploaded in (claimed before
            anything is encrypted; a second execution of a round is refused). Keep it with
            the identity key (:meth:`protocols.round_log.RoundLog.at`). Default: the
            process-wide log of the identity key (:func:`protocols.round_log.identity_log`),
            or a fresh in-memory log without one.
    """

    def __init__(
        self,
        config: PaillierRoundConfig,
        client_id: int,
        identity_key: IdentityKey | None,
        *,
        update: npt.ArrayLike | None = None,
        rng: np.random.Generator | None = None,
        round_log: RoundLog | None = None,
    ) -> None:
        if client_id not in config.roster:
            raise InvalidParameterError(f"client {client_id} is not in the round's roster")
        if config.signed_contributions:
            if (
                not isinstance(identity_key, IdentityKey)
                or identity_key.public_bytes != config.roster[client_id]
            ):
                raise InvalidParameterError(
                    "signed contributions need this client's rostered identity key"
                )
        if round_log is not None and not isinstance(round_log, RoundLog):
            raise InvalidParameterError("round_log must be a RoundLog")
        self.config = config
        self.client_id = client_id
        self._identity = identity_key
        self._log = round_log if round_log is not None else _default_log(identity_key)
        self._encryptor = config.public_key.encryptor(config.packing, randomness=config.randomness)
        self._update = None if update is None else self._check_update(update)
        self._rng = rng
        self._done = False

    @property
    def round_log(self) -> RoundLog:
        """The log this client claims its rounds in."""
        return self._log

    def _check_update(self, update: npt.ArrayLike) -> F64:
        x = np.asarray(update, dtype=np.float64)
        if x.ndim != 1 or x.size != self.config.length:
            raise InvalidParameterError(
                f"update must be a 1-D vector of length {self.config.length}"
            )
        return x

    def handle(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Answer the server's :class:`UploadRequest` with this client's :class:`Upload`.

        Raises:
            StageError: a Paillier message other than an upload request.
            ReplayError: a request of another round, or this client (its round log) already
                took part in an execution of this round.
            MessageError: not a Paillier message, a request addressed to someone else, or a
                nonce from a party that is not a decryptor of the round.
            AuthenticationError: a decryptor's nonce signature does not verify.
            ThresholdNotMetError: fewer than ``t`` decryptors committed to the execution.
            AlreadyFinalizedError: this client object already uploaded.
            InvalidParameterError: the client was built without an update, or its round log
                cannot be written.
            EncodingError: the update does not fit the encoder.
        """
        _check_message(message)
        if not isinstance(message, UploadRequest):
            raise StageError(f"a client does not accept {type(message).__name__}")
        if self._update is None:
            raise InvalidParameterError("this client was built without an update")
        return [self.upload(message, self._update)]

    def upload(self, request: UploadRequest, update: npt.ArrayLike, **encode_kwargs: Any) -> Upload:
        """Encode, encrypt, prove and sign ``update`` over the execution ``request`` opens.

        The round is claimed in the round log after every check and before any ciphertext
        exists; a second execution of the round is refused.

        Raises:
            the errors of :meth:`handle` (except ``StageError``).
        """
        if self._done:
            raise AlreadyFinalizedError("this client already uploaded in this round")
        if not isinstance(request, UploadRequest):
            raise MessageError("an upload answers an UploadRequest")
        if request.recipient != self.client_id:
            raise MessageError("upload request addressed to another client")
        execution = _check_upload_request(self.config, request)
        x = self._check_update(update)
        if self._rng is not None and "rng" not in encode_kwargs:
            if isinstance(self.config.encoder, (FixedPointEncoder, WeightedEncoder)):
                encode_kwargs["rng"] = self._rng
        encoded = self.config.encoder.encode(x, **encode_kwargs)
        self._log.claim(_UPLOAD_SCOPE, self.config.round_id)
        self._done = True
        vector, witness = self._encryptor.encrypt_with_witness(encoded)
        proof = None
        if self.config.plaintext_proofs:
            proof = self._encryptor.prove_knowledge(
                vector,
                witness,
                context=plaintext_proof_context(self.config, execution, self.client_id),
            )
        del witness
        signature = b""
        if self.config.signed_contributions and self._identity is not None:
            signature = self._identity.sign(
                contribution_transcript(self.config, execution, self.client_id, vector.digest())
            )
        return Upload(
            round_id=self.config.round_id,
            client_id=self.client_id,
            vector=vector,
            context=execution,
            signature=signature,
            proof=proof,
        )


class _Phase(Enum):
    COMMITTING = "advertise_keys"
    COLLECTING = "masked_input"
    DECRYPTING = "unmasking"
    DONE = "done"


@dataclass(frozen=True)
class PaillierResult:
    """The server's result: ring sums (Z_(2^bits)), decoded aggregate and contributors."""

    ring_sum: U64 = field(repr=False)
    aggregate: F64 = field(repr=False)
    survivors: tuple[int, ...]


class PaillierServer:
    """The aggregator: relays nonces, verifies and multiplies uploads, combines partials.

    It never holds key material. The transport drives it like the masking server:
    :meth:`start` returns the nonce requests, :meth:`handle` processes one incoming message
    and returns what to forward (an accepted upload, to every committed decryptor),
    :meth:`advance` closes the current stage and returns the next stage's requests;
    :attr:`stage` is ``advertise_keys``, ``masked_input``, ``unmasking``, then ``None`` with
    :attr:`result` set.

    Everything is verified on receipt -- nonce signatures, upload context, signature and
    proof, partial-decryption proofs -- so that what it relays is valid: a message that fails
    raises a typed error and changes nothing, and its sender is simply left out (a client
    whose upload fails is dropped, not a reason to abort the round).
    """

    def __init__(self, config: PaillierRoundConfig) -> None:
        self.config = config
        self._aggregator = PaillierAggregator(
            config.public_key.paillier, config.packing, config.encoded_length
        )
        self._nonces: dict[int, DecryptorNonce] = {}
        self._execution: bytes | None = None
        self._contributors: list[int] = []
        self._partials: dict[int, PartialDecryption] = {}
        self._phase = _Phase.COMMITTING
        self._started = False
        self._aggregate: EncryptedVector | None = None
        self._result: PaillierResult | None = None

    @property
    def stage(self) -> Stage | None:
        """The stage being run, ``None`` when the round is over."""
        return {
            _Phase.COMMITTING: Stage.ADVERTISE_KEYS,
            _Phase.COLLECTING: Stage.MASKED_INPUT,
            _Phase.DECRYPTING: Stage.UNMASKING,
            _Phase.DONE: None,
        }[self._phase]

    @property
    def result(self) -> PaillierResult:
        """The round's result (after the last :meth:`advance`)."""
        if self._result is None:
            raise StageError("the round has not finished")
        return self._result

    @property
    def execution_context(self) -> bytes | None:
        """This execution's context (once the nonces are in), see :func:`execution_context`."""
        return self._execution

    @property
    def committee(self) -> tuple[int, ...]:
        """Party ids of the decryptors whose nonces are in this execution's context."""
        return tuple(sorted(self._nonces)) if self._execution is not None else ()

    @property
    def contributors(self) -> tuple[int, ...]:
        """Clients whose uploads are in the aggregate, sorted."""
        return tuple(sorted(self._contributors))

    @property
    def partials_received(self) -> int:
        return len(self._partials)

    def start(self) -> list[PaillierMessage]:
        """Open the round: one :class:`NonceRequest` per decryptor."""
        if self._started:
            raise StageError("the round has already started")
        self._started = True
        return [
            NonceRequest(round_id=self.config.round_id, recipient=party)
            for party in sorted(self.config.decryptor_parties)
        ]

    def handle(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Process one incoming message (all-or-nothing; typed error on anything wrong).

        Raises:
            ReplayError: another round, a duplicate, a message after its stage closed, or an
                upload over another execution's context.
            StageError: a message the server does not accept, or one before its stage.
            AuthenticationError: a signature or a proof does not verify.
            MessageError: malformed, or from a party outside the round.
        """
        if isinstance(message, DecryptorNonce):
            _check_round(self.config, message.round_id)
            if self._phase is not _Phase.COMMITTING:
                raise ReplayError("nonce after the commitment stage closed")
            if message.party_id in self._nonces:
                raise ReplayError("this decryptor already committed a nonce")
            _check_nonce(self.config, message)
            self._nonces[message.party_id] = message
            return []
        if isinstance(message, Upload):
            _check_round(self.config, message.round_id)
            if self._phase is _Phase.COMMITTING:
                raise StageError("upload before the round opened for uploads")
            if self._phase is not _Phase.COLLECTING:
                raise ReplayError("upload after the input stage closed")
            if message.context != self._execution:
                raise ReplayError("upload bound to another execution of the round")
            _check_contribution(self.config, message)
            if message.client_id in self._contributors:
                raise ReplayError("this client already contributed in this round")
            self._aggregator.add(message.vector)
            self._contributors.append(message.client_id)
            return [message]
        if isinstance(message, PartialDecryptionMessage):
            _check_round(self.config, message.round_id)
            if self._phase is not _Phase.DECRYPTING or self._aggregate is None:
                raise StageError("no decryption is in progress")
            partial = message.partial
            if partial.index in self._partials:
                raise ReplayError("this decryptor already answered")
            if not 1 <= partial.index <= self.config.public_key.n_decryptors:
                raise MessageError("partial decryption from an unknown decryptor")
            if self.config.decryption_proofs:
                verify_partial_decryption(
                    self.config.public_key, self._aggregate, partial, context=self.config.context
                )
            else:
                if len(partial.values) != len(self._aggregate.ciphertexts):
                    raise MessageError("partial decryption has the wrong length")
                pk = self.config.public_key
                for value in partial.values:
                    validate_ciphertext(value, pk.n, pk.n_squared)
            self._partials[partial.index] = partial
            return []
        if isinstance(message, (NonceRequest, UploadRequest, DecryptionRequest)):
            raise StageError(f"the server does not accept {type(message).__name__}")
        raise MessageError(f"not a Paillier message: {type(message).__name__}")

    def advance(self) -> list[PaillierMessage]:
        """Close the current stage; return the next stage's requests (none after the last).

        Raises:
            ThresholdNotMetError: too few nonces, contributions or partial decryptions.
        """
        if self._phase is _Phase.COMMITTING:
            return list(self.open_uploads())
        if self._phase is _Phase.COLLECTING:
            return list(self.request_decryption())
        if self._phase is _Phase.DECRYPTING:
            self.finalize()
            return []
        raise StageError("the round is over")

    def open_uploads(self) -> list[UploadRequest]:
        """Close the commitments; send every client and committed decryptor the nonces.

        Raises:
            ThresholdNotMetError: fewer than ``t`` decryptors committed (no quorum could
                decrypt; nothing is sent).
            StageError: called twice.
        """
        if self._phase is not _Phase.COMMITTING:
            raise StageError("uploads were already opened")
        threshold = self.config.public_key.threshold
        if len(self._nonces) < threshold:
            raise ThresholdNotMetError(
                f"{len(self._nonces)} decryptors committed, the threshold is {threshold}"
            )
        nonces = tuple(self._nonces[p] for p in sorted(self._nonces))
        self._execution = execution_context(self.config, nonces)
        self._phase = _Phase.COLLECTING
        recipients = sorted(set(self.config.roster) | set(self._nonces))
        return [
            UploadRequest(round_id=self.config.round_id, recipient=party, nonces=nonces)
            for party in recipients
        ]

    def request_decryption(self) -> list[DecryptionRequest]:
        """Close the uploads; ask every committed decryptor to decrypt the contributors' product.

        Raises:
            ThresholdNotMetError: fewer contributions than the minimum aggregate size (the
                decryptors would refuse anyway; nothing is sent).
            StageError: called out of order.
        """
        if self._phase is not _Phase.COLLECTING:
            raise StageError("decryption was already requested or uploads are not open")
        if len(self._contributors) < self.config.min_aggregate_size:
            raise ThresholdNotMetError(
                f"{len(self._contributors)} contributions, the minimum aggregate size is "
                f"{self.config.min_aggregate_size}"
            )
        self._phase = _Phase.DECRYPTING
        self._aggregate = self._aggregator.result()
        return [
            DecryptionRequest(
                round_id=self.config.round_id, recipient=party, contributors=self.contributors
            )
            for party in self.committee
        ]

    def finalize(self) -> F64:
        """Combine ``t`` partial decryptions and decode the sum of the contributors' updates.

        Raises:
            ThresholdNotMetError: fewer than ``t`` (valid) partial decryptions.
            ProtocolAbortError: the partials do not combine (only possible without proofs).
            AlreadyFinalizedError: called twice.
        """
        if self._phase is _Phase.DONE:
            raise AlreadyFinalizedError("the round is already finalised")
        if self._phase is not _Phase.DECRYPTING or self._aggregate is None:
            raise StageError("decryption has not been requested")
        pk = self.config.public_key
        if len(self._partials) < pk.threshold:
            raise ThresholdNotMetError(
                f"{len(self._partials)} partial decryptions, the threshold is {pk.threshold}"
            )
        try:
            plaintexts = combine_partial_decryptions(
                pk,
                self._aggregate,
                [self._partials[i] for i in sorted(self._partials)],
                verify=False,  # proofs were checked on arrival when required
                context=self.config.context,
            )
        except AuthenticationError:
            raise ProtocolAbortError("partial decryptions are inconsistent") from None
        count = len(self._contributors)
        ring_sums = self.config.packing.unpack(
            plaintexts, self.config.encoded_length, summands=count
        )
        aggregate = np.asarray(self.config.encoder.decode_sum(ring_sums, count), dtype=np.float64)
        self._phase = _Phase.DONE
        self._result = PaillierResult(
            ring_sum=ring_sums, aggregate=aggregate, survivors=self.contributors
        )
        return aggregate


@dataclass(frozen=True)
class PaillierHardening:
    """The decryptors' checks against a server that wants one client's update decrypted.

    All are on by default; :meth:`unhardened` (explicit opt-in) builds the deliberately weak
    baseline that attack evaluations compare against, and switching one flag off shows what
    that one check stops.

    Attributes:
        check_aggregate_size: refuse to decrypt fewer than ``min_aggregate_size``
            contributions (stops "decrypt this one client's ciphertext").
        single_decryption: decrypt at most once per round (stops differencing ``A`` against
            ``A`` minus one client within one execution).
        verify_plaintext_proofs: require each contribution's proof of plaintext knowledge
            (stops a colluding client from cancelling the others' ciphertexts).
        single_execution: claim the round in the decryptor's round log before committing a
            nonce or decrypting, and refuse a round already claimed (stops a second execution
            of one round id, also after a restart when the log is persisted).
        fresh_context: accept only uploads signed over the context that holds this
            decryptor's own fresh nonce of this execution (stops replaying uploads from an
            earlier execution even when the round log was lost).
    """

    check_aggregate_size: bool = True
    single_decryption: bool = True
    verify_plaintext_proofs: bool = True
    single_execution: bool = True
    fresh_context: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise InvalidParameterError(f"{f.name} must be a bool")

    @classmethod
    def unhardened(cls) -> PaillierHardening:
        """Every check off. INSECURE: only for demonstrating the attacks."""
        return cls(
            check_aggregate_size=False,
            single_decryption=False,
            verify_plaintext_proofs=False,
            single_execution=False,
            fresh_context=False,
        )


class PaillierDecryptor:
    """A key-share holder that decrypts only a legitimate aggregate, once per round.

    Per execution it draws a fresh nonce (signed with its identity key), accepts only the
    upload request whose nonce list holds that nonce, keeps its own running product of the
    uploads forwarded to it that are signed over that execution's context, and on a
    :class:`DecryptionRequest` checks that the named contributors are exactly those, at least
    ``min_aggregate_size`` of them, before partially decrypting that product. The round is
    claimed in its round log before the nonce leaves: a second execution of the round (a
    new object, a restart with the same log) is refused.

    Args:
        config: the round.
        share: this decryptor's key share.
        identity_key: its long-term signing key (the one in ``config.decryptor_keys``;
            required with ``signed_contributions``).
        hardening: the checks (all on by default; see :class:`PaillierHardening`).
        round_log: where it records the rounds it took part in; persist it where the key
            share is kept (:meth:`protocols.round_log.RoundLog.at`). Default: the process-wide
            log of the identity key (:func:`protocols.round_log.identity_log`), or a fresh
            in-memory log without one.
    """

    def __init__(
        self,
        config: PaillierRoundConfig,
        share: KeyShare,
        *,
        identity_key: IdentityKey | None = None,
        hardening: PaillierHardening = PaillierHardening(),  # noqa: B008 - frozen value
        round_log: RoundLog | None = None,
    ) -> None:
        if not isinstance(share, KeyShare) or share.public_key.key_id != config.public_key.key_id:
            raise InvalidParameterError("the key share does not belong to the round's key")
        if not isinstance(hardening, PaillierHardening):
            raise InvalidParameterError("hardening must be a PaillierHardening")
        if round_log is not None and not isinstance(round_log, RoundLog):
            raise InvalidParameterError("round_log must be a RoundLog")
        parties = [pid for pid, index in config.decryptor_parties.items() if index == share.index]
        party_id = parties[0]
        if identity_key is not None and not isinstance(identity_key, IdentityKey):
            raise InvalidParameterError("identity_key must be an IdentityKey")
        if config.signed_contributions and (
            identity_key is None
            or identity_key.public_bytes != config.decryptor_identities[party_id]
        ):
            raise InvalidParameterError("signed rounds need this decryptor's identity key")
        self.config = config
        self.index = share.index
        self.party_id = party_id
        self.hardening = hardening
        self._share = share
        self._identity = identity_key
        self._log = round_log if round_log is not None else _default_log(identity_key)
        self._aggregator = PaillierAggregator(
            config.public_key.paillier, config.packing, config.encoded_length
        )
        self._contributors: set[int] = set()
        self._nonce: bytes | None = None
        self._execution: bytes | None = None
        self._claimed = False
        self._decrypted = False

    @property
    def decrypted(self) -> bool:
        """Whether this decryptor has released a partial decryption in this round."""
        return self._decrypted

    @property
    def round_log(self) -> RoundLog:
        """The log this decryptor claims its rounds in."""
        return self._log

    @property
    def execution(self) -> bytes | None:
        """The execution context it accepted (``None`` before the upload request)."""
        return self._execution

    def _claim(self) -> None:
        if self.hardening.single_execution and not self._claimed:
            self._log.claim(_DECRYPT_SCOPE, self.config.round_id)
        self._claimed = True

    def takes_part(self, request: UploadRequest) -> bool:
        """Whether ``request`` names this decryptor (without the freshness check: always)."""
        if not self.hardening.fresh_context:
            return True
        return any(m.party_id == self.party_id for m in request.nonces)

    def check_upload_request(self, request: UploadRequest) -> bytes:
        """Validate the execution an upload request opens; return its context (no state change).

        Raises:
            ReplayError: another round, or (``fresh_context``) a nonce list without this
                decryptor's nonce of this execution.
            AlreadyFinalizedError: it already accepted an execution context.
            StageError: (``fresh_context``) it has not committed a nonce yet.
            MessageError, AuthenticationError, ThresholdNotMetError: as for the client.
        """
        _check_round(self.config, request.round_id)
        if request.recipient != self.party_id:
            raise MessageError("upload request addressed to another party")
        if self._execution is not None:
            raise AlreadyFinalizedError("this decryptor already accepted an execution context")
        if self.hardening.fresh_context:
            if self._nonce is None:
                raise StageError("no nonce committed for this execution")
            own = [m for m in request.nonces if m.party_id == self.party_id]
            if len(own) != 1 or own[0].nonce != self._nonce:
                raise ReplayError("the execution context lacks this decryptor's fresh nonce")
        return _check_upload_request(self.config, request)

    def accept_upload_request(self, execution: bytes) -> None:
        """Adopt an execution context that :meth:`check_upload_request` returned."""
        self._execution = execution

    def handle(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Process a nonce request, the upload request, a forwarded upload or the decryption request.

        All-or-nothing: a refused message raises and changes no state (except that a round
        claimed in the round log stays claimed).

        Raises:
            ReplayError: another round, a round this decryptor's log already holds, an upload
                over another execution's context, a duplicate upload.
            AlreadyFinalizedError: a second nonce or context, or anything after decrypting.
            ProtocolAbortError: a decryption request for anything but the product of at least
                ``min_aggregate_size`` contributions it received itself.
            StageError, MessageError, AuthenticationError, ThresholdNotMetError: a message
                out of order, malformed (``MessageError`` also for an object that is not a
                Paillier message), unauthenticated or with too few committed decryptors.
            InvalidParameterError: the round log cannot be written.
        """
        _check_message(message)
        if isinstance(message, (NonceRequest, UploadRequest, Upload, DecryptionRequest)):
            _check_round(self.config, message.round_id)
        if self._decrypted and self.hardening.single_decryption:
            raise AlreadyFinalizedError("this decryptor already decrypted in this round")
        if isinstance(message, NonceRequest):
            if message.recipient != self.party_id:
                raise MessageError("nonce request addressed to another decryptor")
            if self._nonce is not None:
                raise AlreadyFinalizedError("this decryptor already committed a nonce")
            self._claim()
            nonce = secrets.token_bytes(NONCE_BYTES)
            signature = b""
            if self.config.signed_contributions and self._identity is not None:
                signature = self._identity.sign(nonce_transcript(self.config, self.party_id, nonce))
            self._nonce = nonce
            return [
                DecryptorNonce(
                    round_id=self.config.round_id,
                    party_id=self.party_id,
                    nonce=nonce,
                    signature=signature,
                )
            ]
        if isinstance(message, UploadRequest):
            self.accept_upload_request(self.check_upload_request(message))
            return []
        if isinstance(message, Upload):
            if self.hardening.fresh_context:
                if self._execution is None:
                    raise StageError("no execution context accepted yet")
                if message.context != self._execution:
                    raise ReplayError("upload bound to another execution of the round")
            _check_contribution(
                self.config, message, check_proof=self.hardening.verify_plaintext_proofs
            )
            if message.client_id in self._contributors:
                raise ReplayError("this client's contribution was already forwarded")
            self._aggregator.add(message.vector)
            self._contributors.add(message.client_id)
            return []
        if isinstance(message, DecryptionRequest):
            if message.recipient != self.party_id:
                raise MessageError("decryption request addressed to another decryptor")
            if self.hardening.fresh_context and self._execution is None:
                raise StageError("no execution context accepted yet")
            named = message.contributors
            if list(named) != sorted(set(named)):
                raise MessageError("contributors must be sorted and distinct")
            if set(named) != self._contributors:
                raise ProtocolAbortError(
                    "the requested aggregate is not the set of signed contributions received"
                )
            if self.hardening.check_aggregate_size and len(named) < self.config.min_aggregate_size:
                raise ProtocolAbortError(
                    f"refusing to decrypt an aggregate of {len(named)} contributions; "
                    f"the minimum is {self.config.min_aggregate_size}"
                )
            if not named:
                raise ProtocolAbortError("nothing to decrypt")
            self._claim()
            partial = partial_decrypt(
                self._share,
                self._aggregator.result(),
                prove=self.config.decryption_proofs,
                context=self.config.context,
            )
            self._decrypted = True
            return [PartialDecryptionMessage(round_id=self.config.round_id, partial=partial)]
        raise StageError(f"a decryptor does not accept {type(message).__name__}")


class PaillierParty:
    """One participant: a contributing client, a decryptor, or both (clients as decryptors)."""

    def __init__(self, client: PaillierClient | None, decryptor: PaillierDecryptor | None) -> None:
        if client is None and decryptor is None:
            raise InvalidParameterError("a party is a client, a decryptor or both")
        self.client = client
        self.decryptor = decryptor

    def handle(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Route a message to the client, the decryptor or (upload requests) both.

        An upload request is checked by both roles before either acts on it, so that a
        refused request changes neither.

        Raises:
            MessageError: not a Paillier message.
            StageError: a message neither of its roles accepts.
            the errors of :meth:`PaillierClient.handle` and :meth:`PaillierDecryptor.handle`.
        """
        _check_message(message)
        if isinstance(message, UploadRequest):
            decryptor = self.decryptor
            execution = None
            if decryptor is not None and decryptor.takes_part(message):
                execution = decryptor.check_upload_request(message)
            elif self.client is None:
                raise StageError("this decryptor has no part in this execution")
            replies = self.client.handle(message) if self.client is not None else []
            if decryptor is not None and execution is not None:
                decryptor.accept_upload_request(execution)
            return replies
        if isinstance(message, (NonceRequest, Upload, DecryptionRequest)):
            if self.decryptor is None:
                raise StageError("this party does not decrypt")
            return self.decryptor.handle(message)
        raise StageError(f"a party does not accept {type(message).__name__}")


# --------------------------------------------------------------------------- in-process driver

_EARLY_STAGES = ("advertise_keys", "graph_seed", "share_keys", "masked_input")
_DEFAULT_BITS = 32
_STAGES = ("advertise_keys", "masked_input", "unmasking")


@dataclass(frozen=True)
class WeightedEncoder:
    """``[w x_1 .. w x_d, w]`` -> the base encoding of ``w x`` followed by the encoded weight.

    Lets the server learn ``sum w x`` and ``sum w`` only (a weighted mean without revealing
    any weight). Implements :class:`~secagg.primitives.encoding.VectorEncoder`.
    """

    base: VectorEncoder
    weight: FixedPointEncoder

    def __post_init__(self) -> None:
        if self.base.bits != self.weight.bits:
            raise InvalidParameterError("the weight encoder must use the base encoder's ring")

    @property
    def bits(self) -> int:
        return self.base.bits

    @property
    def max_clients(self) -> int:
        return min(self.base.max_clients, self.weight.max_clients)

    @property
    def value_bound(self) -> int:
        """Largest ring element one contribution may hold (for the packing)."""
        base = (
            self.base.levels if isinstance(self.base, FixedPointEncoder) else (1 << self.bits) - 1
        )
        return max(base, self.weight.levels)

    def encoded_length(self, d: int) -> int:
        return self.base.encoded_length(d - 1) + 1

    def encode(self, values: npt.ArrayLike, rng: np.random.Generator | None = None) -> U64:
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 1 or x.size < 2:
            raise InvalidParameterError("a weighted input is [w x_1, ..., w x_d, w]")
        if isinstance(self.base, FixedPointEncoder):
            head = self.base.encode(x[:-1], rng=rng)
        else:
            head = np.asarray(self.base.encode(x[:-1]), dtype=np.uint64)
        return np.concatenate([head, self.weight.encode(x[-1:], rng=rng)])

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> F64:
        s = np.asarray(summed, dtype=np.uint64)
        return np.concatenate(
            [
                np.asarray(self.base.decode_sum(s[:-1], n), dtype=np.float64),
                self.weight.decode_sum(s[-1:], n),
            ]
        )


@dataclass(frozen=True)
class PaillierRoundOutcome:
    """What :func:`run_round` returns: the decoded sum, its contributors, the server's view."""

    aggregate: F64
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    server_view: tuple[PaillierMessage, ...]
    config: PaillierRoundConfig
    parameters: PaillierParameters
    weight_sum: float | None = None


class PaillierRoundRunner(SteppedRound[PaillierMessage, PaillierResult]):
    """Runs one Paillier round in process, stage by stage (the interface of ``RoundRunner``).

    Stages are ``advertise_keys`` (nonce requests -> the decryptors' signed fresh nonces),
    ``masked_input`` (upload requests carrying the nonces -> uploads, each accepted upload
    forwarded at once to every live decryptor of the execution) and ``unmasking``
    (decryption requests -> partial decryptions). A reply the server refuses (an upload or
    nonce whose signature or proof fails, a bad partial decryption) is dropped and noted in
    :attr:`rejected`: its sender counts as dropped out, the round goes on. A stage is *collected* (:meth:`deliver_requests`, :meth:`deliver_replies`)
    then *closed* (:meth:`close`: ``server.advance()``). Between the two a test or a scripted
    attack may inject messages (:meth:`send_to_server`, :meth:`send_to_client`) and inspect
    :attr:`pending`, :attr:`requests`, :attr:`outbox` and :attr:`replies`. The stepping
    itself is :class:`~protocols.runner.SteppedRound`'s; this class adds the Paillier wire
    format, the forwarding of uploads to the decryptors and lazy decryption.

    Args:
        server: a fresh server.
        parties: party id -> :class:`PaillierParty` (clients and decryptors).
        dropouts: stage -> party ids that vanish at that stage.
        wire: pass every message through the binary encoding.
        record_view: keep every message the server accepted in :attr:`server_view`.
        lazy_decryption: ask decryptors one at a time and stop at ``t`` partials (what a
            simulation wants: partial decryption is the expensive step).
    """

    stages: tuple[Stage, ...] = (Stage.ADVERTISE_KEYS, Stage.MASKED_INPUT, Stage.UNMASKING)
    server: PaillierServer
    clients: dict[int, PaillierParty]

    def __init__(
        self,
        server: PaillierServer,
        parties: Mapping[int, PaillierParty],
        *,
        dropouts: Mapping[Stage, Iterable[int]] | None = None,
        wire: bool = True,
        record_view: bool = True,
        lazy_decryption: bool = False,
    ) -> None:
        self.config = server.config
        self.lazy_decryption = lazy_decryption
        self.rejected: dict[int, list[str]] = {}
        super().__init__(server, parties, dropouts=dropouts, wire=wire, record_view=record_view)
        self.parties = self.clients  # ``clients`` is the name the conformance suite uses
        #: a tqdm bar advanced once per unit of work (an upload encrypted or verified by one
        #: party, a decryption share), or ``None``; see :func:`run_round`'s ``progress``
        self.progress_bar: Any = None

    def transmit(self, message: PaillierMessage) -> PaillierMessage:
        """What the receiver gets; first advances :attr:`progress_bar` (if any)."""
        if self.progress_bar is not None:
            _advance_progress(self.progress_bar, message)
        return super().transmit(message)

    def _by_recipient(self, messages: Iterable[PaillierMessage]) -> dict[int, PaillierMessage]:
        out: dict[int, PaillierMessage] = {}
        for m in messages:
            if isinstance(m, (NonceRequest, UploadRequest, DecryptionRequest)):
                out[m.recipient] = m
        return out

    def _encode(self, message: PaillierMessage) -> bytes:
        return encode_message(message, self.config)

    def _decode(self, data: bytes | bytearray | memoryview) -> PaillierMessage:
        return decode_message(bytes(data), self.config)

    def _to_server(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Hand ``message`` to the server, record it, forward what it forwards to the decryptors."""
        forwards = list(super()._to_server(message))
        committee = set(self.server.committee)
        for forward in forwards:
            for pid, party in sorted(self.parties.items()):
                if party.decryptor is not None and pid in committee and pid not in self.dead:
                    party.handle(self.transmit(forward))
        return forwards

    def _reply_to_server(self, sender: int, reply: PaillierMessage) -> None:
        """A party's reply; one the server refuses is dropped (its sender counts as dropped)."""
        try:
            super()._reply_to_server(sender, reply)
        except SecAggError as exc:
            self.rejected.setdefault(sender, []).append(type(exc).__name__)

    def _replies_at_once(self, stage: Stage) -> bool:
        return self.lazy_decryption and stage is Stage.UNMASKING

    def _stage_complete(self) -> bool:
        return self.server.partials_received >= self.config.public_key.threshold

    def send_to_client(
        self, party_id: int, message: PaillierMessage | bytes | bytearray | memoryview
    ) -> list[PaillierMessage]:
        """Deliver an extra message (object or raw bytes) to a party; return its reply."""
        return super().send_to_client(party_id, message)


def _advance_progress(bar: Any, message: PaillierMessage) -> None:
    """One unit of work starts: a client encrypts, a party verifies an upload, a decryptor decrypts."""
    phase = {
        UploadRequest: "paillier round: encrypting uploads",
        Upload: "paillier round: verifying uploads",
        DecryptionRequest: "paillier round: decryption shares",
    }.get(type(message))
    if phase is not None:
        if bar.desc != phase:
            bar.set_description_str(phase, refresh=False)
        bar.update(1)


@dataclass(frozen=True)
class PaillierSetup:
    """A round ready to run: the runner, its parameters and the parties' secrets (for attacks)."""

    runner: PaillierRoundRunner
    parameters: PaillierParameters
    identities: Mapping[int, IdentityKey]
    shares: tuple[KeyShare, ...] = field(repr=False)
    ids: tuple[int, ...]
    decryptor_identities: Mapping[int, IdentityKey] = field(default_factory=dict)


def setup_paillier_round(
    updates: Mapping[int, npt.ArrayLike],
    *,
    dropouts: Mapping[Any, Iterable[int]] | None = None,
    seed: int | None = None,
    threat_model: ThreatModel | None = None,
    encoder: VectorEncoder | None = None,
    bits: int = _DEFAULT_BITS,
    round_id: int | None = None,
    wire: bool = True,
    record_view: bool = True,
    key: tuple[ThresholdPublicKey, Sequence[KeyShare]] | None = None,
    key_bits: int = DEFAULT_KEY_BITS,
    hazmat_allow_weak_key: bool = False,
    committee_size: int | None = None,
    decryptor_dropouts: Iterable[int] = (),
    randomness: Randomness | None = None,
    hardening: PaillierHardening | None = None,
    lazy_decryption: bool = False,
    key_generation: KeyGeneration | str = KeyGeneration.DEALER,
    round_logs: Mapping[int, RoundLog] | None = None,
) -> PaillierSetup:
    """Build the config, the parties and a :class:`PaillierRoundRunner` for one round.

    ``updates`` are the (already weighted) float inputs; see :func:`run_round` for the other
    arguments. Committee members (``committee_size``) get the party ids following the
    largest client id and, in signed rounds, identity keys of their own. ``round_logs``
    (party id -> :class:`~protocols.round_log.RoundLog`) replaces a party's default log
    (the process-wide log of its identity key).

    Without ``key``, ``key_generation`` says who makes the key: ``"dealer"`` (default, the
    trusted dealer of :func:`~secagg.primitives.threshold_paillier.deal_threshold_key`) or
    ``"distributed"`` (the decryptors themselves, :mod:`protocols.paillier.keygen`; at
    least 3 decryptors; a member that vanishes during key generation raises
    :class:`~secagg.errors.RoundRestartError` naming it). ``randomness`` defaults to
    ``FIXED_BASE`` for a dealt key and ``STANDARD`` for a distributed one (which has no
    checked fixed base).
    """
    try:
        keygen = KeyGeneration(key_generation)
    except ValueError:
        raise InvalidParameterError(
            f"key_generation must be 'dealer' or 'distributed', got {key_generation!r}"
        ) from None
    if not isinstance(updates, Mapping) or len(updates) < 2:
        raise InvalidParameterError("updates must map at least two client ids to vectors")
    ids = tuple(sorted(updates))
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 1 << 63 for i in ids):
        raise InvalidParameterError("client ids must be ints in [0, 2^63)")
    vectors = {i: np.asarray(updates[i], dtype=np.float64) for i in ids}
    d = vectors[ids[0]].size
    if d < 1 or any(v.ndim != 1 or v.size != d for v in vectors.values()):
        raise InvalidParameterError("updates must be non-empty 1-D vectors of one length")
    n = len(ids)
    if encoder is None:
        encoder = default_encoder(vectors.values(), bits=bits, max_clients=n)
    if encoder.max_clients < n:
        raise CapacityError(
            f"the encoder sums at most {encoder.max_clients} clients, the cohort has {n}"
        )
    threat = ThreatModel() if threat_model is None else threat_model
    params = paillier_parameters(
        n, threat, n_decryptors=committee_size, max_clients=encoder.max_clients
    )
    if committee_size is None:
        decryptor_parties = {cid: index for index, cid in enumerate(ids, start=1)}
    else:
        decryptor_parties = {ids[-1] + index: index for index in range(1, committee_size + 1)}
    signed = params.signed_contributions
    identities = {i: IdentityKey.generate() for i in ids} if signed else {}
    if not signed:
        decryptor_identities: dict[int, IdentityKey] = {}
    elif committee_size is None:
        decryptor_identities = dict(identities)
    else:
        decryptor_identities = {pid: IdentityKey.generate() for pid in decryptor_parties}
    if key is None and keygen is KeyGeneration.DISTRIBUTED:
        # the committee's identity keys are the PKI of the key generation (fresh ones when
        # the round itself is unsigned: key generation always signs)
        keygen_identities = decryptor_identities or {
            pid: IdentityKey.generate() for pid in decryptor_parties
        }
        distributed = generate_distributed_key(
            keygen_identities,
            threshold=params.threshold,
            key_bits=key_bits,
            hazmat_allow_weak_key=hazmat_allow_weak_key,
            restart=False,
            wire=wire,
        )
        public_key = distributed.public_key
        shares = tuple(
            sorted(distributed.shares.values(), key=lambda share: share.index)
        )
    elif key is None:
        public_key, shares = deal_threshold_key(
            n_decryptors=params.n_decryptors,
            threshold=params.threshold,
            key_bits=key_bits,
            hazmat_allow_weak_key=hazmat_allow_weak_key,
        )
    else:
        public_key, shares = key[0], tuple(key[1])
        if not isinstance(public_key, ThresholdPublicKey) or len(shares) != public_key.n_decryptors:
            raise InvalidParameterError("key must be (ThresholdPublicKey, all of its shares)")
        if public_key.n_decryptors != params.n_decryptors:
            raise InvalidParameterError(
                f"the key has {public_key.n_decryptors} shares, the round needs {params.n_decryptors}"
            )
        if public_key.threshold < params.threshold:
            raise InvalidParameterError(
                f"the key's threshold {public_key.threshold} is below the threat model's "
                f"minimum {params.threshold}"
            )
    if isinstance(encoder, WeightedEncoder):
        packing = public_key.packing(
            value_bits=encoder.bits,
            max_clients=encoder.max_clients,
            value_bound=encoder.value_bound,
        )
    else:
        packing = public_key.packing_for(encoder)
    if randomness is None:
        randomness = (
            Randomness.STANDARD if public_key.encryption_base is None else Randomness.FIXED_BASE
        )
    logs = dict(round_logs or {})
    if not all(isinstance(v, RoundLog) for v in logs.values()):
        raise InvalidParameterError("round_logs must map party ids to RoundLog objects")
    config = PaillierRoundConfig(
        round_id=secrets.randbits(63) if round_id is None else round_id,
        public_key=public_key,
        encoder=encoder,
        packing=packing,
        length=d,
        min_aggregate_size=params.min_aggregate_size,
        roster={i: identities[i].public_bytes if identities else b"" for i in ids},
        decryptors=decryptor_parties,
        decryptor_keys={pid: key.public_bytes for pid, key in decryptor_identities.items()},
        signed_contributions=params.signed_contributions,
        plaintext_proofs=params.plaintext_proofs,
        decryption_proofs=params.decryption_proofs,
        randomness=randomness,
    )
    staged: dict[Stage, set[int]] = {Stage.MASKED_INPUT: set(), Stage.UNMASKING: set()}
    staged[Stage.ADVERTISE_KEYS] = set()
    for stage, dropped in parse_dropouts(dropouts, stages=tuple(Stage), cohort=ids).items():
        staged[Stage.MASKED_INPUT if stage.value in _EARLY_STAGES else Stage.UNMASKING] |= dropped
        if stage is Stage.ADVERTISE_KEYS:
            # a client that is also a decryptor vanishes before it commits a nonce
            staged[Stage.ADVERTISE_KEYS] |= dropped
    gone = tuple(decryptor_dropouts)
    if gone:
        if committee_size is None:
            raise InvalidParameterError("decryptor_dropouts needs a separate committee")
        if not set(gone) <= set(range(1, committee_size + 1)):
            raise InvalidParameterError(
                "decryptor_dropouts must be committee indices 1..committee_size"
            )
        staged[Stage.UNMASKING] |= {ids[-1] + index for index in gone}
    rng = np.random.default_rng(seed)
    checks = PaillierHardening() if hardening is None else hardening
    by_index = {s.index: s for s in shares}
    parties: dict[int, PaillierParty] = {}
    for pid in sorted(set(ids) | set(decryptor_parties)):
        client = (
            PaillierClient(
                config,
                pid,
                identities.get(pid),
                update=vectors[pid],
                rng=rng,
                round_log=logs.get(pid),
            )
            if pid in vectors
            else None
        )
        decryptor = (
            PaillierDecryptor(
                config,
                by_index[decryptor_parties[pid]],
                identity_key=decryptor_identities.get(pid),
                hardening=checks,
                round_log=logs.get(pid),
            )
            if pid in decryptor_parties
            else None
        )
        parties[pid] = PaillierParty(client, decryptor)
    runner = PaillierRoundRunner(
        PaillierServer(config),
        parties,
        dropouts=staged,
        wire=wire,
        record_view=record_view,
        lazy_decryption=lazy_decryption,
    )
    return PaillierSetup(
        runner=runner,
        parameters=params,
        identities=identities,
        shares=tuple(shares),
        ids=ids,
        decryptor_identities=decryptor_identities,
    )


def run_round(
    updates: Mapping[int, npt.ArrayLike],
    *,
    dropouts: Mapping[Any, Iterable[int]] | None = None,
    seed: int | None = None,
    threat_model: ThreatModel | None = None,
    encoder: VectorEncoder | None = None,
    bits: int = _DEFAULT_BITS,
    weights: Mapping[int, float] | None = None,
    max_weight: float | None = None,
    round_id: int | None = None,
    wire: bool = True,
    record_view: bool = True,
    key: tuple[ThresholdPublicKey, Sequence[KeyShare]] | None = None,
    key_bits: int = DEFAULT_KEY_BITS,
    hazmat_allow_weak_key: bool = False,
    committee_size: int | None = None,
    decryptor_dropouts: Iterable[int] = (),
    randomness: Randomness | None = None,
    progress: bool = False,
    hardening: PaillierHardening | None = None,
    key_generation: KeyGeneration | str = KeyGeneration.DEALER,
) -> PaillierRoundOutcome:
    """Run one Paillier round in-process (what ``protocols.simulate(protocol="paillier")`` runs).

    Args:
        updates: client id -> 1-D float update (all of one length).
        dropouts: stage name (or ``Stage``) -> client ids that vanish at that stage. At
            ``advertise_keys`` a client never uploads and, if it is a decryptor, commits no
            nonce; at ``graph_seed``, ``share_keys`` or ``masked_input`` it never uploads (and
            never decrypts); at ``consistency_check`` or ``unmasking`` it has uploaded but
            sends no partial decryption.
        seed: seeds the *stochastic rounding* only (simulation data); keys, encryption
            randomness and proofs always use the OS CSPRNG.
        threat_model: adversary (default ``ThreatModel()``: malicious server); decides the
            threshold, the minimum aggregate size, signatures and proofs
            (:func:`threat_models.paillier.paillier_parameters`).
        encoder: quantiser; default a ``FixedPointEncoder`` of ``bits`` bits on ``[-B, B]``,
            ``B`` the smallest power of two bounding the (weighted) inputs, for the cohort.
        bits: ring bits of the default encoder (32, as for the masking protocols).
        weights: client id -> non-negative weight: each client encrypts ``[w x, w]`` so that
            the server learns ``sum w x`` and ``sum w`` only; ``max_weight`` bounds a weight
            (default the largest rounded up to a power of two).
        max_weight: see ``weights``.
        round_id: binds signatures and proofs (default a random 63-bit id); each party
            takes part in one execution of a round id only (its round log).
        wire: pass every message through its binary encoding (default True).
        record_view: keep the server's view (default True).
        key: a dealt ``(public key, shares)`` to reuse (one key per training run); its
            ``n_decryptors`` must match and its threshold be at least the derived one.
            Without it a fresh key of ``key_bits`` is made as ``key_generation`` says.
        key_bits: modulus size for a fresh key (3072 by default).
        hazmat_allow_weak_key: allow ``key_bits < 2048`` -- INSECURE, tests only.
        committee_size: ``None``: the clients are the decryptors (the ``i``-th smallest id holds
            share ``i``); otherwise a separate committee of this size.
        decryptor_dropouts: committee indices (1-based) that vanish before decrypting.
        randomness: encryption randomness (default ``FIXED_BASE`` for a dealt key,
            ``STANDARD`` for a distributed one).
        progress: show a progress bar through the round -- encrypting uploads, verifying
            them, decryption shares (only on a terminal).
        hardening: the decryptors' checks (default all on; ``PaillierHardening.unhardened()``
            only to demonstrate attacks).
        key_generation: ``"dealer"`` (default): a trusted dealer makes the key and must
            forget the factorisation; ``"distributed"``: the decryptors generate it among
            themselves (:mod:`protocols.paillier.keygen`, at least 3 decryptors, an honest
            majority of them, no dealer). See :mod:`threat_models.paillier` for what each
            trusts.

    Raises:
        RoundRestartError: a decryptor vanished during distributed key generation.
        ThresholdNotMetError: fewer contributions than the minimum aggregate size, or fewer
            decryptors than the threshold.
        InfeasibleThreatModelError: the threat model admits no parameters.
        CapacityError: more clients than the encoder sums.
        InvalidParameterError, EncodingError: malformed inputs.
    """
    if not isinstance(updates, Mapping) or len(updates) < 2:
        raise InvalidParameterError("updates must map at least two client ids to vectors")
    ids = sorted(updates)
    vectors = {i: np.asarray(updates[i], dtype=np.float64) for i in ids}
    ws: dict[int, float] = {}
    weight_coder = None
    if weights is not None:
        ws = client_weights(weights, ids)
        vectors = {i: vectors[i] * ws[i] for i in ids}
        if encoder is None:
            encoder = default_encoder(vectors.values(), bits=bits, max_clients=len(ids))
        weight_coder = weight_encoder(ws, max_weight=max_weight, bits=encoder.bits, max_clients=len(ids))
        encoder = WeightedEncoder(encoder, weight_coder)
        vectors = {i: np.concatenate([vectors[i], [ws[i]]]) for i in ids}
    setup = setup_paillier_round(
        vectors,
        dropouts=dropouts,
        seed=seed,
        threat_model=threat_model,
        encoder=encoder,
        bits=bits,
        round_id=round_id,
        wire=wire,
        record_view=record_view,
        key=key,
        key_bits=key_bits,
        hazmat_allow_weak_key=hazmat_allow_weak_key,
        committee_size=committee_size,
        decryptor_dropouts=decryptor_dropouts,
        randomness=randomness,
        hardening=hardening,
        lazy_decryption=True,
        key_generation=key_generation,
    )
    runner = setup.runner
    quiet = not progress or not sys.stderr.isatty()
    # work units: each upload encrypted (clients), verified by the server and by every
    # committee member, and the threshold's decryption shares
    units = len(ids) * (runner.config.public_key.n_decryptors + 2) + runner.config.public_key.threshold
    with tqdm(total=units, desc="paillier round", unit="op", disable=quiet, leave=False) as bar:
        runner.progress_bar = None if quiet else bar
        while not runner.finished:
            runner.step()
        runner.progress_bar = None
    result = runner.server.result
    total = result.aggregate
    weight_sum = None
    if weight_coder is not None:
        weight_sum = float(total[-1])
        total = total[:-1]
    return PaillierRoundOutcome(
        aggregate=np.asarray(total, dtype=np.float64),
        survivors=result.survivors,
        dropped=tuple(i for i in ids if i not in result.survivors),
        server_view=tuple(runner.server_view),
        config=runner.config,
        parameters=setup.parameters,
        weight_sum=weight_sum,
    )


def simulate_paillier(
    updates: Mapping[int, npt.ArrayLike],
    *,
    dropouts: Mapping[Any, Iterable[int]] | None = None,
    seed: int | None = None,
    threat_model: ThreatModel | None = None,
    encoder: VectorEncoder | None = None,
    bits: int = _DEFAULT_BITS,
    weights: Mapping[int, float] | None = None,
    max_weight: float | None = None,
    round_id: int | None = None,
    wire: bool = True,
    record_view: bool = True,
    key: tuple[ThresholdPublicKey, Sequence[KeyShare]] | None = None,
    key_bits: int = DEFAULT_KEY_BITS,
    hazmat_allow_weak_key: bool = False,
    committee_size: int | None = None,
    decryptor_dropouts: Iterable[int] = (),
    randomness: Randomness | None = None,
    progress: bool = False,
    hardening: PaillierHardening | None = None,
    key_generation: KeyGeneration | str = KeyGeneration.DEALER,
) -> SimulationResult:
    """``protocols.simulate(updates, protocol="paillier", ...)``.

    Options (keyword): those of :func:`run_round` -- ``threat_model``, ``encoder``, ``bits``,
    ``weights``, ``max_weight``, ``round_id``, ``wire``, ``record_view`` as for the masking
    protocols, ``hardening`` (a :class:`PaillierHardening`), plus ``key``, ``key_bits``,
    ``hazmat_allow_weak_key``, ``committee_size``, ``decryptor_dropouts``, ``randomness``,
    ``progress`` and ``key_generation`` (``"dealer"``, the default, or ``"distributed"``: the
    decryptors generate the key themselves, no dealer).

    """
    outcome = run_round(
        updates,
        dropouts=dropouts,
        seed=seed,
        threat_model=threat_model,
        encoder=encoder,
        bits=bits,
        weights=weights,
        max_weight=max_weight,
        round_id=round_id,
        wire=wire,
        record_view=record_view,
        key=key,
        key_bits=key_bits,
        hazmat_allow_weak_key=hazmat_allow_weak_key,
        committee_size=committee_size,
        decryptor_dropouts=decryptor_dropouts,
        randomness=randomness,
        progress=progress,
        hardening=hardening,
        key_generation=key_generation,
    )
    pk = outcome.config.public_key
    return SimulationResult(
        aggregate=outcome.aggregate,
        survivors=outcome.survivors,
        server_view=outcome.server_view,
        protocol="paillier",
        dropped=outcome.dropped,
        weight_sum=outcome.weight_sum,
        parameters=outcome.parameters,
        details={
            "round_id": outcome.config.round_id,
            "threshold": pk.threshold,
            "decryptors": pk.n_decryptors,
            "min_aggregate_size": outcome.config.min_aggregate_size,
            "key_bits": pk.n.bit_length(),
            "key_generation": (
                KeyGeneration.DEALER if pk.has_encryption_base else KeyGeneration.DISTRIBUTED
            ).value,
            "bits": outcome.config.encoder.bits,
            "slots_per_ciphertext": outcome.config.packing.slots,
            "signed": outcome.config.signed_contributions,
            "plaintext_proofs": outcome.config.plaintext_proofs,
            "decryption_proofs": outcome.config.decryption_proofs,
            "stages": _STAGES,
        },
    )
