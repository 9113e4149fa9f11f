"""Signed sums of PRG expansions match secagg.primitives.prg.MaskPRG exactly."""

from __future__ import annotations

import os

import numpy as np
import pytest

from protocols import setup_round
from protocols.masking import client as client_module
from protocols.masking import transcripts
from protocols.masking.config import RoundConfig
from protocols.masking.masks import CHUNK_WORDS, apply_masks, reduce_words, ring_words
from secagg.errors import InvalidParameterError
from secagg.primitives.prg import MASK_PRG_VERSION, MaskPRG, PrgAlgorithm
from threat_models import GraphKind, ThreatModel, select_parameters


@pytest.mark.parametrize("bits", [1, 7, 32, 33, 62, 64])
@pytest.mark.parametrize("algorithm", list(PrgAlgorithm))
@pytest.mark.parametrize("d", [1, 1000, CHUNK_WORDS + 3, 3 * CHUNK_WORDS])
def test_matches_maskprg(bits: int, algorithm: PrgAlgorithm, d: int) -> None:
    seeds = [os.urandom(32) for _ in range(5)]
    start = np.random.default_rng(bits).integers(
        0, 2**bits if bits < 64 else 2**63, d, dtype=np.uint64
    )
    acc = start.copy()
    apply_masks(acc, add=seeds[:3], subtract=seeds[3:], algorithm=algorithm, bits=bits)
    reduce_words(acc, bits)
    ref = start.copy()
    for s in seeds[:3]:
        MaskPRG(s, bits, algorithm=algorithm).add_into(ref)
    for s in seeds[3:]:
        MaskPRG(s, bits, algorithm=algorithm).add_into(ref, subtract=True)
    assert np.array_equal(acc, ref)
    if bits <= 32:  # the ring's own word: the same sum without a uint64 in sight
        narrow = start.astype(np.uint32)
        apply_masks(narrow, add=seeds[:3], subtract=seeds[3:], algorithm=algorithm)
        reduce_words(narrow, bits)
        assert narrow.dtype == np.uint32
        assert np.array_equal(narrow.astype(np.uint64), ref)


def test_masks_cancel_and_nothing_to_do() -> None:
    seed = os.urandom(32)
    acc = np.arange(100, dtype=np.uint64)
    apply_masks(acc, add=[seed], subtract=[seed], bits=64)
    assert np.array_equal(acc, np.arange(100, dtype=np.uint64))
    apply_masks(acc, bits=64)
    assert np.array_equal(acc, np.arange(100, dtype=np.uint64))


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidParameterError):  # a uint32 accumulator cannot hold Z_(2^33)
        apply_masks(np.zeros(4, dtype=np.uint32), add=[bytes(32)], bits=33)
    with pytest.raises(InvalidParameterError):
        apply_masks(np.zeros(4, dtype=np.int64), add=[bytes(32)], bits=32)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        apply_masks(np.zeros(4, dtype=np.uint64), add=[bytes(31)], bits=32)
    with pytest.raises(InvalidParameterError):  # a uint64 accumulator must name its ring
        apply_masks(np.zeros(4, dtype=np.uint64), add=[bytes(32)])
    ro = np.zeros(4, dtype=np.uint64)
    ro.flags.writeable = False
    with pytest.raises(InvalidParameterError):
        apply_masks(ro, add=[bytes(32)], bits=32)
    with pytest.raises(InvalidParameterError):
        reduce_words(np.zeros(2, dtype=np.uint64), 0)
    with pytest.raises(InvalidParameterError):
        reduce_words(np.zeros(2, dtype=np.uint32), 33)


@pytest.mark.parametrize("bits", [1, 8, 31, 32, 33, 63, 64])
@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
)
def test_ring_words_checks_and_copies_in_one_pass(bits: int, dtype: type) -> None:
    info = np.iinfo(dtype)
    top = min(int(info.max), (1 << bits) - 1)
    chunk = (1 << 19) // np.dtype(dtype).itemsize  # elements per check-and-copy step
    n = 3 * chunk + 5
    values = np.random.default_rng(bits).integers(0, top, n, dtype=dtype, endpoint=True)
    values[-1] = top
    out = ring_words(values, bits)
    assert out.dtype == (np.uint32 if bits <= 32 else np.uint64)
    assert np.array_equal(out.astype(np.uint64), values.astype(np.uint64))
    assert not np.shares_memory(out, values)
    if info.min < 0:
        bad = values.copy()
        bad[n - 2] = -1
        with pytest.raises(InvalidParameterError):
            ring_words(bad, bits)
    if int(info.max) >> bits:
        bad = values.copy()
        bad[2 * chunk + 7] = 1 << bits
        with pytest.raises(InvalidParameterError):
            ring_words(bad, bits)


def test_ring_words_refuses_what_is_not_an_integer_vector() -> None:
    for bad in (np.zeros(3), np.zeros((2, 2), dtype=np.uint32), np.zeros(3, dtype=bool)):
        with pytest.raises(InvalidParameterError):
            ring_words(bad, 32)


# ------------------------------------------------------------- the PRG version is agreed


def _transcripts() -> tuple[bytes, bytes]:
    return (
        transcripts.masking_set_transcript(
            client_id=3, masking_set=[1, 2], round_id=7, context=bytes(32)
        ),
        transcripts.advertise_transcript(
            client_id=3,
            mask_public=bytes(32),
            share_public=bytes(32),
            round_id=7,
            model_hash=bytes(32),
        ),
    )


def test_the_prg_version_is_in_what_is_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert transcripts.MASK_PRG_VERSION == MASK_PRG_VERSION == 2
    config = RoundConfig(
        round_id=1,
        parameters=select_parameters(5, ThreatModel(), graph=GraphKind.COMPLETE),
        bits=32,
        vector_length=4,
    )
    assert config.mask_prg_version == MASK_PRG_VERSION
    current = _transcripts()
    monkeypatch.setattr(transcripts, "MASK_PRG_VERSION", 1)
    other = _transcripts()
    assert all(a != b for a, b in zip(current, other, strict=True))


def test_a_client_on_another_prg_version_is_not_summed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its signed keys do not verify for this version: it counts as dropped, the sum is right."""
    stale = 2

    def advertise(**fields: object) -> bytes:
        if fields["client_id"] != stale:
            return signed(**fields)
        with monkeypatch.context() as m:
            m.setattr(transcripts, "MASK_PRG_VERSION", 1)
            return signed(**fields)

    signed = transcripts.advertise_transcript
    monkeypatch.setattr(client_module, "advertise_transcript", advertise)
    inputs = {c: np.full(16, c, dtype=np.uint64) for c in range(1, 7)}
    runner = setup_round(inputs, bits=32, protocol="secagg", threat_model=ThreatModel())
    while not runner.finished:
        runner.collect()
        runner.close()
    result = runner.server.result
    assert stale not in result.survivors and len(result.survivors) == 5
    expected = sum(c for c in result.survivors)
    assert np.array_equal(result.ring_sum, np.full(16, expected, dtype=np.uint64))
