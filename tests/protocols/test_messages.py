"""Wire messages: round trips and strict decoding."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import (
    AdvertiseKeys,
    Attestation,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShare,
    KeyBroadcast,
    MaskedInput,
    Message,
    MessageType,
    PeerKeys,
    RevealedShare,
    RoundStart,
    SeedEntry,
    SeedRequest,
    SeedReveal,
    ShareForward,
    ShareKeys,
    Stage,
    SurvivorSignature,
    UnmaskRequest,
    UnmaskResponse,
    decode_message,
    encode_message,
)
from protocols.masking.messages import WIRE_VERSION
from secagg.errors import MessageError

RID = 0xDEADBEEF


def _samples() -> list[Message]:
    rng = np.random.default_rng(0)
    key = bytes(range(32))
    key2 = bytes(range(1, 33))
    sig = bytes(range(64))
    return [
        RoundStart(round_id=RID, recipient=3, neighbours=(1, 2, 4, 5)),
        RoundStart(round_id=RID, recipient=3, neighbours=(), cohort=(1, 2, 3, 4, 5)),
        AdvertiseKeys(round_id=RID, sender=3, mask_public=key, share_public=key2, signature=sig),
        AdvertiseKeys(
            round_id=RID,
            sender=3,
            mask_public=key,
            share_public=key2,
            round_public=key,
            seed_commitment=key2,
        ),
        SeedRequest(round_id=RID, recipient=3, entries=(SeedEntry(1, key), SeedEntry(3, key2))),
        SeedReveal(round_id=RID, sender=3, reveal=key),
        KeyBroadcast(
            round_id=RID,
            recipient=3,
            peers=(PeerKeys(1, key, key2, sig, key, key2),),
            reveals=(key, key2),
        ),
        AdvertiseKeys(round_id=RID, sender=3, mask_public=key, share_public=key2),
        KeyBroadcast(
            round_id=RID, recipient=3, peers=(PeerKeys(1, key, key2, sig), PeerKeys(2, key2, key))
        ),
        ShareKeys(
            round_id=RID,
            sender=3,
            shares=(EncryptedShare(1, b"abc"), EncryptedShare(2, b"")),
            commitment=key,
        ),
        ShareForward(round_id=RID, recipient=3, shares=(EncryptedShare(1, b"xyz" * 40),)),
        MaskedInput(
            round_id=RID,
            sender=3,
            bits=32,
            words=rng.integers(0, 2**32, 17, dtype=np.uint64).astype(np.uint32),
        ),
        MaskedInput(
            round_id=RID,
            sender=3,
            bits=20,
            words=rng.integers(0, 2**20, 5, dtype=np.uint64).astype(np.uint32),
        ),
        MaskedInput(
            round_id=RID, sender=3, bits=62, words=rng.integers(0, 2**62, 9, dtype=np.uint64)
        ),
        MaskedInput(
            round_id=RID, sender=3, bits=64, words=np.array([2**64 - 1, 0], dtype=np.uint64)
        ),
        ConsistencyRequest(round_id=RID, recipient=3, survivors=(1, 3, 2**63 - 1)),
        ConsistencySignature(round_id=RID, sender=3, signature=sig),
        UnmaskRequest(
            round_id=RID,
            recipient=3,
            survivors=(1, 3),
            dropped=(2,),
            signatures=(SurvivorSignature(1, sig),),
        ),
        UnmaskRequest(round_id=0, recipient=3, survivors=(), dropped=()),
        UnmaskRequest(
            round_id=RID,
            recipient=3,
            survivors=(1, 3),
            dropped=(),
            signatures=(SurvivorSignature(1, sig, key),),
            key_sharers=(1, 2, 3),
            attestations=(Attestation(1, sig),),
        ),
        MaskedInput(
            round_id=RID, sender=3, bits=32, words=np.arange(3, dtype=np.uint32), attestation=sig
        ),
        UnmaskResponse(
            round_id=RID,
            sender=3,
            self_mask_shares=(RevealedShare(1, b"s" * 59),),
            mask_key_shares=(RevealedShare(2, b"k" * 59), RevealedShare(4, b"")),
        ),
    ]


def _same(a: Message, b: Message) -> bool:
    if isinstance(a, MaskedInput):
        return (
            isinstance(b, MaskedInput)
            and (a.round_id, a.sender, a.bits) == (b.round_id, b.sender, b.bits)
            and a.words.dtype == b.words.dtype
            and np.array_equal(a.words, b.words)
        )
    return a == b


@pytest.mark.parametrize("message", _samples(), ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    data = encode_message(message)
    assert data[:2] == b"SA" and data[2] == WIRE_VERSION and data[3] == int(message.TYPE)
    back = decode_message(data)
    assert type(back) is type(message)
    assert _same(back, message)
    assert message.to_bytes() == data


def test_every_type_has_a_sample_and_a_stage() -> None:
    assert {m.TYPE for m in _samples()} == set(MessageType)
    for m in _samples():
        assert isinstance(m.STAGE, Stage)
        assert m.client_id == 3


def test_masked_input_is_decoded_without_copy_and_read_only() -> None:
    msg = next(m for m in _samples() if isinstance(m, MaskedInput))
    data = encode_message(msg)
    back = decode_message(data)
    assert isinstance(back, MaskedInput)
    assert not back.words.flags.writeable
    assert (
        len(data) == 28 + 4 + 4 + 1 + 4 + 4 * msg.words.size
    )  # header, attestation, rejected, bits, count, words
    with pytest.raises(ValueError):
        back.words[0] = 1


@pytest.mark.parametrize("message", _samples(), ids=lambda m: type(m).__name__)
def test_truncation_and_trailing_bytes_are_refused(message: Message) -> None:
    data = encode_message(message)
    for cut in range(len(data)):
        with pytest.raises(MessageError):
            decode_message(data[:cut])
    with pytest.raises(MessageError):
        decode_message(data + b"\x00")


def test_header_checks() -> None:
    data = encode_message(_samples()[0])
    with pytest.raises(MessageError, match="magic"):
        decode_message(b"XY" + data[2:])
    with pytest.raises(MessageError, match="version"):
        decode_message(data[:2] + bytes([WIRE_VERSION + 1]) + data[3:])
    with pytest.raises(MessageError, match="unknown message type"):
        decode_message(data[:3] + bytes([99]) + data[4:])
    with pytest.raises(MessageError, match="exceeds the limit"):
        decode_message(data, max_bytes=len(data) - 1)
    with pytest.raises(MessageError):
        decode_message("not bytes")  # type: ignore[arg-type]


def test_direction_is_checked_on_decode() -> None:
    # a RoundStart "from" a client (sender != 0) is malformed
    data = bytearray(encode_message(_samples()[0]))
    struct.pack_into(">Q", data, 12, 5)
    with pytest.raises(MessageError):
        decode_message(bytes(data))


def test_oversized_list_count_is_refused_before_allocation() -> None:
    data = bytearray(encode_message(_samples()[0]))
    struct.pack_into(">I", data, 28, 2**31)
    with pytest.raises(MessageError):
        decode_message(bytes(data))


def test_field_checks_on_construction() -> None:
    key = bytes(32)
    with pytest.raises(MessageError):
        RoundStart(round_id=-1, recipient=3, neighbours=())
    with pytest.raises(MessageError):
        RoundStart(round_id=1, recipient=0, neighbours=())
    with pytest.raises(MessageError):
        RoundStart(round_id=1, recipient=3, neighbours=(0,))
    with pytest.raises(MessageError):
        RoundStart(round_id=1, recipient=3, neighbours=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(MessageError):
        AdvertiseKeys(round_id=1, sender=3, mask_public=key[:31], share_public=key)
    with pytest.raises(MessageError):
        AdvertiseKeys(round_id=1, sender=3, mask_public=key, share_public=key, signature=b"x" * 10)
    with pytest.raises(MessageError):
        AdvertiseKeys(round_id=1, sender=True, mask_public=key, share_public=key)  # type: ignore[arg-type]
    with pytest.raises(MessageError):
        EncryptedShare(1, b"x" * 5000)
    with pytest.raises(MessageError):
        ShareKeys(round_id=1, sender=3, shares=(("a", b""),), commitment=key)  # type: ignore[arg-type]
    with pytest.raises(MessageError):
        MaskedInput(round_id=1, sender=3, bits=20, words=np.array([2**20], dtype=np.uint32))
    with pytest.raises(MessageError):
        MaskedInput(round_id=1, sender=3, bits=40, words=np.array([1], dtype=np.uint32))
    with pytest.raises(MessageError):
        MaskedInput(round_id=1, sender=3, bits=16, words=np.zeros((2, 2), dtype=np.uint32))
    with pytest.raises(MessageError):
        ConsistencySignature(round_id=1, sender=3, signature=b"")


def test_messages_are_frozen() -> None:
    msg = _samples()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.round_id = 5  # type: ignore[misc]


def test_masked_input_from_writeable_array_is_frozen_view() -> None:
    words = np.arange(4, dtype=np.uint32)
    msg = MaskedInput(round_id=1, sender=2, bits=32, words=words)
    assert not msg.words.flags.writeable
    assert words.flags.writeable  # the caller's array is left alone


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_message_error(data: bytes) -> None:
    try:
        decode_message(b"SA" + bytes([WIRE_VERSION]) + data)
    except MessageError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=len(_samples()) - 1), st.data())
def test_single_byte_corruptions_raise_only_message_error(index: int, data: st.DataObject) -> None:
    encoded = bytearray(encode_message(_samples()[index]))
    pos = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        decode_message(bytes(encoded))
    except MessageError:
        pass
