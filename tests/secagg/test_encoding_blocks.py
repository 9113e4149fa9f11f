"""The blocked encode and decode: unbiased, exact on levels, the same refusals as before.

``encode`` and ``decode_sum`` run block by block (``BLOCK`` elements) with in-place
operations. These tests pin what must not change: the rounding law (unbiased, exact for
values on a level), the range check (same errors, same order, wherever the offending value
sits), and the outputs of the whole-vector formulas they replace.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from secagg.errors import EncodingError
from secagg.primitives.encoding import BLOCK, FixedPointEncoder, ring_mask

# sizes around the block boundaries (equal blocks, a short tail, a single element)
SIZES = [1, 7, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 7]

# (hi - lo) * scale rounds above L for this one: the encoder must clamp to L
ROUNDS_ABOVE = {"bits": 20, "lo": -0.32769561643408407, "hi": 1.7368958163965724}


def _whole_vector_encode(
    enc: FixedPointEncoder, values: npt.ArrayLike, rng: np.random.Generator, clip: bool
) -> npt.NDArray[np.uint64]:
    """The whole-vector formulas the blocked encoder replaces (reference)."""
    x = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise EncodingError("input contains NaN or infinity")
    if clip:
        x = np.clip(x, enc.lo, enc.hi)
    elif x.size and (float(x.min()) < enc.lo or float(x.max()) > enc.hi):
        raise EncodingError(
            f"values outside [{enc.lo}, {enc.hi}] (min {float(x.min())}, max "
            f"{float(x.max())}); clip the update first or pass clip=True"
        )
    t = (x - enc.lo) * enc.scale
    base = np.floor(t)
    q = base + (rng.random(t.shape) < (t - base))
    np.clip(q, 0, enc.levels, out=q)
    return q.astype(np.uint64)


def _whole_vector_decode(enc: FixedPointEncoder, summed: npt.ArrayLike, n: int) -> object:
    s = np.asarray(summed, dtype=np.uint64) & ring_mask(enc.bits)
    if s.size and int(s.max()) > n * enc.levels:
        raise EncodingError("value exceeds n * levels: not a sum of n encodings of this encoder")
    k = enc._offset_int
    centred = s.astype(np.int64) - np.int64(n * k)
    return centred.astype(np.float64) / enc.scale + n * (enc.lo + k / enc.scale)


ENCODERS = [
    FixedPointEncoder.symmetric(1.0, bits=20, max_clients=100),
    FixedPointEncoder.symmetric(3.7, bits=62, max_clients=1),  # L = 2^53
    FixedPointEncoder(bits=32, lo=0.0, hi=3.0, max_clients=7),
    FixedPointEncoder(bits=16, lo=-2.5, hi=0.7, max_clients=3),
    FixedPointEncoder(max_clients=7, **ROUNDS_ABOVE),
]


@pytest.mark.parametrize("enc", ENCODERS, ids=lambda e: f"b{e.bits}[{e.lo:.3g},{e.hi:.3g}]")
@pytest.mark.parametrize("d", SIZES)
def test_same_words_as_the_whole_vector_formulas(enc: FixedPointEncoder, d: int) -> None:
    # the uniforms are drawn in the same order, so even the words are the same
    data = np.random.default_rng(d)
    x = data.uniform(enc.lo, enc.hi, d)
    x[: min(d, 2)] = [enc.hi, enc.lo][: min(d, 2)]
    for clip in (False, True):
        if clip:
            x[-1] = enc.hi + 1.0
        got = enc.encode(x, rng=np.random.default_rng(7), clip=clip)
        want = _whole_vector_encode(enc, x, np.random.default_rng(7), clip)
        assert got.dtype == np.uint64 and got.shape == (d,)
        np.testing.assert_array_equal(got, want)
        assert int(got.max()) <= enc.levels
        for n in (1, enc.max_clients):
            np.testing.assert_array_equal(enc.decode_sum(got, n), _whole_vector_decode(enc, got, n))


def test_rounding_is_unbiased_over_many_draws() -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=20, max_clients=100)
    d = 4 * BLOCK + 11
    for frac in (1e-4, 0.25, 0.5, 0.9, 1 - 1e-4):
        x = np.full(d, enc.lo + (1234 + frac) / enc.scale)
        t = float((x[0] - enc.lo) * enc.scale)  # what is rounded, exactly
        f = t - math.floor(t)
        q = enc.encode(x, rng=np.random.default_rng(int(frac * 1e6)))
        assert set(np.unique(q).tolist()) <= {math.floor(t), math.floor(t) + 1}
        up = float((q - np.uint64(math.floor(t))).mean())  # empirical P(round up)
        assert abs(up - f) <= 5 * math.sqrt(f * (1 - f) / d) + 1e-12
    # every coordinate with its own fraction: the mean error is ~0 in quanta
    x = np.random.default_rng(3).uniform(-1.0, 1.0, d)
    err = [
        float((enc.encode(x, rng=np.random.default_rng(s)) - (x - enc.lo) * enc.scale).mean())
        for s in range(8)
    ]
    assert abs(float(np.mean(err))) < 5 * 0.5 / math.sqrt(8 * d)


@pytest.mark.parametrize("enc", ENCODERS[:4], ids=lambda e: f"b{e.bits}")
def test_values_on_a_level_encode_exactly(enc: FixedPointEncoder) -> None:
    levels = np.random.default_rng(0).integers(0, enc.levels, 3 * BLOCK, endpoint=True)
    x = enc.lo + levels.astype(np.float64) / enc.scale
    t = (x - enc.lo) * enc.scale
    on_level = (t == np.floor(t)) & (x <= enc.hi)  # scaled offset an integer: no rounding
    assert on_level.sum() > BLOCK
    x, want = x[on_level], t[on_level].astype(np.uint64)
    for seed in range(5):
        np.testing.assert_array_equal(enc.encode(x, rng=np.random.default_rng(seed)), want)
    ends = enc.encode(np.array([enc.lo, enc.hi] * BLOCK), rng=np.random.default_rng(9))
    assert ends[0::2].tolist() == [0] * BLOCK
    top = (enc.hi - enc.lo) * enc.scale  # L, or a float next to it (L = 2^53 here: 2^53 - 1)
    if top == math.floor(top):
        assert ends[1::2].tolist() == [min(int(top), enc.levels)] * BLOCK


def test_clamps_to_the_top_level_when_the_span_rounds_above_it() -> None:
    enc = FixedPointEncoder(max_clients=7, **ROUNDS_ABOVE)
    assert (enc.hi - enc.lo) * enc.scale > enc.levels  # the case this test is about
    q = enc.encode(np.full(2 * BLOCK + 3, enc.hi), rng=np.random.default_rng(1))
    assert q.tolist() == [enc.levels] * q.size


def _late(value: float, d: int = 3 * BLOCK) -> npt.NDArray[np.float64]:
    x = np.zeros(d)
    x[-2] = value
    return x


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_in_a_late_block_is_refused(bad: float, clip: bool) -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=32, max_clients=10)
    with pytest.raises(EncodingError, match="NaN or infinity"):
        enc.encode(_late(bad), clip=clip)


def test_the_whole_vector_order_of_refusals() -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=32, max_clients=10)
    x = _late(np.nan)
    x[3] = 2.0  # out of range in the first block, NaN in the last: NaN is reported
    with pytest.raises(EncodingError, match="NaN or infinity"):
        enc.encode(x)
    x = _late(-3.0)
    x[3] = 2.0  # the message names the extremes of the whole vector
    with pytest.raises(EncodingError, match=r"min -3\.0, max 2\.0"):
        enc.encode(x)
    clipped = enc.encode(x, clip=True, rng=np.random.default_rng(0))
    assert clipped[3] == enc.levels and clipped[-2] == 0


def test_range_check_is_exact_at_the_ends() -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=32, max_clients=10)
    above = math.nextafter(1.0, 2.0)
    assert above - enc.lo == enc.hi - enc.lo  # x - lo rounds onto hi - lo: checked on x
    with pytest.raises(EncodingError):
        enc.encode(_late(above))
    with pytest.raises(EncodingError):
        enc.encode(_late(math.nextafter(-1.0, -2.0)))
    assert enc.encode(_late(1.0), rng=np.random.default_rng(0))[-2] == enc.levels
    weights = FixedPointEncoder(bits=16, lo=0.0, hi=1.0, max_clients=3)
    assert weights.encode(_late(-0.0)).tolist() == [0] * 3 * BLOCK  # -0.0 >= 0.0
    with pytest.raises(EncodingError):
        weights.encode(_late(-5e-324))  # the smallest negative is still below lo


def test_bounds_that_float64_cannot_hold_are_checked_exactly() -> None:
    enc = FixedPointEncoder(bits=62, lo=0, hi=2**60 + 1, max_clients=1)
    with pytest.raises(EncodingError):
        enc.encode(np.array([0.0, float(2**60 + 2**8)]))
    assert enc.encode(np.array([float(2**60)]), rng=np.random.default_rng(0))[0] <= enc.levels


def test_decode_reduces_a_block_only_where_it_exceeds_the_bound() -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=16, max_clients=4)
    words = enc.encode(np.random.default_rng(0).uniform(-1, 1, 3 * BLOCK))
    high = words.copy()
    high[BLOCK + 5] |= np.uint64(1 << 40)  # bits above the ring, in the second block only
    np.testing.assert_array_equal(enc.decode(high), enc.decode(words))
    bad = words.copy()
    bad[-1] = np.uint64(enc.levels + 1)
    with pytest.raises(EncodingError, match="not a sum"):
        enc.decode(bad)
    grid = words[:6].reshape(2, 3)
    assert enc.decode_sum(grid, 1).shape == (2, 3)
    np.testing.assert_array_equal(enc.decode_sum(grid, 1).ravel(), enc.decode(words[:6]))
    scalar = enc.decode_sum(words[0], 1)
    assert isinstance(scalar, np.float64) and scalar == enc.decode(words[:1])[0]
    assert enc.decode_sum(np.zeros(0, dtype=np.uint64), 2).shape == (0,)
