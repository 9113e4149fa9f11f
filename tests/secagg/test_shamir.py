from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import InvalidParameterError, ShareError, ThresholdNotMetError
from secagg.primitives.shamir import (
    PRIME,
    SHARE_BYTES,
    Share,
    lagrange_coefficients_at_zero,
    reconstruct,
    reconstruct_many,
    split,
    split_with_coefficients,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "shamir.json").read_text())


def test_prime_is_the_smallest_above_2_256() -> None:
    import gmpy2

    assert gmpy2.is_prime(PRIME, 64)
    assert all(not gmpy2.is_prime((1 << 256) + k, 64) for k in range(1, 297, 2))


@pytest.mark.parametrize("vec", VECTORS)
def test_known_answer_shares(vec: dict) -> None:
    secret = bytes.fromhex(vec["secret"])
    indices = [int(i) for i in vec["indices"]]
    shares = split_with_coefficients(
        secret, [int(c) for c in vec["coefficients"]], indices=indices, sharing_id=bytes(16)
    )
    assert [s.value for s in shares] == [int(v) for v in vec["values"]]
    assert reconstruct(shares) == secret


@given(
    t=st.integers(min_value=1, max_value=8),
    extra=st.integers(min_value=0, max_value=5),
    secret=st.binary(min_size=32, max_size=32),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_any_t_shares_reconstruct(t: int, extra: int, secret: bytes, data: st.DataObject) -> None:
    n = t + extra
    indices = data.draw(st.lists(st.integers(1, 2**64 - 1), min_size=n, max_size=n, unique=True))
    shares = split(secret, threshold=t, indices=indices)
    subset = data.draw(st.permutations(shares)).copy()[:t]
    assert reconstruct(subset) == secret
    assert reconstruct(shares) == secret  # all shares, extra ones verified


@given(t=st.integers(min_value=2, max_value=6), data=st.data())
@settings(max_examples=40, deadline=None)
def test_t_minus_one_shares_are_consistent_with_every_secret(t: int, data: st.DataObject) -> None:
    """For any candidate secret, a degree-(t-1) polynomial passes through it and the t-1 shares."""
    shares = split(os.urandom(32), threshold=t, indices=list(range(1, t + 1)))[: t - 1]
    candidate = data.draw(st.binary(min_size=32, max_size=32))
    # the point (0, candidate) plus the t-1 shares determine a polynomial; its value at 0 is
    # candidate
    xs = [0] + [s.index for s in shares]
    ys = [int.from_bytes(candidate, "big")] + [s.value for s in shares]

    def at(x: int) -> int:
        total = 0
        for j, (xj, yj) in enumerate(zip(xs, ys)):
            num, den = 1, 1
            for m, xm in enumerate(xs):
                if m != j:
                    num = num * (x - xm) % PRIME
                    den = den * (xj - xm) % PRIME
            total += yj * num * pow(den, -1, PRIME)
        return total % PRIME

    completed = shares + [Share(shares[0].sharing_id, t, 10_000, at(10_000))]
    assert reconstruct(completed) == candidate


def test_reconstruct_many_matches_and_caches() -> None:
    secrets_ = [os.urandom(32) for _ in range(50)]
    groups = [split(s, threshold=5, indices=list(range(1, 9))) for s in secrets_]
    lagrange_coefficients_at_zero.cache_clear()
    got = reconstruct_many([g[2:] for g in groups])
    assert got == secrets_
    info = lagrange_coefficients_at_zero.cache_info()
    assert info.misses == 1 and info.hits == 49


def test_too_few_shares() -> None:
    shares = split(os.urandom(32), threshold=3, indices=[1, 2, 3])
    with pytest.raises(ThresholdNotMetError):
        reconstruct(shares[:2])
    with pytest.raises(ThresholdNotMetError):
        reconstruct([])


def test_duplicates_and_mixed_sharings() -> None:
    a = split(os.urandom(32), threshold=2, indices=[1, 2, 3])
    b = split(os.urandom(32), threshold=2, indices=[1, 2, 3])
    with pytest.raises(ShareError):
        reconstruct([a[0], a[0]])
    with pytest.raises(ShareError):
        reconstruct([a[0], b[1]])
    with pytest.raises(ShareError):
        reconstruct_many([[a[0], b[1]]])


def test_corrupted_extra_share_is_detected() -> None:
    shares = split(os.urandom(32), threshold=3, indices=[1, 2, 3, 4])
    bad = Share(shares[3].sharing_id, 3, 4, (shares[3].value + 1) % PRIME)
    with pytest.raises(ShareError):
        reconstruct(shares[:3] + [bad])


def test_wire_format_is_strict() -> None:
    share = split(secrets.token_bytes(32), threshold=2, indices=[7, 9])[0]
    raw = share.to_bytes()
    assert len(raw) == SHARE_BYTES and Share.from_bytes(raw) == share
    with pytest.raises(ShareError):
        Share.from_bytes(raw[:-1])
    with pytest.raises(ShareError):
        Share.from_bytes(raw[:16] + bytes(10) + raw[26:])  # threshold 0, index 0
    too_big = raw[:26] + (PRIME).to_bytes(33, "big")
    with pytest.raises(ShareError):
        Share.from_bytes(too_big)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0, "indices": [1, 2]},
        {"threshold": 3, "indices": [1, 2]},
        {"threshold": 2, "indices": [1, 1, 2]},
        {"threshold": 2, "indices": [0, 1]},
        {"threshold": 2, "indices": [1, 2**64]},
    ],
)
def test_bad_split_parameters(kwargs: dict) -> None:
    with pytest.raises(InvalidParameterError):
        split(bytes(32), **kwargs)
    with pytest.raises(InvalidParameterError):
        split(bytes(31), threshold=1, indices=[1])
