from __future__ import annotations

import os

import pytest

from secagg.errors import AuthenticationError, InvalidParameterError
from secagg.primitives.aead import NONCE_BYTES, ShareCipher
from secagg.primitives.signing import IdentityKey, verify_fields, verify_signature
from secagg.primitives.transcript import canonical

CTX = {"round_id": 5, "sender": 10, "recipient": 20}


def test_round_trip_and_fresh_nonces() -> None:
    c = ShareCipher(os.urandom(32))
    t1, t2 = c.encrypt(b"share bytes", **CTX), c.encrypt(b"share bytes", **CTX)
    assert t1 != t2
    assert c.decrypt(t1, **CTX) == b"share bytes"


@pytest.mark.parametrize(
    "ctx",
    [
        {"round_id": 6, "sender": 10, "recipient": 20},  # replay into another round
        {"round_id": 5, "sender": 20, "recipient": 10},  # reversed direction
        {"round_id": 5, "sender": 10, "recipient": 21},  # redirected
        {"round_id": 5, "sender": 11, "recipient": 20},  # claimed from someone else
    ],
)
def test_context_binding(ctx: dict) -> None:
    c = ShareCipher(os.urandom(32))
    token = c.encrypt(b"x" * 40, **CTX)
    with pytest.raises(AuthenticationError) as info:
        c.decrypt(token, **ctx)
    assert str(info.value) == "authentication failed"


@pytest.mark.parametrize("position", [0, NONCE_BYTES - 1, NONCE_BYTES, NONCE_BYTES + 20, -1])
def test_any_bit_flip_fails(position: int) -> None:
    c = ShareCipher(os.urandom(32))
    token = bytearray(c.encrypt(b"y" * 40, **CTX))
    token[position] ^= 0x01
    with pytest.raises(AuthenticationError):
        c.decrypt(bytes(token), **CTX)


def test_truncation_and_wrong_key_fail_with_the_same_error() -> None:
    c = ShareCipher(os.urandom(32))
    token = c.encrypt(b"z", **CTX)
    messages = set()
    for bad_token, cipher in [
        (token[:-1], c),
        (token[:5], c),
        (token, ShareCipher(os.urandom(32))),
    ]:
        with pytest.raises(AuthenticationError) as info:
            cipher.decrypt(bad_token, **CTX)
        messages.add(str(info.value))
    assert messages == {"authentication failed"}


def test_key_size_is_checked() -> None:
    with pytest.raises(InvalidParameterError):
        ShareCipher(b"k" * 16)


def test_signatures_over_canonical_transcripts() -> None:
    ident = IdentityKey.generate()
    sig = ident.sign_fields("advertise", 3, b"pk-bytes", [1, 2, 3])
    verify_fields(ident.public_bytes, sig, "advertise", 3, b"pk-bytes", [1, 2, 3])
    verify_signature(ident.public_bytes, sig, canonical("advertise", 3, b"pk-bytes", [1, 2, 3]))
    for fields in [("advertise", 4, b"pk-bytes", [1, 2, 3]), ("advertise", 3, b"pk-bytes", [1, 2])]:
        with pytest.raises(AuthenticationError):
            verify_fields(ident.public_bytes, sig, *fields)
    with pytest.raises(AuthenticationError):
        verify_fields(
            IdentityKey.generate().public_bytes, sig, "advertise", 3, b"pk-bytes", [1, 2, 3]
        )
    with pytest.raises(AuthenticationError):
        verify_signature(ident.public_bytes, sig[:-1], b"")
    rebuilt = IdentityKey.from_private_bytes(ident._private.private_bytes_raw())
    assert rebuilt.public_bytes == ident.public_bytes


def test_canonical_encoding_is_injective_on_tricky_pairs() -> None:
    assert canonical(b"ab", b"c") != canonical(b"a", b"bc")
    assert canonical("1") != canonical(1)
    assert canonical([1, 2]) != canonical(1, 2)
    with pytest.raises(InvalidParameterError):
        canonical(True)
    with pytest.raises(InvalidParameterError):
        canonical(-1)
