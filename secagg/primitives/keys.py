"""Key agreement (X25519) and key derivation (HKDF-SHA256) with domain separation.

Every derived key is bound, through the HKDF ``info`` string, to:

* the protocol name and version (:data:`PROTOCOL_NAME`, :data:`PROTOCOL_VERSION`),
* the purpose (:class:`Purpose`: pairwise mask seed vs share encryption),
* the round id,
* the *ordered* pair of participant ids ``(min(u, v), max(u, v))``, so both ends derive
  the same key and no key is shared between two pairs.

Hence no key is ever used for two purposes, two rounds or two pairs. The ``info`` layout
is the canonical encoding of :func:`secagg.primitives.transcript.canonical`::

    canonical(PROTOCOL_NAME, PROTOCOL_VERSION, purpose.value, round_id, id_lo, id_hi)

and is pinned by a known-answer vector in the tests.
"""

from __future__ import annotations

import struct
from enum import Enum

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg.errors import AuthenticationError, InvalidParameterError
from secagg.primitives.transcript import canonical
from secagg.validation import is_int

__all__ = [
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "Purpose",
    "KeyPair",
    "hkdf_info",
    "derive_key",
    "derive_pair_key",
    "KEY_BYTES",
]

PROTOCOL_NAME = "secagg-fl"
PROTOCOL_VERSION = 1
KEY_BYTES = 32
_HKDF_SALT = b"secagg-fl/hkdf-salt/v1"
_MAX_ID = (1 << 63) - 1


class Purpose(str, Enum):
    """What a derived key is for; part of every HKDF ``info``."""

    MASK_SEED = "pairwise-mask-seed"
    SHARE_ENCRYPTION = "share-encryption"


# the constant head of every info string, per purpose (canonical records concatenate)
_INFO_PREFIX: dict[Purpose, bytes] = {
    p: canonical(PROTOCOL_NAME, PROTOCOL_VERSION, p.value) for p in Purpose
}
_INFO_TAIL = struct.Struct(">cIQcIQcIQ")
_ROUND_END = 1 << 64


def _check_id(name: str, value: int) -> None:
    if not is_int(value) or not 0 < value <= _MAX_ID:
        raise InvalidParameterError(f"{name} must be an int in [1, 2^63 - 1], got {value!r}")


def hkdf_info(purpose: Purpose, *, round_id: int, id_a: int, id_b: int) -> bytes:
    """The HKDF ``info`` for ``purpose`` between participants ``id_a`` and ``id_b`` in a round.

    Symmetric in ``(id_a, id_b)``; ``id_a == id_b`` is refused.
    """
    if type(purpose) is Purpose and type(id_a) is int and type(id_b) is int:
        # the well-formed case, with the same checks in one comparison each
        if 0 < id_a <= _MAX_ID and 0 < id_b <= _MAX_ID and id_a != id_b:
            if type(round_id) is int and 0 <= round_id < _ROUND_END:
                lo, hi = (id_a, id_b) if id_a < id_b else (id_b, id_a)
                # == canonical(PROTOCOL_NAME, PROTOCOL_VERSION, purpose.value, round_id, lo, hi)
                return _INFO_PREFIX[purpose] + _INFO_TAIL.pack(
                    b"U", 8, round_id, b"U", 8, lo, b"U", 8, hi
                )
    purpose = Purpose(purpose)
    _check_id("id_a", id_a)
    _check_id("id_b", id_b)
    if id_a == id_b:
        raise InvalidParameterError("a pair key needs two distinct participants")
    if not isinstance(round_id, int) or not 0 <= round_id < 1 << 64:
        raise InvalidParameterError(f"round_id must be an int in [0, 2^64), got {round_id!r}")
    lo, hi = sorted((id_a, id_b))
    return canonical(PROTOCOL_NAME, PROTOCOL_VERSION, purpose.value, round_id, lo, hi)


def derive_key(shared_secret: bytes, info: bytes, *, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256(salt = fixed protocol salt, ikm = ``shared_secret``, ``info``)."""
    if len(shared_secret) < 32:
        raise InvalidParameterError("shared secret must be at least 32 bytes")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_HKDF_SALT, info=info).derive(
        shared_secret
    )


class KeyPair:
    """An X25519 key pair (ephemeral per round in the protocols)."""

    __slots__ = ("_private", "public_bytes")

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self.public_bytes: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair from the operating system's CSPRNG."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> KeyPair:
        """Rebuild a key pair from its 32 raw private bytes (e.g. after Shamir reconstruction)."""
        if not isinstance(data, (bytes, bytearray)) or len(data) != 32:
            raise InvalidParameterError("an X25519 private key is exactly 32 bytes")
        return cls(X25519PrivateKey.from_private_bytes(bytes(data)))

    def private_bytes(self) -> bytes:
        """The 32 raw private bytes (to be Shamir-shared, never sent in the clear)."""
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def exchange(self, peer_public: bytes) -> bytes:
        """Raw X25519 shared secret with ``peer_public``.

        Raises:
            AuthenticationError: if the peer key is malformed or of small order (the
                all-zero shared secret), which only a misbehaving party would send.
        """
        if not isinstance(peer_public, (bytes, bytearray)) or len(peer_public) != 32:
            raise AuthenticationError()
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
        except (ValueError, UnsupportedAlgorithm):
            raise AuthenticationError() from None


def derive_pair_key(
    keypair: KeyPair,
    peer_public: bytes,
    *,
    purpose: Purpose,
    round_id: int,
    self_id: int,
    peer_id: int,
) -> bytes:
    """32-byte key shared by ``self_id`` and ``peer_id`` for ``purpose`` in ``round_id``.

    Both parties obtain the same key: X25519 is symmetric and the info orders the pair.
    """
    info = hkdf_info(purpose, round_id=round_id, id_a=self_id, id_b=peer_id)
    return derive_key(keypair.exchange(peer_public), info)
