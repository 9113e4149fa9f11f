"""Ed25519 identity keys for the malicious-server variant.

Clients hold long-term identity keys (distributed through a PKI or pinned out of band).
They sign canonical encodings (:func:`secagg.primitives.transcript.canonical`) of protocol
transcripts: the round-bound public keys they advertise, and the survivor set in the
consistency check. Verification failures raise the opaque
:class:`~secagg.errors.AuthenticationError`.
"""

from __future__ import annotations

import functools

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.errors import AuthenticationError, InvalidParameterError
from secagg.primitives.transcript import Field, canonical

__all__ = [
    "IdentityKey",
    "verify_signature",
    "verify_fields",
    "SIGNATURE_BYTES",
    "PUBLIC_KEY_BYTES",
]

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32


class IdentityKey:
    """A long-term Ed25519 signing key."""

    __slots__ = ("_private", "public_bytes")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_bytes: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> IdentityKey:
        """A fresh identity key from the operating system's CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, data: bytes) -> IdentityKey:
        if not isinstance(data, (bytes, bytearray)) or len(data) != 32:
            raise InvalidParameterError("an Ed25519 private key is exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(data)))

    def sign(self, message: bytes) -> bytes:
        """Sign raw bytes (callers should pass a canonical transcript)."""
        return self._private.sign(bytes(message))

    def sign_fields(self, *fields: Field) -> bytes:
        """Sign ``canonical(*fields)``."""
        return self.sign(canonical(*fields))


def verify_signature(public_bytes: bytes, signature: bytes, message: bytes) -> None:
    """Verify an Ed25519 signature; raise :class:`AuthenticationError` on any failure."""
    if (
        not isinstance(public_bytes, (bytes, bytearray))
        or len(public_bytes) != PUBLIC_KEY_BYTES
        or not isinstance(signature, (bytes, bytearray))
        or len(signature) != SIGNATURE_BYTES
    ):
        raise AuthenticationError()
    try:
        _public_key(bytes(public_bytes)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError):
        raise AuthenticationError() from None


@functools.lru_cache(maxsize=4096)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    # a public key object is a function of its 32 bytes alone: a round's identity and round
    # signing keys are loaded once, not at each of the signatures they verify (a key that
    # does not load raises, and is not cached)
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_fields(public_bytes: bytes, signature: bytes, *fields: Field) -> None:
    """Verify a signature over ``canonical(*fields)``."""
    verify_signature(public_bytes, signature, canonical(*fields))
