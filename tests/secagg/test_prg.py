from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from secagg.errors import InvalidParameterError
from secagg.primitives.prg import (
    MASK_PRG_VERSION,
    MaskPRG,
    PrgAlgorithm,
    expand_mask,
    keystream,
    secure_uint64,
    word_bytes,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "prg.json").read_text())


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: f"{v['algorithm']}-{v['bits']}")
def test_known_answers(vec: dict) -> None:
    prg = MaskPRG(bytes.fromhex(vec["seed"]), vec["bits"], algorithm=PrgAlgorithm(vec["algorithm"]))
    assert prg.expand(8).tolist() == vec["first"]
    off = vec["offset"]
    assert prg.block(off, off + 8).tolist() == vec["at_offset"]


@pytest.mark.parametrize("algorithm", list(PrgAlgorithm))
@pytest.mark.parametrize("bits", [1, 17, 32, 33, 62])
def test_seekable_and_chunked_agree(algorithm: PrgAlgorithm, bits: int) -> None:
    seed = bytes(range(32))
    prg = MaskPRG(seed, bits, algorithm=algorithm)
    full = prg.expand(5000)
    assert full.dtype == np.uint64
    assert int(full.max()) < 1 << bits
    for lo, hi in [(0, 1), (1, 2), (3, 17), (999, 4321), (4999, 5000)]:
        np.testing.assert_array_equal(prg.block(lo, hi), full[lo:hi])
    acc = np.zeros(5000, dtype=np.uint64)
    prg.add_into(acc, chunk=333)
    np.testing.assert_array_equal(acc, full)
    prg.add_into(acc, subtract=True, chunk=1024)
    assert not acc.any()


def test_different_seeds_and_algorithms_differ() -> None:
    a = expand_mask(bytes(32), 64, 32)
    b = expand_mask(bytes(31) + b"\x01", 64, 32)
    c = expand_mask(bytes(32), 64, 32, algorithm=PrgAlgorithm.CHACHA20)
    assert (a != b).any() and (a != c).any()


def test_keystream_is_the_raw_material() -> None:
    seed = bytes(range(32))
    raw = np.frombuffer(keystream(seed, 8 * 100), dtype="<u8")
    np.testing.assert_array_equal(MaskPRG(seed, 62).expand(100), raw & np.uint64((1 << 62) - 1))


@given(
    n=st.integers(min_value=2, max_value=7),
    bits=st.integers(min_value=1, max_value=62),
    d=st.integers(min_value=1, max_value=300),
    data=st.data(),
)
@settings(max_examples=40, deadline=None)
def test_pairwise_masks_cancel(n: int, bits: int, d: int, data: st.DataObject) -> None:
    """sum over pairs of (+PRG(k_uv) for u < v, -PRG(k_uv) for u > v) is 0 mod 2^b."""
    keys = {
        (u, v): data.draw(st.binary(min_size=32, max_size=32))
        for u in range(n)
        for v in range(u + 1, n)
    }
    total = np.zeros(d, dtype=np.uint64)
    for u in range(n):
        for v in range(n):
            if u == v:
                continue
            prg = MaskPRG(keys[(min(u, v), max(u, v))], bits)
            prg.add_into(total, subtract=u > v)
    assert not total.any()


@pytest.mark.parametrize("bits", [8, 16, 31, 32, 40, 62])
def test_uniform_over_the_ring(bits: int) -> None:
    """Chi-square on the top 4 bits and on residues mod 7 (fixed seed: cannot flake)."""
    x = MaskPRG(b"\x5a" * 32, bits).expand(200_000)
    top = (x >> np.uint64(bits - 4)).astype(np.int64)
    counts = np.bincount(top, minlength=16)
    assert stats.chisquare(counts).pvalue > 1e-4
    # residues mod 7: expected counts follow the exact distribution of range(2^bits) mod 7
    m = 1 << bits
    expected = np.array([(m - r + 6) // 7 for r in range(7)], dtype=np.float64) / m * x.size
    res_counts = np.bincount((x % np.uint64(7)).astype(np.int64), minlength=7)
    assert stats.chisquare(res_counts, expected).pvalue > 1e-4
    # low bit balanced too
    assert abs(float((x & np.uint64(1)).mean()) - 0.5) < 0.01


def test_a_biased_generator_would_fail_the_uniformity_check() -> None:
    """The statistical check has power: modulo-reduced words are rejected."""
    raw = MaskPRG(b"\x5a" * 32, 8).expand(200_000)
    biased = raw % np.uint64(200)  # values 200..255 never appear
    counts = np.bincount((biased >> np.uint64(4)).astype(np.int64), minlength=16)
    assert stats.chisquare(counts).pvalue < 1e-6


def test_secure_uint64_reproducible_only_with_explicit_seed() -> None:
    assert secure_uint64(4, seed=bytes(32)).tolist() == secure_uint64(4, seed=bytes(32)).tolist()
    assert secure_uint64(4).tolist() != secure_uint64(4).tolist()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": b"short", "bits": 16},
        {"seed": bytes(32), "bits": 0},
        {"seed": bytes(32), "bits": 65},
        {"seed": bytes(32), "bits": 16, "nonce": b"x"},
    ],
)
def test_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(InvalidParameterError):
        MaskPRG(**kwargs)


def test_bad_windows_and_accumulators() -> None:
    prg = MaskPRG(bytes(32), 16)
    with pytest.raises(InvalidParameterError):
        prg.block(5, 4)
    with pytest.raises(InvalidParameterError):
        prg.add_into(np.zeros(4, dtype=np.int64))  # type: ignore[arg-type]


# ------------------------------------------------------------ output definition, version 2


def _reference(seed: bytes, bits: int, algorithm: PrgAlgorithm, n: int) -> np.ndarray:
    """Straight from the definition: raw keystream, little-endian words, low ``bits`` bits."""
    if algorithm is PrgAlgorithm.AES_256_CTR:
        cipher = Cipher(algorithms.AES(seed), modes.CTR(bytes(16)))
    else:
        cipher = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None)
    word = 4 if bits <= 32 else 8
    stream = cipher.encryptor().update(bytes(word * n))
    words = np.frombuffer(stream, dtype="<u4" if word == 4 else "<u8").astype(np.uint64)
    return words & np.uint64((1 << bits) - 1) if bits < 64 else words


def test_vectors_are_of_the_current_version() -> None:
    assert MASK_PRG_VERSION == 2
    assert {v["version"] for v in VECTORS} == {MASK_PRG_VERSION}
    assert {v["bits"] <= 32 for v in VECTORS} == {True, False}  # both word sizes pinned


@pytest.mark.parametrize("vec", VECTORS, ids=lambda v: f"{v['algorithm']}-{v['bits']}")
def test_vectors_follow_the_definition(vec: dict) -> None:
    seed, bits = bytes.fromhex(vec["seed"]), vec["bits"]
    ref = _reference(seed, bits, PrgAlgorithm(vec["algorithm"]), vec["offset"] + 8)
    assert ref[:8].tolist() == vec["first"]
    assert ref[vec["offset"] :].tolist() == vec["at_offset"]


@pytest.mark.parametrize("algorithm", list(PrgAlgorithm))
@pytest.mark.parametrize("bits", [1, 13, 31, 32, 33, 48, 64])
def test_four_byte_words_up_to_32_bits(algorithm: PrgAlgorithm, bits: int) -> None:
    seed = bytes(range(3, 35))
    n = 40_000  # more than one internal chunk
    ref = _reference(seed, bits, algorithm, n)
    prg = MaskPRG(seed, bits, algorithm=algorithm)
    assert prg.word_bytes == word_bytes(bits) == (4 if bits <= 32 else 8)
    words = prg.words(0, n)
    assert words.dtype == (np.uint32 if bits <= 32 else np.uint64)
    np.testing.assert_array_equal(words.astype(np.uint64), ref)
    np.testing.assert_array_equal(prg.expand(n), ref)
    # seeking to windows that start inside a cipher block
    for lo, hi in [(1, 5), (3, 4), (15, 33), (17, 1000), (n - 3, n)]:
        np.testing.assert_array_equal(prg.block(lo, hi), ref[lo:hi])
        np.testing.assert_array_equal(prg.words(lo, hi).astype(np.uint64), ref[lo:hi])
    wide = np.zeros(n - 7, dtype=np.uint64)
    prg.add_into(wide, start=7, chunk=999)
    np.testing.assert_array_equal(wide, ref[7:])
    if bits <= 32:
        narrow = np.zeros(n, dtype=np.uint32)
        prg.add_into(narrow)
        np.testing.assert_array_equal(narrow.astype(np.uint64), ref)
        prg.add_into(narrow, subtract=True, chunk=1234)
        assert not narrow.any()


def test_uint32_accumulator_only_for_narrow_rings() -> None:
    with pytest.raises(InvalidParameterError):
        MaskPRG(bytes(32), 33).add_into(np.zeros(4, dtype=np.uint32))
    with pytest.raises(InvalidParameterError):
        word_bytes(0)
