"""Signed sums of PRG expansions match secagg.primitives.prg.MaskPRG exactly."""

from __future__ import annotations

import os

import numpy as np
import pytest

from protocols.masking.masks import CHUNK_WORDS, apply_masks, reduce_words
from secagg.errors import InvalidParameterError
from secagg.primitives.prg import MaskPRG, PrgAlgorithm


@pytest.mark.parametrize("bits", [1, 7, 32, 33, 62, 64])
@pytest.mark.parametrize("algorithm", list(PrgAlgorithm))
@pytest.mark.parametrize("d", [1, 1000, CHUNK_WORDS + 3, 3 * CHUNK_WORDS])
def test_matches_maskprg(bits: int, algorithm: PrgAlgorithm, d: int) -> None:
    seeds = [os.urandom(32) for _ in range(5)]
    start = np.random.default_rng(bits).integers(
        0, 2**bits if bits < 64 else 2**63, d, dtype=np.uint64
    )
    acc = start.copy()
    apply_masks(acc, add=seeds[:3], subtract=seeds[3:], algorithm=algorithm)
    reduce_words(acc, bits)
    ref = start.copy()
    for s in seeds[:3]:
        MaskPRG(s, bits, algorithm=algorithm).add_into(ref)
    for s in seeds[3:]:
        MaskPRG(s, bits, algorithm=algorithm).add_into(ref, subtract=True)
    assert np.array_equal(acc, ref)


def test_masks_cancel_and_nothing_to_do() -> None:
    seed = os.urandom(32)
    acc = np.arange(100, dtype=np.uint64)
    apply_masks(acc, add=[seed], subtract=[seed])
    assert np.array_equal(acc, np.arange(100, dtype=np.uint64))
    apply_masks(acc)
    assert np.array_equal(acc, np.arange(100, dtype=np.uint64))


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidParameterError):
        apply_masks(np.zeros(4, dtype=np.uint32), add=[bytes(32)])  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        apply_masks(np.zeros(4, dtype=np.uint64), add=[bytes(31)])
    ro = np.zeros(4, dtype=np.uint64)
    ro.flags.writeable = False
    with pytest.raises(InvalidParameterError):
        apply_masks(ro, add=[bytes(32)])
    with pytest.raises(InvalidParameterError):
        reduce_words(np.zeros(2, dtype=np.uint64), 0)
