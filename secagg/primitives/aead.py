"""Authenticated encryption of client-to-client messages relayed by the server.

AES-256-GCM with a fresh random 96-bit nonce per message. The associated data binds the
ciphertext to its context::

    AD = canonical(PROTOCOL_NAME, PROTOCOL_VERSION, "share-ciphertext", round_id, sender, recipient)

so a ciphertext that is tampered with, replayed into another round, or redirected to
another recipient (or claimed to come from another sender) fails to decrypt. Every
failure raises the same opaque :class:`~secagg.errors.AuthenticationError`.

Wire format: ``nonce (12 bytes) || ciphertext || tag (16 bytes)``.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secagg.errors import AuthenticationError, InvalidParameterError
from secagg.primitives.keys import PROTOCOL_NAME, PROTOCOL_VERSION
from secagg.primitives.transcript import canonical

__all__ = ["ShareCipher", "NONCE_BYTES", "TAG_BYTES", "associated_data"]

NONCE_BYTES = 12
TAG_BYTES = 16


def associated_data(*, round_id: int, sender: int, recipient: int) -> bytes:
    """The associated data binding a ciphertext to (round, sender, recipient)."""
    return canonical(
        PROTOCOL_NAME, PROTOCOL_VERSION, "share-ciphertext", round_id, sender, recipient
    )


class ShareCipher:
    """AES-256-GCM keyed with a 32-byte pair key (see
    :func:`secagg.primitives.keys.derive_pair_key`)."""

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
            raise InvalidParameterError("ShareCipher needs a 32-byte key")
        self._key = bytes(key)
        self._aead = AESGCM(self._key)

    def __reduce__(self) -> tuple[type[ShareCipher], tuple[bytes]]:
        # lets a client's round state be saved between processes (protocols.flower.state)
        return (ShareCipher, (self._key,))

    def encrypt(self, plaintext: bytes, *, round_id: int, sender: int, recipient: int) -> bytes:
        """Encrypt ``plaintext`` from ``sender`` to ``recipient`` in ``round_id``."""
        nonce = os.urandom(NONCE_BYTES)
        ad = associated_data(round_id=round_id, sender=sender, recipient=recipient)
        return nonce + self._aead.encrypt(nonce, bytes(plaintext), ad)

    def decrypt(self, token: bytes, *, round_id: int, sender: int, recipient: int) -> bytes:
        """Decrypt and authenticate; any mismatch raises :class:`AuthenticationError`."""
        if not isinstance(token, (bytes, bytearray)) or len(token) < NONCE_BYTES + TAG_BYTES:
            raise AuthenticationError()
        try:
            ad = associated_data(round_id=round_id, sender=sender, recipient=recipient)
        except InvalidParameterError:
            raise AuthenticationError() from None
        try:
            return self._aead.decrypt(bytes(token[:NONCE_BYTES]), bytes(token[NONCE_BYTES:]), ad)
        except InvalidTag:
            raise AuthenticationError() from None
