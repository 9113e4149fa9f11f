"""Shamir t-of-n secret sharing of 32-byte secrets over GF(p), p = 2^256 + 297.

``p`` is the smallest prime above 2^256, so every 32-byte string is a field element and
the encoding is a bijection. A sharing of secret ``s`` with threshold ``t`` picks a
uniformly random polynomial ``f(x) = s + a_1 x + ... + a_(t-1) x^(t-1)`` (coefficients
from ``secrets``) and hands participant ``i`` the point ``(i, f(i))``. Indices are
explicit, non-zero and below 2^64 (the protocols use client ids).

Reconstruction is Lagrange interpolation at 0::

    s = sum_j  y_j * lambda_j,     lambda_j = prod_{m != j} x_m / (x_m - x_j)   (mod p)

The coefficients depend only on the *set* of indices, so :func:`reconstruct_many`
computes them once per distinct index set (cached) with a single modular inversion
(Montgomery's batch-inversion trick), then each secret costs ``t`` multiply-adds in
gmpy2. That is what makes the server's unmasking cheap: it recovers one secret per
client from shares that mostly come from the same survivors.

Each share carries a random 16-byte ``sharing_id`` and the threshold: mixing shares of
different sharings, duplicate indices and too few shares are typed errors. When more than
``t`` shares are given, the extra ones are checked against the interpolated polynomial
and any inconsistency is a :class:`~secagg.errors.ShareError` (a corrupted share is
detected, never silently used).
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import gmpy2

from secagg.errors import InvalidParameterError, ShareError, ThresholdNotMetError

__all__ = [
    "PRIME",
    "SECRET_BYTES",
    "SHARE_BYTES",
    "Share",
    "split",
    "split_with_coefficients",
    "reconstruct",
    "reconstruct_many",
    "lagrange_coefficients_at_zero",
]

PRIME = (1 << 256) + 297
SECRET_BYTES = 32
_VALUE_BYTES = 33
_ID_BYTES = 16
_HEADER = struct.Struct(">HQ")  # threshold, index
SHARE_BYTES = _ID_BYTES + _HEADER.size + _VALUE_BYTES
_P = gmpy2.mpz(PRIME)
_MAX_INDEX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Share:
    """One point ``(index, value)`` of a sharing, tagged with the sharing it belongs to.

    Attributes:
        sharing_id: 16 random bytes common to all shares of one secret.
        threshold: number of shares needed to reconstruct.
        index: the x-coordinate, in ``[1, 2^64)``.
        value: ``f(index) mod p``.
    """

    sharing_id: bytes
    threshold: int
    index: int
    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.sharing_id, bytes) or len(self.sharing_id) != _ID_BYTES:
            raise ShareError("sharing_id must be 16 bytes")
        if not isinstance(self.threshold, int) or not 1 <= self.threshold <= 0xFFFF:
            raise ShareError("threshold must be an int in [1, 65535]")
        if not isinstance(self.index, int) or not 0 < self.index <= _MAX_INDEX:
            raise ShareError("share index must be an int in [1, 2^64)")
        if not isinstance(self.value, int) or not 0 <= self.value < PRIME:
            raise ShareError("share value must be a field element")

    def to_bytes(self) -> bytes:
        """Fixed-size encoding: ``sharing_id || threshold (u16) || index (u64) || value (33 B)``."""
        return (
            self.sharing_id
            + _HEADER.pack(self.threshold, self.index)
            + self.value.to_bytes(_VALUE_BYTES, "big")
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Strict inverse of :meth:`to_bytes`; wrong sizes or out-of-range fields raise
        ShareError."""
        if not isinstance(data, (bytes, bytearray)) or len(data) != SHARE_BYTES:
            raise ShareError(f"a share is exactly {SHARE_BYTES} bytes")
        data = bytes(data)
        threshold, index = _HEADER.unpack_from(data, _ID_BYTES)
        value = int.from_bytes(data[_ID_BYTES + _HEADER.size :], "big")
        return cls(data[:_ID_BYTES], threshold, index, value)


def _check_indices(indices: Sequence[int], threshold: int) -> list[int]:
    idx = [int(i) for i in indices]
    if not isinstance(threshold, int) or threshold < 1:
        raise InvalidParameterError(f"threshold must be a positive int, got {threshold!r}")
    if len(idx) < threshold:
        raise InvalidParameterError(f"{len(idx)} participants cannot meet threshold {threshold}")
    if threshold > 0xFFFF:
        raise InvalidParameterError("threshold above 65535 is not supported")
    if len(set(idx)) != len(idx):
        raise InvalidParameterError("share indices must be distinct")
    if any(not 0 < i <= _MAX_INDEX for i in idx):
        raise InvalidParameterError("share indices must lie in [1, 2^64)")
    return idx


def _secret_to_int(secret: bytes) -> int:
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != SECRET_BYTES:
        raise InvalidParameterError(f"secrets are exactly {SECRET_BYTES} bytes")
    return int.from_bytes(secret, "big")


def _evaluate(coefficients: Sequence[gmpy2.mpz], x: int) -> int:
    acc = gmpy2.mpz(0)
    xm = gmpy2.mpz(x)
    for c in reversed(coefficients):
        acc = (acc * xm + c) % _P
    return int(acc)


def split_with_coefficients(
    secret: bytes, coefficients: Sequence[int], *, indices: Sequence[int], sharing_id: bytes
) -> list[Share]:
    """Share ``secret`` with the given higher-order coefficients ``a_1 .. a_(t-1)``.

    Hazmat: for known-answer tests only. Real sharings must use :func:`split`, which draws
    the coefficients uniformly from ``secrets``.
    """
    threshold = len(coefficients) + 1
    idx = _check_indices(indices, threshold)
    if any(not 0 <= int(c) < PRIME for c in coefficients):
        raise InvalidParameterError("coefficients must be field elements")
    poly = [gmpy2.mpz(_secret_to_int(secret))] + [gmpy2.mpz(int(c)) for c in coefficients]
    return [Share(bytes(sharing_id), threshold, i, _evaluate(poly, i)) for i in idx]


def split(secret: bytes, *, threshold: int, indices: Sequence[int]) -> list[Share]:
    """Split a 32-byte ``secret`` into ``len(indices)`` shares, any ``threshold`` of which
    reconstruct it.

    Any ``threshold - 1`` shares are independent of the secret (uniform in GF(p)).
    """
    _check_indices(indices, threshold)
    coefficients = [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return split_with_coefficients(
        secret, coefficients, indices=indices, sharing_id=secrets.token_bytes(_ID_BYTES)
    )


@lru_cache(maxsize=1024)
def lagrange_coefficients_at_zero(indices: tuple[int, ...]) -> tuple[int, ...]:
    """``lambda_j = prod_{m != j} x_m / (x_m - x_j) mod p`` for distinct non-zero ``indices``.

    One modular inversion in total (batch inversion of the denominators).
    """
    xs = [gmpy2.mpz(i) for i in indices]
    k = len(xs)
    nums: list[gmpy2.mpz] = []
    dens: list[gmpy2.mpz] = []
    for j in range(k):
        num = gmpy2.mpz(1)
        den = gmpy2.mpz(1)
        xj = xs[j]
        for m in range(k):
            if m != j:
                num = num * xs[m] % _P
                den = den * (xs[m] - xj) % _P
        nums.append(num)
        dens.append(den)
    # batch inversion: prefix products, one inverse, walk back
    prefix = [gmpy2.mpz(1)] * (k + 1)
    for j in range(k):
        prefix[j + 1] = prefix[j] * dens[j] % _P
    inv = gmpy2.invert(prefix[k], _P)
    out = [gmpy2.mpz(0)] * k
    for j in range(k - 1, -1, -1):
        out[j] = nums[j] * (inv * prefix[j] % _P) % _P
        inv = inv * dens[j] % _P
    return tuple(int(v) for v in out)


def _validate_group(shares: Sequence[Share]) -> tuple[Share, ...]:
    if not shares:
        raise ThresholdNotMetError("no shares given")
    group = tuple(shares)
    if any(not isinstance(s, Share) for s in group):
        raise ShareError("expected Share objects")
    first = group[0]
    if any(s.sharing_id != first.sharing_id or s.threshold != first.threshold for s in group):
        raise ShareError("shares come from different sharings")
    if len({s.index for s in group}) != len(group):
        raise ShareError("duplicate share indices")
    if len(group) < first.threshold:
        raise ThresholdNotMetError(f"{len(group)} shares given, {first.threshold} needed")
    return group


def _interpolate(points: Sequence[Share]) -> gmpy2.mpz:
    lambdas = lagrange_coefficients_at_zero(tuple(s.index for s in points))
    acc = gmpy2.mpz(0)
    for lam, s in zip(lambdas, points, strict=False):
        acc += gmpy2.mpz(lam) * s.value
    return acc % _P


def _check_extra(points: Sequence[Share], extra: Sequence[Share]) -> None:
    """Each extra share must lie on the polynomial through ``points``."""
    for s in extra:
        # f(x) = sum_j y_j * prod_{m != j} (x - x_m) / (x_j - x_m)
        x = gmpy2.mpz(s.index)
        acc = gmpy2.mpz(0)
        for j, pj in enumerate(points):
            num = gmpy2.mpz(1)
            den = gmpy2.mpz(1)
            for m, pm in enumerate(points):
                if m != j:
                    num = num * (x - pm.index) % _P
                    den = den * (pj.index - pm.index) % _P
            acc += pj.value * num * gmpy2.invert(den, _P)
        if acc % _P != s.value:
            raise ShareError("inconsistent shares: at least one share is corrupted")


def _to_secret(value: gmpy2.mpz) -> bytes:
    if value >= 1 << (8 * SECRET_BYTES):
        raise ShareError("reconstructed value is not a 32-byte secret: shares are corrupted")
    return int(value).to_bytes(SECRET_BYTES, "big")


def reconstruct(shares: Sequence[Share], *, verify_extra: bool = True) -> bytes:
    """Recover the secret from at least ``threshold`` shares of one sharing.

    Args:
        shares: shares of a single sharing, distinct indices.
        verify_extra: check that shares beyond the threshold are consistent.

    Raises:
        ThresholdNotMetError: fewer than ``threshold`` shares.
        ShareError: duplicates, mixed sharings, or inconsistent extra shares.
    """
    group = _validate_group(shares)
    t = group[0].threshold
    points = sorted(group, key=lambda s: s.index)
    if verify_extra and len(points) > t:
        _check_extra(points[:t], points[t:])
    return _to_secret(_interpolate(points[:t]))


def reconstruct_many(
    groups: Sequence[Sequence[Share]], *, verify_extra: bool = False
) -> list[bytes]:
    """Reconstruct many secrets at once; Lagrange coefficients are shared per index set.

    Each group uses its ``threshold`` lowest-index shares (so groups drawn from the same
    survivors share one coefficient vector). Validation is as in :func:`reconstruct`;
    ``verify_extra`` is off by default here because it costs O(t^2) per extra share.
    """
    out: list[bytes] = []
    for shares in groups:
        group = _validate_group(shares)
        t = group[0].threshold
        points = sorted(group, key=lambda s: s.index)
        if verify_extra and len(points) > t:
            _check_extra(points[:t], points[t:])
        out.append(_to_secret(_interpolate(points[:t])))
    return out
