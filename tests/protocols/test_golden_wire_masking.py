"""Golden wire bytes of every masking-protocol message (SecAgg / SecAgg+).

Each message type is built once from fixed field values (no randomness), encoded, and the
bytes compared with the literal below; the literal decodes back to the same message.

Rule: a literal here changes only together with the codec's version
(:data:`protocols.masking.codec.WIRE_VERSION`). A change of the byte layout that keeps the
version breaks every deployed peer silently, so it must fail this test; a deliberate change
of format bumps ``WIRE_VERSION`` (and ``test_the_literals_belong_to_this_version``) in
the same commit as the new literals, generated once with the encoder and pasted.
"""

from __future__ import annotations

import numpy as np
import pytest

from protocols.masking.codec import WIRE_VERSION, MessageType
from protocols.masking.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyBroadcast,
    MaskedInput,
    Message,
    RoundStart,
    SeedRequest,
    SeedReveal,
    ShareForward,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
    decode_message,
    encode_message,
)
from protocols.masking.records import (
    Attestation,
    EncryptedShare,
    PeerKeys,
    RevealedShare,
    SeedEntry,
    SurvivorSignature,
)

RID = 0x0123456789ABCDEF
K1 = bytes(range(32))
K2 = bytes(range(32, 64))
SIG = bytes(range(64, 128))
C = bytes(range(128, 160))


def _messages() -> dict[str, Message]:
    return {
        "round_start": RoundStart(
            round_id=RID, recipient=3, neighbours=(1, 2, 4, 5), cohort=(1, 2, 3, 4, 5)
        ),
        "advertise_keys": AdvertiseKeys(
            round_id=RID,
            sender=3,
            mask_public=K1,
            share_public=K2,
            signature=SIG,
            round_public=K1,
            seed_commitment=C,
        ),
        "seed_request": SeedRequest(
            round_id=RID, recipient=3, entries=(SeedEntry(1, C), SeedEntry(3, K1))
        ),
        "seed_reveal": SeedReveal(round_id=RID, sender=3, reveal=K2),
        "key_broadcast": KeyBroadcast(
            round_id=RID,
            recipient=3,
            peers=(PeerKeys(1, K1, K2, SIG, K2, C), PeerKeys(2, K2, K1)),
            reveals=(K1, C),
        ),
        "share_keys": ShareKeys(
            round_id=RID,
            sender=3,
            shares=(EncryptedShare(1, b"ct-1"), EncryptedShare(2, b"")),
            commitment=C,
        ),
        "share_forward": ShareForward(
            round_id=RID, recipient=3, shares=(EncryptedShare(1, b"from-1"),)
        ),
        "masked_input": MaskedInput(
            round_id=RID,
            sender=3,
            bits=20,
            words=np.array([0, 1, 0xFFFFF], dtype=np.uint32),
            attestation=SIG,
            rejected=(2,),
        ),
        "masked_input_64": MaskedInput(
            round_id=RID, sender=3, bits=64, words=np.array([2**64 - 1, 2**32], dtype=np.uint64)
        ),
        "consistency_request": ConsistencyRequest(
            round_id=RID, recipient=3, survivors=(1, 3, 2**63 - 1)
        ),
        "consistency_signature": ConsistencySignature(round_id=RID, sender=3, signature=SIG),
        "unmask_request": UnmaskRequest(
            round_id=RID,
            recipient=3,
            survivors=(1, 3),
            dropped=(2,),
            signatures=(SurvivorSignature(1, SIG, K1),),
            key_sharers=(1, 2, 3),
            attestations=(Attestation(1, SIG),),
        ),
        "unmask_response": UnmaskResponse(
            round_id=RID,
            sender=3,
            self_mask_shares=(RevealedShare(1, b"self-share"),),
            mask_key_shares=(RevealedShare(2, b"key-share"),),
        ),
    }


GOLDEN: dict[str, str] = {
    "round_start": (
        "534103010123456789abcdef00000000000000000000000000000003000000040000000000000001"
        "00000000000000020000000000000004000000000000000500000005000000000000000100000000"
        "00000002000000000000000300000000000000040000000000000005"
    ),
    "advertise_keys": (
        "534103020123456789abcdef00000000000000030000000000000000000102030405060708090a0b"
        "0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30313233"
        "3435363738393a3b3c3d3e3f00000040404142434445464748494a4b4c4d4e4f5051525354555657"
        "58595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "00000020000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00000020"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    ),
    "seed_request": (
        "5341030b0123456789abcdef00000000000000000000000000000003000000020000000000000001"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f0000000000000003"
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    ),
    "seed_reveal": (
        "5341030c0123456789abcdef00000000000000030000000000000000202122232425262728292a2b"
        "2c2d2e2f303132333435363738393a3b3c3d3e3f"
    ),
    "key_broadcast": (
        "534103030123456789abcdef00000000000000000000000000000003000000020000000000000001"
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627"
        "28292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f00000040404142434445464748494a4b"
        "4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70717273"
        "7475767778797a7b7c7d7e7f00000020202122232425262728292a2b2c2d2e2f3031323334353637"
        "38393a3b3c3d3e3f00000020808182838485868788898a8b8c8d8e8f909192939495969798999a9b"
        "9c9d9e9f0000000000000002202122232425262728292a2b2c2d2e2f303132333435363738393a3b"
        "3c3d3e3f000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00000000"
        "000000000000000000000002000102030405060708090a0b0c0d0e0f101112131415161718191a1b"
        "1c1d1e1f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    ),
    "share_keys": (
        "534103040123456789abcdef00000000000000030000000000000000000000020000000000000001"
        "0000000463742d31000000000000000200000000808182838485868788898a8b8c8d8e8f90919293"
        "9495969798999a9b9c9d9e9f"
    ),
    "share_forward": (
        "534103050123456789abcdef00000000000000000000000000000003000000010000000000000001"
        "0000000666726f6d2d31"
    ),
    "masked_input": (
        "534103060123456789abcdef00000000000000030000000000000000000000404041424344454647"
        "48494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f"
        "707172737475767778797a7b7c7d7e7f000000010000000000000002140000000300000000010000"
        "00ffff0f00"
    ),
    "masked_input_64": (
        "534103060123456789abcdef00000000000000030000000000000000000000000000000040000000"
        "02ffffffffffffffff0000000001000000"
    ),
    "consistency_request": (
        "534103070123456789abcdef00000000000000000000000000000003000000030000000000000001"
        "00000000000000037fffffffffffffff"
    ),
    "consistency_signature": (
        "534103080123456789abcdef00000000000000030000000000000000404142434445464748494a4b"
        "4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f70717273"
        "7475767778797a7b7c7d7e7f"
    ),
    "unmask_request": (
        "534103090123456789abcdef00000000000000000000000000000003000000020000000000000001"
        "00000000000000030000000100000000000000020000000100000000000000014041424344454647"
        "48494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f"
        "707172737475767778797a7b7c7d7e7f00000020000102030405060708090a0b0c0d0e0f10111213"
        "1415161718191a1b1c1d1e1f00000003000000000000000100000000000000020000000000000003"
        "000000010000000000000001404142434445464748494a4b4c4d4e4f505152535455565758595a5b"
        "5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    ),
    "unmask_response": (
        "5341030a0123456789abcdef00000000000000030000000000000000000000010000000000000001"
        "0000000a73656c662d7368617265000000010000000000000002000000096b65792d7368617265"
    ),
}


def _same(a: Message, b: Message) -> bool:
    if isinstance(a, MaskedInput):
        return (
            isinstance(b, MaskedInput)
            and (a.round_id, a.sender, a.recipient, a.bits, a.attestation, a.rejected)
            == (b.round_id, b.sender, b.recipient, b.bits, b.attestation, b.rejected)
            and a.words.dtype == b.words.dtype
            and np.array_equal(a.words, b.words)
        )
    return a == b


def test_the_literals_belong_to_this_version() -> None:
    assert WIRE_VERSION == 3
    for literal in GOLDEN.values():
        assert bytes.fromhex(literal)[2] == WIRE_VERSION


def test_every_message_type_has_a_literal() -> None:
    assert set(GOLDEN) == set(_messages())
    assert {m.TYPE for m in _messages().values()} == set(MessageType)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_encoding_matches_the_literal(name: str) -> None:
    assert encode_message(_messages()[name]).hex() == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_literal_decodes_to_the_message(name: str) -> None:
    decoded = decode_message(bytes.fromhex(GOLDEN[name]))
    expected = _messages()[name]
    assert type(decoded) is type(expected)
    assert _same(decoded, expected)
