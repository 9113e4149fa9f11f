from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import CapacityError, EncodingError, InvalidParameterError
from secagg.primitives.encoding import FixedPointEncoder, from_ring_centered, ring_mask, to_ring


@given(
    bits=st.integers(min_value=8, max_value=62),
    n=st.integers(min_value=1, max_value=40),
    bound=st.floats(min_value=1e-3, max_value=1e3),
    d=st.integers(min_value=1, max_value=50),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
@settings(max_examples=150, deadline=None)
def test_decoded_sum_within_n_quanta(bits: int, n: int, bound: float, d: int, seed: int) -> None:
    if n > (1 << bits) - 1:
        return
    enc = FixedPointEncoder.symmetric(bound, bits=bits, max_clients=n)
    rng = np.random.default_rng(seed)
    xs = rng.uniform(-bound, bound, size=(n, d))
    xs[0, 0] = bound  # hit both ends of the range
    xs[-1, -1] = -bound
    acc = np.zeros(d, dtype=np.uint64)
    for x in xs:
        acc = (acc + enc.encode(x, rng=rng)) & ring_mask(bits)
    decoded = enc.decode_sum(acc, n)
    err = np.abs(decoded - xs.sum(axis=0))
    # n quanta from rounding, plus float64 rounding of a result of magnitude <= n * bound
    tol = n * enc.quantum + 8 * np.finfo(np.float64).eps * n * bound
    assert float(err.max()) <= tol


def test_stochastic_rounding_is_unbiased() -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=8, max_clients=1)
    x = np.full(200_000, 0.3 * enc.quantum + 0.1)
    rng = np.random.default_rng(1)
    decoded = enc.decode_sum(enc.encode(x, rng=rng), 1)
    assert abs(decoded.mean() - x[0]) < 0.01 * enc.quantum
    levels = np.unique(decoded)
    assert len(levels) == 2  # the two neighbouring levels only
    assert levels[1] - levels[0] == pytest.approx(enc.quantum)
    assert levels[0] <= x[0] <= levels[1]


def test_capacity_boundary_does_not_wrap() -> None:
    bits, n = 16, 7
    enc = FixedPointEncoder.symmetric(2.0, bits=bits, max_clients=n)
    assert n * enc.levels <= (1 << bits) - 1
    top = np.full(3, 2.0)
    acc = np.zeros(3, dtype=np.uint64)
    for _ in range(n):
        acc = (acc + enc.encode(top)) & ring_mask(bits)
    np.testing.assert_allclose(enc.decode_sum(acc, n), np.full(3, 2.0 * n))
    bottom = np.full(3, -2.0)
    acc = np.zeros(3, dtype=np.uint64)
    for _ in range(n):
        acc = (acc + enc.encode(bottom)) & ring_mask(bits)
    np.testing.assert_allclose(enc.decode_sum(acc, n), np.full(3, -2.0 * n))
    with pytest.raises(CapacityError):
        enc.decode_sum(acc, n + 1)


def test_config_that_could_wrap_is_refused() -> None:
    with pytest.raises(CapacityError):
        FixedPointEncoder.symmetric(1.0, bits=4, max_clients=16)
    with pytest.raises(CapacityError):
        FixedPointEncoder.symmetric(1.0, bits=16, max_clients=4, levels=(1 << 16) // 4 + 1)
    ok = FixedPointEncoder.symmetric(1.0, bits=16, max_clients=4, levels=(1 << 16) // 4 - 1)
    assert ok.levels == (1 << 16) // 4 - 1


@pytest.mark.parametrize("bad", [[np.nan], [np.inf], [-np.inf], [1.0000001], [-1.5]])
def test_bad_input_is_a_typed_error(bad: list[float]) -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=32, max_clients=10)
    with pytest.raises(EncodingError):
        enc.encode(np.array(bad))


def test_explicit_clip_opt_in() -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=32, max_clients=10)
    out = enc.decode(enc.encode(np.array([5.0, -5.0]), clip=True))
    np.testing.assert_allclose(out, [1.0, -1.0])
    with pytest.raises(EncodingError):
        enc.encode(np.zeros((2, 2)))


def test_not_a_sum_is_detected() -> None:
    enc = FixedPointEncoder.symmetric(1.0, bits=16, max_clients=4)
    with pytest.raises(EncodingError):
        enc.decode_sum(np.array([enc.levels + 1], dtype=np.uint64), 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bits": 0, "lo": -1, "hi": 1, "max_clients": 1},
        {"bits": 63, "lo": -1, "hi": 1, "max_clients": 1},
        {"bits": 16, "lo": 1, "hi": 1, "max_clients": 1},
        {"bits": 16, "lo": -math.inf, "hi": 1, "max_clients": 1},
        {"bits": 16, "lo": -1, "hi": 1, "max_clients": 0},
    ],
)
def test_bad_configuration(kwargs: dict) -> None:
    with pytest.raises(InvalidParameterError):
        FixedPointEncoder(**kwargs)


@given(
    bits=st.integers(min_value=2, max_value=62),
    values=st.lists(st.integers(min_value=-(2**61), max_value=2**61 - 1), min_size=1, max_size=20),
)
@settings(max_examples=100, deadline=None)
def test_signed_ring_round_trip(bits: int, values: list[int]) -> None:
    half = 1 << (bits - 1)
    vals = np.array([v % (2 * half) - half for v in values], dtype=np.int64)
    ring = to_ring(vals, bits)
    assert int(ring.max()) < 1 << bits
    np.testing.assert_array_equal(from_ring_centered(ring, bits), vals)


def test_signed_ring_wraps_like_integers_mod_2b() -> None:
    bits = 62
    a = to_ring(np.array([2**61 - 1, -(2**61)]), bits)
    b = to_ring(np.array([1, -1]), bits)
    s = (a + b) & ring_mask(bits)
    np.testing.assert_array_equal(from_ring_centered(s, bits), [-(2**61), 2**61 - 1])
    with pytest.raises(EncodingError):
        to_ring(np.array([2**61]), bits)
    with pytest.raises(EncodingError):
        to_ring(np.array([0.5]), bits)
