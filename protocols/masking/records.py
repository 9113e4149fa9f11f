"""The fields of the masking protocols' wire messages: size limits and the nested records.

A message of :mod:`protocols.masking.messages` carries ids, fixed-size keys, signatures
and commitments, bounded blobs, and tuples of the records below (a peer's advertised keys,
a seed commitment, an encrypted or a revealed share, a signature on the survivor set, a
masking-set attestation). Construction checks every field's type, range and size and
raises :class:`~secagg.errors.MessageError`, so a record that exists is well formed; the
codec (:mod:`protocols.masking.codec`) builds records only through these constructors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from protocols.framing import MAX_U64
from protocols.parties import MAX_CLIENT_ID
from secagg.errors import MessageError
from secagg.validation import require_bytes, require_int

__all__ = [
    "SERVER_ID",
    "MAX_CLIENT_ID",
    "MAX_ROUND_ID",
    "MAX_LIST",
    "MAX_BLOB",
    "MAX_WORDS",
    "PUBLIC_KEY_BYTES",
    "SIGNATURE_BYTES",
    "COMMITMENT_BYTES",
    "SEED_BYTES",
    "word_dtype",
    "PeerKeys",
    "SeedEntry",
    "Attestation",
    "EncryptedShare",
    "SurvivorSignature",
    "RevealedShare",
]

SERVER_ID = 0
"""The server's party id on the wire; clients have ids in ``[1, 2^63 - 1]``."""
MAX_ROUND_ID = MAX_U64
"""The largest round id (a 64-bit field of the header)."""
MAX_LIST = 1 << 20
"""The most ids or records one message may carry in one list."""
MAX_BLOB = 1 << 12
"""The largest variable-length field (one ciphertext, signature or share), in bytes."""
MAX_WORDS = (1 << 32) - 1
"""The most ring elements in one masked vector."""
PUBLIC_KEY_BYTES = 32
"""An X25519 or Ed25519 public key."""
SIGNATURE_BYTES = 64
"""An Ed25519 signature."""
COMMITMENT_BYTES = 32
"""A SHA-256 commitment."""
SEED_BYTES = 32
"""A client's contribution to the graph seed."""

_R = TypeVar("_R")


def word_dtype(bits: int) -> type[np.uint32] | type[np.uint64]:
    """Machine word of the ring Z_(2^bits) on the wire and in accumulators."""
    return np.uint32 if bits <= 32 else np.uint64


# each check has a fast path for the well-formed value (records arrive by the thousand)
# and leaves the verdict on anything else to secagg.validation


def client_id_field(name: str, value: object) -> int:
    """``value`` as a client id in ``[1, 2^63 - 1]``, else :class:`MessageError`."""
    if type(value) is int and 0 < value <= MAX_CLIENT_ID:
        return value
    return require_int(name, value, lo=1, hi=MAX_CLIENT_ID, error=MessageError)


def blob_field(name: str, value: object, *, size: int | None = None) -> bytes:
    """``value`` as bytes of exactly ``size`` (or at most ``MAX_BLOB``), else ``MessageError``."""
    if type(value) is bytes and (
        len(value) == size if size is not None else len(value) <= MAX_BLOB
    ):
        return value
    return require_bytes(name, value, size=size, max_size=MAX_BLOB, error=MessageError)


def optional_field(name: str, value: object, size: int) -> bytes:
    """``value`` as bytes, empty (absent) or exactly ``size`` long, else :class:`MessageError`."""
    if type(value) is bytes and (not value or len(value) == size):
        return value
    return require_bytes(name, value, sizes=(0, size), error=MessageError)


def set_id_field(record: object, name: str) -> None:
    """Check the client id field ``name`` of ``record``, stored as a plain ``int``."""
    value = getattr(record, name)
    if type(value) is int and 0 < value <= MAX_CLIENT_ID:
        return
    checked = client_id_field(name, value)
    if checked is not value:
        object.__setattr__(record, name, checked)


def ids_field(name: str, value: object) -> tuple[int, ...]:
    """``value`` as a tuple of at most ``MAX_LIST`` client ids, else :class:`MessageError`."""
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


def records_field(name: str, value: object, kind: type[_R]) -> tuple[_R, ...]:
    """``value`` as a tuple of at most ``MAX_LIST`` ``kind`` records, else :class:`MessageError`."""
    if not isinstance(value, tuple) or (
        # exact records (what the decoder builds) in one pass in C; subclasses one by one
        not set(map(type, value)) <= {kind} and any(not isinstance(v, kind) for v in value)
    ):
        raise MessageError(f"{name} must be a tuple of {kind.__name__}")
    if len(value) > MAX_LIST:
        raise MessageError(f"{name} has more than {MAX_LIST} entries")
    return value


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
        set_id_field(self, "client_id")
        blob_field("mask_public", self.mask_public, size=PUBLIC_KEY_BYTES)
        blob_field("share_public", self.share_public, size=PUBLIC_KEY_BYTES)
        optional_field("signature", self.signature, SIGNATURE_BYTES)
        optional_field("round_public", self.round_public, PUBLIC_KEY_BYTES)
        optional_field("seed_commitment", self.seed_commitment, COMMITMENT_BYTES)


@dataclass(frozen=True, slots=True)
class SeedEntry:
    """One client's commitment to its random contribution to the round's graph seed."""

    client_id: int
    commitment: bytes

    def __post_init__(self) -> None:
        set_id_field(self, "client_id")
        blob_field("commitment", self.commitment, size=COMMITMENT_BYTES)


@dataclass(frozen=True, slots=True)
class Attestation:
    """``peer``'s signature on the masking set it used (relayed to the holders of its shares)."""

    peer: int
    signature: bytes

    def __post_init__(self) -> None:
        set_id_field(self, "peer")
        blob_field("signature", self.signature, size=SIGNATURE_BYTES)


@dataclass(frozen=True, slots=True)
class EncryptedShare:
    """An AEAD ciphertext of one client's two shares for one peer (``peer`` = the other end)."""

    peer: int
    ciphertext: bytes

    def __post_init__(self) -> None:
        set_id_field(self, "peer")
        blob_field("ciphertext", self.ciphertext)


@dataclass(frozen=True, slots=True)
class SurvivorSignature:
    """A client's signature on the survivor set (consistency check)."""

    signer: int
    signature: bytes
    signer_key: bytes = b""

    def __post_init__(self) -> None:
        set_id_field(self, "signer")
        blob_field("signature", self.signature, size=SIGNATURE_BYTES)
        optional_field("signer_key", self.signer_key, PUBLIC_KEY_BYTES)


@dataclass(frozen=True, slots=True)
class RevealedShare:
    """A Shamir share (``secagg.primitives.shamir.Share.to_bytes``) of ``owner``'s secret."""

    owner: int
    share: bytes

    def __post_init__(self) -> None:
        set_id_field(self, "owner")
        blob_field("share", self.share)
