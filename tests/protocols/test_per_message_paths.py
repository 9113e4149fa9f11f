"""The per-message fast paths give the same bytes and refuse the same input as the general ones.

Canonical transcripts, HKDF info strings, the strict reader and the client's input path
each have a path for the well-formed value; these tests pin them to the general path.
"""

from __future__ import annotations

import enum
import random

import numpy as np
import pytest

from protocols import setup_round
from protocols.masking.codec import open_frame
from protocols.masking.messages import KeyBroadcast, decode_message, encode_message
from protocols.masking.records import PeerKeys, records_field
from protocols.masking.transcripts import (
    advertise_transcript,
    consistency_transcript,
    masking_set_transcript,
)
from secagg.errors import AuthenticationError, InvalidParameterError, MessageError
from secagg.primitives import transcript
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.keys import PROTOCOL_NAME, PROTOCOL_VERSION, Purpose, hkdf_info
from secagg.primitives.prg import MASK_PRG_VERSION
from secagg.primitives.signing import IdentityKey, verify_signature
from secagg.primitives.transcript import canonical
from threat_models import ServerClass, ThreatModel

BITS = 24


class _Label(str, enum.Enum):
    A = "a"


class _Int(int):
    pass


class _Bytes(bytes):
    pass


def _record(field: object) -> bytes:
    return transcript._encode_field(field)


_POOL: list[object] = [
    0,
    1,
    (1 << 64) - 1,
    1 << 64,
    -1,
    True,
    b"",
    b"abc",
    bytearray(b"x"),
    memoryview(b"yz"),
    "",
    "héllo",
    _Label.A,
    _Int(5),
    _Bytes(b"q"),
    (1, 2, 3),
    [4, 5],
    (),
    (1 << 64,),
    (-1,),
    (True, 2),
    np.uint64(3),
    (np.uint64(7), 2),
    1.5,
    None,
]


def _outcome(fn: object, fields: list[object]) -> tuple[str, object]:
    try:
        return "ok", fn(*fields)  # type: ignore[operator]
    except InvalidParameterError as exc:
        return "error", str(exc)


def test_canonical_equals_the_general_encoding_of_each_field() -> None:
    rng = random.Random(0)
    for _ in range(3000):
        fields = [rng.choice(_POOL) for _ in range(rng.randint(0, 6))]
        general = _outcome(lambda *fs: b"".join(_record(f) for f in fs), fields)
        assert _outcome(canonical, fields) == general, fields


def test_canonical_concatenates() -> None:
    assert canonical("a", 1, b"x") + canonical((2, 3)) == canonical("a", 1, b"x", (2, 3))


@pytest.mark.parametrize("purpose", list(Purpose))
def test_hkdf_info_fast_path_is_the_canonical_layout(purpose: Purpose) -> None:
    for rid, a, b in [(0, 1, 2), (7, 9, 3), ((1 << 64) - 1, (1 << 63) - 1, 1)]:
        lo, hi = sorted((a, b))
        expected = canonical(PROTOCOL_NAME, PROTOCOL_VERSION, purpose.value, rid, lo, hi)
        assert hkdf_info(purpose, round_id=rid, id_a=a, id_b=b) == expected
        # the general path (a plain string purpose, an int subclass) agrees
        assert hkdf_info(purpose.value, round_id=rid, id_a=_Int(a), id_b=b) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"round_id": -1, "id_a": 1, "id_b": 2},
        {"round_id": 1 << 64, "id_a": 1, "id_b": 2},
        {"round_id": 0, "id_a": 0, "id_b": 2},
        {"round_id": 0, "id_a": 1 << 63, "id_b": 2},
        {"round_id": 0, "id_a": 3, "id_b": 3},
        {"round_id": 0, "id_a": True, "id_b": 2},
        {"round_id": 0.0, "id_a": 1, "id_b": 2},
    ],
)
def test_hkdf_info_refuses_what_it_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        hkdf_info(Purpose.MASK_SEED, **kwargs)  # type: ignore[arg-type]


def _broadcast() -> KeyBroadcast:
    peers = tuple(
        PeerKeys(v, bytes([v]) * 32, bytes([v + 1]) * 32, bytes([v]) * 64, b"", b"")
        for v in (2, 3, 5)
    )
    return KeyBroadcast(round_id=4, recipient=1, peers=peers)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_reader_gives_plain_bytes_for_every_input_type(kind: type) -> None:
    message = _broadcast()
    decoded = decode_message(kind(encode_message(message)))
    assert decoded == message
    for p in decoded.peers:  # type: ignore[attr-defined]
        assert type(p.mask_public) is bytes and type(p.signature) is bytes


def test_reader_refuses_every_truncation() -> None:
    data = encode_message(_broadcast())
    for cut in range(len(data)):
        with pytest.raises(MessageError):
            decode_message(data[:cut])
    _, reader = open_frame(data)
    with pytest.raises(MessageError):
        reader.fixed(len(data))


def test_records_field_accepts_subclasses_and_refuses_other_types() -> None:
    peer = _broadcast().peers[0]
    assert records_field("peers", (peer,), PeerKeys) == (peer,)
    with pytest.raises(MessageError):
        records_field("peers", (peer, "x"), PeerKeys)
    with pytest.raises(MessageError):
        records_field("peers", [peer], PeerKeys)


def test_encoder_writes_uint32_words_directly() -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=32, max_clients=10)
    x = np.random.default_rng(0).uniform(-1, 1, 50_000)
    x[:3] = [-1.0, 1.0, 0.0]
    wide = enc.encode(x, rng=np.random.default_rng(1))
    narrow = enc.encode(x, rng=np.random.default_rng(1), dtype=np.uint32)
    assert wide.dtype == np.uint64 and narrow.dtype == np.uint32
    assert np.array_equal(wide, narrow)
    assert enc.encode([], dtype=np.uint32).dtype == np.uint32
    with pytest.raises(InvalidParameterError):
        FixedPointEncoder.symmetric(1.0, bits=40, max_clients=10).encode(x, dtype=np.uint32)
    with pytest.raises(InvalidParameterError):
        enc.encode(x, dtype=np.int64)  # type: ignore[call-overload]


def test_set_input_copies_the_callers_array() -> None:
    tm = ThreatModel(server=ServerClass.CURIOUS, colluding_fraction=0.0)
    rng = np.random.default_rng(3)
    inputs = {cid: rng.integers(0, 2**BITS // 8, 40, dtype=np.uint64) for cid in range(1, 6)}
    runner = setup_round(inputs, bits=BITS, protocol="secagg", threat_model=tm)
    mine = inputs[1].astype(np.uint32)
    runner.clients[1].set_input(mine)
    with pytest.raises(InvalidParameterError):
        runner.clients[2].set_input(np.full(40, 2**BITS, dtype=np.uint32))
    mine[:] = 12345  # after set_input: must not reach the masked input
    result = runner.run()
    expected = np.sum([inputs[c] for c in result.survivors], axis=0) % (2**BITS)
    assert np.array_equal(result.ring_sum, expected)


def _general_advertise(**kw: object) -> bytes:
    fields: list[object] = [
        PROTOCOL_NAME,
        PROTOCOL_VERSION,
        "advertise-keys",
        kw["client_id"],
        kw["mask_public"],
        kw["share_public"],
        "mask-prg",
        MASK_PRG_VERSION,
    ]
    for label in ("round", "model", "cohort", "commitment"):
        value = kw[{"round": "round_id", "model": "model_hash"}.get(label, label)]
        if value is not None:
            fields += [label, value]
    return canonical(*fields)  # type: ignore[arg-type]


def test_transcripts_share_nothing_across_rounds_or_peers() -> None:
    seen = set()
    for round_id in (None, 0, 1):
        for model in (None, b"m" * 32, b"n" * 32):
            for cid in (1, 2):
                kw: dict[str, object] = {
                    "client_id": cid,
                    "mask_public": bytes([cid]) * 32,
                    "share_public": b"s" * 32,
                    "round_id": round_id,
                    "model_hash": model,
                    "cohort": b"c" * 32,
                    "commitment": None if cid == 1 else b"k" * 32,
                }
                out = advertise_transcript(**kw)  # type: ignore[arg-type]
                assert out == _general_advertise(**kw)
                seen.add(out)
                ms = masking_set_transcript(
                    client_id=cid, masking_set=[3, 2], round_id=round_id, context=model
                )
                assert ms == canonical(
                    PROTOCOL_NAME, PROTOCOL_VERSION, "masking-set", cid, "mask-prg",
                    MASK_PRG_VERSION,
                    *(["round", round_id] if round_id is not None else []),
                    *(["context", model] if model is not None else []),
                    (2, 3),
                )  # fmt: skip
                seen.add(ms)
    assert len(seen) == 2 * 3 * 3 * 2
    # values a round never holds are refused as before, not served from the cache
    with pytest.raises(InvalidParameterError):
        consistency_transcript(survivors=(1, 2), round_id=True, context=None)  # type: ignore[arg-type]
    assert consistency_transcript(
        survivors=(1,),
        round_id=1,
        context=bytearray(b"x"),  # type: ignore[arg-type]
    ) == consistency_transcript(survivors=(1,), round_id=1, context=b"x")


def test_cached_public_keys_still_refuse_bad_signatures() -> None:
    key = IdentityKey.generate()
    message = b"transcript"
    signature = key.sign(message)
    for _ in range(2):  # the second time from the cache
        verify_signature(key.public_bytes, signature, message)
        with pytest.raises(AuthenticationError):
            verify_signature(key.public_bytes, signature, message + b"x")
        with pytest.raises(AuthenticationError):
            verify_signature(IdentityKey.generate().public_bytes, signature, message)
