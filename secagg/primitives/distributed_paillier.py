"""Distributed generation of a threshold Paillier key: the arithmetic (no dealer, no messages).

The decryption committee of ``l >= 3`` parties generates the modulus ``N = p q`` and Shamir
shares of a decryption exponent without anyone learning ``p``, ``q``, ``phi = (p-1)(q-1)`` or
the exponent. The parties and their messages are in :mod:`protocols.paillier.keygen`; this
module holds what one party computes. Adversary: **semi-honest parties with an honest
majority** (``floor((l-1)/2)`` of them may collude and pool their views); what a malicious
member could do is said at each step.

Steps, and the paper each follows:

1. *Candidates* (Boneh--Franklin, CRYPTO 1997 / JACM 2001, section 3). Party ``i`` draws
   additive shares ``p_i``, ``q_i``. With ``L = 4 prod_(odd primes r <= l) r``, party 1's are
   ``c mod L`` and carry the public offset ``3 * 2^(|N|/2 - 2)``, the others' are ``0 mod L``,
   where ``c = 3 mod 4`` and ``c = 2 mod r``: so ``p = sum p_i = 3 mod 4`` (Boneh--Franklin's
   condition), ``p`` and ``p - 1`` have no odd prime factor ``r <= l`` (the primes that Shamir
   sharing over ``Z_r`` cannot handle with ``l`` parties; this extends Boneh--Franklin's
   public ``3 mod 4`` to a few more public residues, about 7 bits of each prime for
   ``l <= 10``), ``p`` has its top two bits set and ``N`` exactly ``key_bits`` bits. The random
   parts are short enough that the sum never carries into the offset.
2. *Distributed sieving of N*, in small rings. For moduli ``M_j`` (products of the primes in
   ``(l, sieve_limit]``, each below ``2^31``) the parties run BGW (Ben-Or, Goldwasser,
   Wigderson 1988; degree ``k = floor((l-1)/2)``) on ``p_i mod M_j``, ``q_i mod M_j``: each
   Shamir-shares its residues over ``Z_(M_j)`` (every prime factor exceeds ``l``, so Shamir
   works as over a field) together with a random degree-``2k`` sharing of zero; every party
   multiplies the two sums point-wise, adds the zero sharing and publishes the point; any
   ``2k + 1`` points give ``N mod M_j`` and nothing else. A candidate with
   ``gcd(N mod M_j, M_j) != 1`` is dropped. This is public trial division of ``N`` (``N`` is
   public once accepted, so its residues reveal nothing about an accepted candidate, and a
   dropped candidate is never used), done on 31-bit numbers for a whole batch of candidates
   at once (numpy), before any full-size arithmetic.
3. *The modulus* (Boneh--Franklin with BGW): the same protocol over the prime field
   ``GF(P)``, ``P`` the first prime above ``2^key_bits`` (so ``N < P`` is recovered exactly),
   reveals ``N`` for the sieve's survivors; ``N`` must then have no prime factor up to
   ``trial_division_limit`` (public trial division).
4. *Biprimality* (Boneh--Franklin, section 4): for public bases ``g`` with Jacobi symbol
   ``(g / N) = 1`` derived by hashing the transcript, party 1 publishes
   ``g^((N - p_1 - q_1 + 1) / 4)``, the others ``g^((p_i + q_i) / 4)``; ``N`` passes when
   ``v_1 / prod v_i = g^(phi / 4) = +-1 mod N`` for every base. One base screens every
   candidate, ``biprimality_rounds - 1`` more confirm the first one passing. Together with
   ``gcd(N, p + q - 1) = gcd(N, phi) = 1``, which step 5 checks, a non-biprime passes each
   base with probability at most 1/2 (Boneh--Franklin's analysis of the test), so at most
   ``2^-biprimality_rounds``. The published values hide ``p_i + q_i`` only up to a discrete
   logarithm modulo ``N`` (as in Boneh--Franklin).
5. *The decryption exponent* (the Paillier variant of Boneh--Franklin's exponent step, in
   the manner of Nishide--Sakurai 2010 and Hazay--Mikkelsen--Rabin--Toft 2012: a masked
   multiple of ``phi`` is revealed and inverted modulo ``N``; here the product is computed
   by BGW *over the integers*, so that its shares add up exactly): ``phi`` is additively shared
   (``phi_1 = N - p_1 - q_1 + 1``,
   ``phi_i = -p_i - q_i``); each party draws ``beta_i`` of ``|N| + 128`` bits and Shamir-shares
   ``phi_i`` and ``beta_i`` with integer coefficients (degree ``k``). The first ``2k + 1``
   parties hold points of a degree-``2k`` integer polynomial whose value at 0 is
   ``phi * beta``; with the integer Lagrange coefficients ``lambda_j = Delta prod m/(m - j)``
   (``Delta = l!``) their values ``a_j = lambda_j Phi(j) B(j)`` are additive shares of
   ``Delta phi beta``. These ``a_j`` are points of the product polynomial, and published
   as they are they would reveal that polynomial modulo ``N`` (all its coefficients, not
   only ``phi beta``), so first they are re-randomised by a pairwise sharing of zero
   (each party sends every other one a random ``z`` of ``|a_j| + 128`` bits with its
   exponent shares; ``a'_j = a_j + sum z_in - sum z_out``, still summing to
   ``Delta phi beta``): the published values are then a statistically uniform additive
   sharing of their sum, for any coalition of fewer than ``l - 1`` parties. Everyone
   publishes ``a'_j + N R_j`` (``R_j`` masks ``a'_j`` with 128 bits to spare), so
   ``theta = Delta phi beta + N R`` is revealed; ``theta mod N`` is a
   uniform unit (``beta`` is uniform modulo ``N`` up to ``2^-128``) unless
   ``gcd(N, phi) != 1``, in which case the candidate is rejected. With ``mu = theta^-1 mod N``
   the integer ``d = Delta phi beta mu`` has ``d = 0 mod phi`` and ``d = 1 mod N``, and
   ``d_j = a'_j mu`` are additive shares of it.
6. *Threshold shares of d* (integer resharing, Rabin 1998; Damgard--Thorbek 2006): every
   party Shamir-shares its ``d_j`` (0 outside the first ``2k + 1``) with integer coefficients
   of degree ``t - 1``; party ``i``'s key share is ``s_i = sum_j F_j(i)``, an integer point of a
   polynomial with ``F(0) = d``. The dealer's combination
   (:mod:`secagg.primitives.threshold_paillier`)
   works unchanged: for any ``t`` partials ``sum lambda_i s_i = Delta d`` over the integers,
   and ``c^(4 Delta^2 d) = (1 + N)^(4 Delta^2 M)`` because ``d`` is a multiple of ``phi``,
   which the order of every n-th residue divides, and ``d = 1 mod N``.
7. *Verification keys*: ``v`` is a square modulo ``N^2`` hashed from the transcript, and
   party ``i`` publishes ``v_i = v^(Delta s_i)``; every party checks that
   ``prod_(i <= t) v_i^(lambda_i) = 1 mod N`` (the ``(1 + N)``-free part of ``v^(Delta^2 d)``
   vanishes exactly when ``d = 0 mod phi``).

Integer sharings use coefficients of ``|secret| + 128 + 2 |Delta|`` bits (statistically
hiding, distance about ``2^-128``); the key shares are therefore longer than the dealer's
(:attr:`secagg.primitives.threshold_paillier.ThresholdPublicKey.share_bits`, about 6,700 bits
against
the dealer's 4,096 at 2048 bits), which makes a partial decryption about 1.8 times slower
(``benchmarks/RESULTS.md``).

What these keys do *not* give, compared with the dealer's (see
:mod:`threat_models.paillier`):

* the primes are not safe primes, so the order of the squares of ``Z*_(N^2)`` may have
  small prime factors. The batched proof of correct partial decryption stays sound for the
  component that carries the plaintext (order ``N``, whose prime factors are huge), so a
  verified partial never shifts the decrypted sum; but a decryptor can hide an error of
  small order in the n-th-residue component, which the combination then either cancels or
  detects (the result is not ``1 mod N``), so the round aborts instead of returning a wrong
  sum: correctness holds, robustness against a malicious decryptor does not;
* there is no checked fixed encryption base (its order cannot be checked without the
  factorisation): distributed keys use textbook encryption randomness
  (:attr:`secagg.primitives.paillier.Randomness.STANDARD`);
* a malicious committee member can make key generation fail or produce a key with a wrong
  share (BGW here is the semi-honest protocol, without verifiable sharing).

All randomness comes from :mod:`secrets` / :func:`os.urandom`.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import gmpy2
import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError, ShareError
from secagg.primitives.paillier_group import MIN_KEY_BITS, STATISTICAL_BITS
from secagg.primitives.threshold_paillier import MIN_HAZMAT_KEY_BITS, integer_lagrange
from secagg.primitives.transcript import canonical
from secagg.validation import is_int

__all__ = [
    "DEFAULT_BIPRIMALITY_ROUNDS",
    "DEFAULT_SIEVE_LIMIT",
    "DEFAULT_TRIAL_DIVISION_LIMIT",
    "KeygenParameters",
    "ExponentBounds",
    "draw_candidate_shares",
    "random_residues",
    "residues_of",
    "share_residues",
    "interpolate_residues",
    "residue_survivors",
    "share_field",
    "interpolate_field",
    "passes_trial_division",
    "biprimality_bases",
    "biprimality_values",
    "biprimality_holds",
    "phi_share",
    "share_integer",
    "integer_lagrange",
    "product_share",
    "random_mask",
    "zero_mask",
    "rerandomised_product_share",
    "theta_inverse",
    "verification_base",
    "verification_keys_consistent",
]

DEFAULT_SIEVE_LIMIT = 1 << 8
"""Primes up to this bound are sieved out of ``N`` in small rings before any full-size work.

Sieving to ``B`` costs about ``theta(B) ~ B`` bits per shared value against ``|N|`` bits for
computing ``N`` itself; ``2^8`` leaves about a fifth of the candidates for the full-size
step at the lowest total traffic for 2048- and 3072-bit keys."""

DEFAULT_TRIAL_DIVISION_LIMIT = 1 << 16
"""``N`` must have no prime factor up to this bound (public trial division)."""

DEFAULT_BIPRIMALITY_ROUNDS = 64
"""Bases of the biprimality test: a non-biprime passes with probability at most ``2^-64``."""

I64 = npt.NDArray[np.int64]
_RESIDUE_LIMIT = 1 << 31


def _odd_primes_upto(limit: int) -> list[int]:
    sieve = np.ones(limit + 1, dtype=bool)
    sieve[:2] = False
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    return [int(p) for p in np.nonzero(sieve)[0] if p > 2]


@lru_cache(maxsize=8)
def _field_prime(key_bits: int) -> int:
    return int(gmpy2.next_prime(gmpy2.mpz(1) << key_bits))


@lru_cache(maxsize=8)
def _primorial(limit: int) -> int:
    acc = gmpy2.mpz(1)
    for p in _odd_primes_upto(limit):
        acc *= p
    return int(acc)


@lru_cache(maxsize=32)
def _sieve_moduli(n_parties: int, limit: int) -> tuple[int, ...]:
    moduli: list[int] = []
    current = 1
    for p in _odd_primes_upto(limit):
        if p <= n_parties:
            continue
        if current * p >= _RESIDUE_LIMIT:
            moduli.append(current)
            current = 1
        current *= p
    if current > 1:
        moduli.append(current)
    return tuple(moduli)


def _int_bytes(value: int) -> bytes:
    return int(value).to_bytes((int(value).bit_length() + 7) // 8, "big")


def _check_int(name: str, value: object, lo: int) -> int:
    if not is_int(value) or value < lo:
        raise InvalidParameterError(f"{name} must be an int >= {lo}, got {value!r}")
    return value


@dataclass(frozen=True)
class ExponentBounds:
    """Bit lengths of the exponent step (all public, derived from the parameters).

    Attributes:
        beta_bits: length of each party's ``beta_i``.
        phi_coefficient_bits, beta_coefficient_bits: coefficients of their integer sharings.
        zero_mask_bits: length of each pairwise zero-sharing mask ``z`` (the bound on the
            un-randomised ``|a_j|`` plus the statistical parameter).
        product_bits: bound on ``|a'_j|`` (an additive share of ``Delta phi beta``,
            re-randomised by the pairwise sharing of zero).
        mask_bits: length of each ``R_j`` (``N R_j`` exceeds ``product_bits`` by 128 bits).
        exponent_share_bits: bound on ``|d_j|``.
        exponent_coefficient_bits: coefficients of the degree ``t - 1`` resharing of ``d_j``.
        key_share_bits: bound on ``|s_i|``, the key shares.
    """

    beta_bits: int
    phi_coefficient_bits: int
    beta_coefficient_bits: int
    zero_mask_bits: int
    product_bits: int
    mask_bits: int
    exponent_share_bits: int
    exponent_coefficient_bits: int
    key_share_bits: int


@dataclass(frozen=True)
class KeygenParameters:
    """Public parameters of one distributed key generation.

    Attributes:
        key_bits: modulus size (even; at least 2048 unless ``hazmat_allow_weak_key``).
        n_parties: ``l >= 3`` committee members (BGW needs an honest majority of them).
        threshold: ``t`` partial decryptions needed, ``2 <= t <= l``.
        batch_size: candidates drawn per attempt (one message round trip per attempt).
        sieve_limit: primes in ``(l, sieve_limit]`` are sieved out of ``N`` in small rings.
        trial_division_limit: ``N`` has no prime factor up to this bound.
        biprimality_rounds: bases of the biprimality test.
        statistical_bits: statistical hiding of the integer sharings and masks.
        hazmat_allow_weak_key: allow ``key_bits`` below 2048 (down to 128). INSECURE: tests only.
    """

    key_bits: int
    n_parties: int
    threshold: int
    batch_size: int = 0
    sieve_limit: int = DEFAULT_SIEVE_LIMIT
    trial_division_limit: int = DEFAULT_TRIAL_DIVISION_LIMIT
    biprimality_rounds: int = DEFAULT_BIPRIMALITY_ROUNDS
    statistical_bits: int = STATISTICAL_BITS
    hazmat_allow_weak_key: bool = False

    def __post_init__(self) -> None:
        _check_int("n_parties", self.n_parties, 3)
        _check_int("threshold", self.threshold, 2)
        if self.threshold > self.n_parties:
            raise InvalidParameterError(
                f"threshold must be at most n_parties={self.n_parties}, got {self.threshold}"
            )
        _check_int("key_bits", self.key_bits, 2)
        if self.key_bits % 2:
            raise InvalidParameterError(f"key_bits must be even, got {self.key_bits}")
        floor = MIN_HAZMAT_KEY_BITS if self.hazmat_allow_weak_key else MIN_KEY_BITS
        if self.key_bits < floor:
            raise InvalidParameterError(
                f"key_bits={self.key_bits} is below {floor}; use 3072 or 2048, or pass "
                "hazmat_allow_weak_key=True in tests only"
            )
        if self.share_random_bits < 16:
            raise InvalidParameterError("key_bits is too small for this many parties")
        _check_int("batch_size", self.batch_size, 0)
        _check_int("sieve_limit", self.sieve_limit, 3)
        _check_int("trial_division_limit", self.trial_division_limit, 3)
        if self.trial_division_limit >= 1 << (self.key_bits // 2 - 2):
            raise InvalidParameterError("trial_division_limit must be far below the primes")
        _check_int("biprimality_rounds", self.biprimality_rounds, 1)
        _check_int("statistical_bits", self.statistical_bits, 40)
        if self.batch_size == 0:
            object.__setattr__(self, "batch_size", self.default_batch_size)

    @property
    def half_bits(self) -> int:
        """Bits of each prime."""
        return self.key_bits // 2

    @property
    def share_random_bits(self) -> int:
        """Bits of the random part of each party's prime share."""
        return (
            self.half_bits
            - 4
            - (self.n_parties - 1).bit_length()
            - self.residue_modulus.bit_length()
        )

    @property
    def residue_modulus(self) -> int:
        """``L = 4 prod_(odd primes r <= l) r``: every share but party 1's is ``0 mod L``."""
        return 4 * math.prod(_odd_primes_upto(self.n_parties)) if self.n_parties >= 3 else 4

    @property
    def residue(self) -> int:
        """``c mod L`` of every prime: ``3 mod 4`` and ``2 mod r`` for the odd primes ``r <= l``."""
        c, m = 3, 4
        for r in _odd_primes_upto(self.n_parties):
            # CRT: c' = c mod m, c' = 2 mod r
            c = c + m * ((2 - c) * pow(m, -1, r) % r)
            m *= r
        return c

    @property
    def offset(self) -> int:
        """Public offset in party 1's shares: the primes' top two bits (and ``c`` mod ``L``)."""
        top = 3 << (self.half_bits - 2)
        return top + (self.residue - top) % self.residue_modulus

    @property
    def degree(self) -> int:
        """``k = floor((l - 1) / 2)``: the BGW sharing degree (products have degree ``2k < l``)."""
        return (self.n_parties - 1) // 2

    @property
    def product_parties(self) -> tuple[int, ...]:
        """The ``2k + 1`` indices whose points interpolate a product (``1..2k+1``)."""
        return tuple(range(1, 2 * self.degree + 2))

    @property
    def delta(self) -> int:
        """``Delta = l!``."""
        return math.factorial(self.n_parties)

    @property
    def field_prime(self) -> int:
        """``P``, the first prime above ``2^key_bits`` (the BGW field of the modulus)."""
        return _field_prime(self.key_bits)

    @property
    def sieve_moduli(self) -> tuple[int, ...]:
        """Products (each below ``2^31``) of the odd primes in ``(l, sieve_limit]``."""
        return _sieve_moduli(self.n_parties, self.sieve_limit)

    @property
    def default_batch_size(self) -> int:
        """About 48 candidates expected to pass the sieve per attempt (at least 64 drawn).

        Larger batches mean fewer message rounds (each costs a signature per party and a
        verification per receiver) for the same number of candidates."""
        survive = 1.0
        for m in self.sieve_moduli:
            for p in _odd_primes_upto(min(self.sieve_limit, m)):
                if m % p == 0:
                    survive *= (1 - 1 / p) ** 2
        return max(64, min(4096, int(48 / survive)))

    @cached_property
    def bounds(self) -> ExponentBounds:
        """The bit lengths of the exponent step."""
        kappa = self.statistical_bits
        spread = 2 * self.delta.bit_length()
        log_l = self.n_parties.bit_length()
        k = self.degree
        beta_bits = self.key_bits + kappa
        phi_coefficient_bits = self.key_bits + 1 + kappa + spread
        beta_coefficient_bits = beta_bits + kappa + spread
        # |Phi(j)| < l * 2^(c + k log l + 1); |lambda_j| < Delta l^(2k)
        phi_point = phi_coefficient_bits + k * log_l + 1 + log_l
        beta_point = beta_coefficient_bits + k * log_l + 1 + log_l
        lam = self.delta.bit_length() + 2 * k * log_l
        # |a_j| before re-randomisation; |a'_j| <= |a_j| + 2 (l - 1) 2^zero_mask_bits
        zero_mask_bits = lam + phi_point + beta_point + kappa
        product_bits = zero_mask_bits + log_l + 2
        mask_bits = product_bits + log_l + kappa - self.key_bits + 2
        exponent_share_bits = product_bits + self.key_bits
        exponent_coefficient_bits = exponent_share_bits + kappa + spread
        key_share_bits = exponent_coefficient_bits + (self.threshold - 1) * log_l + 1 + log_l
        return ExponentBounds(
            beta_bits=beta_bits,
            phi_coefficient_bits=phi_coefficient_bits,
            beta_coefficient_bits=beta_coefficient_bits,
            zero_mask_bits=zero_mask_bits,
            product_bits=product_bits,
            mask_bits=mask_bits,
            exponent_share_bits=exponent_share_bits,
            exponent_coefficient_bits=exponent_coefficient_bits,
            key_share_bits=key_share_bits,
        )

    def check_index(self, index: int) -> int:
        """Validate a 1-based party index."""
        if not is_int(index) or not 1 <= index <= self.n_parties:
            raise InvalidParameterError(
                f"party index must be in [1, {self.n_parties}], got {index!r}"
            )
        return index


# --------------------------------------------------------------------------- candidates


def draw_candidate_shares(
    params: KeygenParameters, index: int, count: int
) -> tuple[list[int], list[int]]:
    """Party ``index``'s additive shares ``(p_i, q_i)`` of ``count`` candidate pairs.

    Party 1: ``offset + L x``; the others: ``L x``, with ``x`` uniform of
    :attr:`KeygenParameters.share_random_bits` bits (:func:`secrets.randbits`).
    """
    params.check_index(index)
    _check_int("count", count, 1)
    bits = params.share_random_bits
    step = params.residue_modulus
    base = params.offset if index == 1 else 0
    ps = [base + step * secrets.randbits(bits) for _ in range(count)]
    qs = [base + step * secrets.randbits(bits) for _ in range(count)]
    return ps, qs


def residues_of(values: Sequence[int], moduli: Sequence[int]) -> I64:
    """``values[k] mod moduli[j]`` as a ``(K, J)`` array, for non-negative ints (vectorised)."""
    count = len(values)
    mods = np.asarray(moduli, dtype=np.int64)
    if count == 0:
        return np.zeros((0, len(mods)), dtype=np.int64)
    if any(v < 0 for v in values):
        raise InvalidParameterError("residues_of takes non-negative ints")
    width = max(1, (max(int(v).bit_length() for v in values) + 23) // 24) * 3
    raw = np.frombuffer(b"".join(int(v).to_bytes(width, "big") for v in values), dtype=np.uint8)
    limbs = raw.reshape(count, width // 3, 3).astype(np.int64)
    limbs = (limbs[:, :, 0] << 16) | (limbs[:, :, 1] << 8) | limbs[:, :, 2]
    acc = np.zeros((count, len(mods)), dtype=np.int64)
    for column in range(limbs.shape[1]):
        acc = ((acc << 24) + limbs[:, column : column + 1]) % mods
    return acc


def random_residues(moduli: Sequence[int], shape: tuple[int, ...]) -> I64:
    """Uniform residues modulo each of ``moduli`` (the last axis), from :func:`os.urandom`.

    Rejection sampling on 64-bit words: exactly uniform.
    """
    mods = np.asarray(moduli, dtype=np.uint64)
    full = (*shape, len(mods))
    limit = (np.uint64(2**64 - 1) // mods) * mods  # accept words below a multiple of M
    out = np.empty(full, dtype=np.uint64)
    todo = np.ones(full, dtype=bool)
    while todo.any():
        count = int(todo.sum())
        words = np.frombuffer(os.urandom(8 * count), dtype=np.uint64)
        target_limit = np.broadcast_to(limit, full)[todo]
        target_mod = np.broadcast_to(mods, full)[todo]
        ok = words < target_limit
        values = out[todo]
        values[ok] = words[ok] % target_mod[ok]
        out[todo] = values
        sub = todo.copy()
        sub[todo] = ~ok
        todo = sub
    return out.astype(np.int64)


def share_residues(
    values: I64, moduli: Sequence[int], degree: int, n_parties: int, *, zero: bool = False
) -> I64:
    """Shamir shares over ``Z_(M_j)`` of a ``(K, J)`` array of residues (``J = len(moduli)``).

    Returns the points at ``x = 1..n_parties``, shape ``(n_parties, K, J)``. With ``zero`` the
    constant term is 0 (``values`` only gives the shape): a re-randomising sharing of zero.
    """
    mods = np.asarray(moduli, dtype=np.int64)
    coefficients = random_residues(moduli, (degree, *values.shape[:-1]))
    constant = np.zeros_like(values) if zero else values % mods
    points = np.empty((n_parties, *values.shape), dtype=np.int64)
    for x in range(1, n_parties + 1):
        acc = np.zeros_like(values)
        for c in coefficients[::-1]:
            acc = (acc * x + c) % mods
        points[x - 1] = (acc * x + constant) % mods
    return points


def _lagrange_mod(indices: Sequence[int], modulus: int) -> list[int]:
    out = []
    for i in indices:
        num, den = 1, 1
        for j in indices:
            if j != i:
                num = num * j % modulus
                den = den * (j - i) % modulus
        out.append(num * pow(den, -1, modulus) % modulus)
    return out


def interpolate_residues(points: Mapping[int, I64], moduli: Sequence[int]) -> I64:
    """The value at 0 of the polynomials whose points ``{x: (K, J) array}`` are given.

    Raises:
        ShareError: no points.
    """
    if not points:
        raise ShareError("no points to interpolate")
    indices = sorted(points)
    mods = np.asarray(moduli, dtype=np.int64)
    weights = np.array([_lagrange_mod(indices, m) for m in moduli], dtype=np.int64).T
    acc = np.zeros_like(points[indices[0]])
    for w, i in zip(weights, indices, strict=True):
        acc = (acc + points[i] * w) % mods
    return acc


def residue_survivors(residues: I64, moduli: Sequence[int]) -> list[int]:
    """Candidates (rows) whose ``N mod M_j`` is a unit for every ``j``."""
    mods = np.asarray(moduli, dtype=np.int64)
    ok = (np.gcd(residues, mods) == 1).all(axis=1)
    return [int(i) for i in np.nonzero(ok)[0]]


def share_field(values: Sequence[int], degree: int, n_parties: int, prime: int) -> list[list[int]]:
    """Shamir shares over ``GF(prime)``: ``out[x - 1][k]`` is the point at ``x`` of value ``k``."""
    p = gmpy2.mpz(prime)
    out: list[list[int]] = [[] for _ in range(n_parties)]
    for value in values:
        coefficients = [gmpy2.mpz(secrets.randbelow(prime)) for _ in range(degree)]
        for x in range(1, n_parties + 1):
            acc = gmpy2.mpz(0)
            for c in reversed(coefficients):
                acc = (acc * x + c) % p
            out[x - 1].append(int((acc * x + value) % p))
    return out


def interpolate_field(points: Mapping[int, Sequence[int]], prime: int) -> list[int]:
    """Values at 0 over ``GF(prime)`` from ``{x: [point of value k]}``."""
    if not points:
        raise ShareError("no points to interpolate")
    indices = sorted(points)
    weights = _lagrange_mod(indices, prime)
    count = len(points[indices[0]])
    if any(len(points[i]) != count for i in indices):
        raise ShareError("points of different lengths")
    p = gmpy2.mpz(prime)
    out = []
    for k in range(count):
        acc = gmpy2.mpz(0)
        for w, i in zip(weights, indices, strict=True):
            acc += gmpy2.mpz(points[i][k]) * w
        out.append(int(acc % p))
    return out


def passes_trial_division(modulus: int, params: KeygenParameters) -> bool:
    """``N`` has ``key_bits`` bits and no odd prime factor up to the trial-division limit."""
    n = gmpy2.mpz(modulus)
    return bool(
        n.bit_length() == params.key_bits
        and n % 4 == 1
        and gmpy2.gcd(n, _primorial(params.trial_division_limit)) == 1
    )


# --------------------------------------------------------------------------- biprimality


def biprimality_bases(modulus: int, context: bytes, count: int, *, start: int = 0) -> list[int]:
    """``count`` public bases ``g`` with Jacobi symbol ``(g / N) = 1``, hashed from the context.

    Every party derives the same bases; ``start`` skips the first ones (already used).
    """
    n = gmpy2.mpz(modulus)
    width = (int(n).bit_length() + 7) // 8 + 16
    out: list[int] = []
    counter = 0
    while len(out) < start + count:
        seed = canonical(
            "secagg/distributed-paillier/biprimality-base/v1", context, _int_bytes(n), counter
        )
        counter += 1
        g = gmpy2.mpz(int.from_bytes(hashlib.shake_256(seed).digest(width), "big")) % n
        if g > 1 and gmpy2.jacobi(g, n) == 1:
            out.append(int(g))
    return out[start:]


def _biprimality_exponent(index: int, modulus: int, p_share: int, q_share: int) -> int:
    if index == 1:
        return (modulus - p_share - q_share + 1) // 4
    return (p_share + q_share) // 4


def biprimality_values(
    index: int, modulus: int, p_share: int, q_share: int, bases: Sequence[int]
) -> list[int]:
    """Party ``index``'s published ``g^((N - p_1 - q_1 + 1)/4)`` (party 1) or
    ``g^((p_i + q_i)/4)``."""
    n = gmpy2.mpz(modulus)
    e = _biprimality_exponent(index, modulus, p_share, q_share)
    return [int(gmpy2.powmod(g, e, n)) for g in bases]


def biprimality_holds(modulus: int, values: Mapping[int, Sequence[int]]) -> bool:
    """``v_1 prod_(i >= 2) v_i^-1 = +-1 mod N`` for every base (``values``: index -> list)."""
    n = gmpy2.mpz(modulus)
    if 1 not in values:
        raise ShareError("party 1's biprimality values are missing")
    count = len(values[1])
    for j in range(count):
        acc = gmpy2.mpz(values[1][j])
        other = gmpy2.mpz(1)
        for i, vs in values.items():
            if i != 1:
                other = other * vs[j] % n
        if gmpy2.gcd(other, n) != 1:
            return False
        acc = acc * gmpy2.invert(other, n) % n
        if acc not in (1, n - 1):
            return False
    return True


# --------------------------------------------------------------------------- exponent


def phi_share(index: int, modulus: int, p_share: int, q_share: int) -> int:
    """Additive share of ``phi``: ``N - p_1 - q_1 + 1`` for party 1, ``-p_i - q_i`` otherwise."""
    if index == 1:
        return modulus - p_share - q_share + 1
    return -p_share - q_share


def share_integer(secret: int, degree: int, n_parties: int, coefficient_bits: int) -> list[int]:
    """Shamir shares over the integers: points at ``1..n_parties`` of ``secret + sum a_e x^e``.

    The coefficients ``a_e`` are uniform in ``[0, 2^coefficient_bits)`` (:func:`secrets.randbits`).
    """
    coefficients = [gmpy2.mpz(secrets.randbits(coefficient_bits)) for _ in range(degree)]
    out = []
    for x in range(1, n_parties + 1):
        acc = gmpy2.mpz(0)
        for c in reversed(coefficients):
            acc = acc * x + c
        out.append(int(acc * x + secret))
    return out


def product_share(params: KeygenParameters, index: int, phi_point: int, beta_point: int) -> int:
    """``a_j = lambda_j Phi(j) B(j)`` for the first ``2k + 1`` parties, 0 for the others."""
    params.check_index(index)
    if index not in params.product_parties:
        return 0
    lam = integer_lagrange(params.product_parties, params.delta)[index]
    return int(lam * gmpy2.mpz(phi_point) * beta_point)


def zero_mask(params: KeygenParameters) -> int:
    """One pairwise mask ``z`` of :attr:`ExponentBounds.zero_mask_bits` bits.

    The sender subtracts it from its product share and the recipient adds it, so the
    product shares keep their sum and each published one is statistically uniform.
    """
    return secrets.randbits(params.bounds.zero_mask_bits)


def rerandomised_product_share(
    share: int, masks_in: Sequence[int], masks_out: Sequence[int]
) -> int:
    """``a'_j = a_j + sum z_in - sum z_out`` (the re-randomised additive share)."""
    return int(share) + sum(int(z) for z in masks_in) - sum(int(z) for z in masks_out)


def random_mask(params: KeygenParameters) -> int:
    """``R_j`` of :attr:`ExponentBounds.mask_bits` bits."""
    return secrets.randbits(params.bounds.mask_bits)


def theta_inverse(theta: int, modulus: int) -> int | None:
    """``theta^-1 mod N``, or ``None`` when ``gcd(theta, N) != 1`` (then ``gcd(N, phi) != 1``)."""
    n = gmpy2.mpz(modulus)
    if theta <= 0 or gmpy2.gcd(theta, n) != 1:
        return None
    return int(gmpy2.invert(theta, n))


def verification_base(modulus: int, context: bytes) -> int:
    """A square modulo ``N^2`` hashed from the context (every party derives the same)."""
    n2 = gmpy2.mpz(modulus) ** 2
    width = (int(n2).bit_length() + 7) // 8 + 16
    counter = 0
    while True:
        seed = canonical(
            "secagg/distributed-paillier/verification-base/v1",
            context,
            _int_bytes(modulus),
            counter,
        )
        counter += 1
        x = gmpy2.mpz(int.from_bytes(hashlib.shake_256(seed).digest(width), "big")) % n2
        if x > 1 and gmpy2.gcd(x, modulus) == 1:
            v = gmpy2.powmod(x, 2, n2)
            if v != 1:
                return int(v)


def verification_keys_consistent(
    modulus: int, threshold: int, keys: Sequence[int], delta: int
) -> bool:
    """``prod_(i <= t) v_i^(lambda_i) = 1 mod N``: the shares interpolate a multiple of ``phi``."""
    n2 = gmpy2.mpz(modulus) ** 2
    indices = list(range(1, threshold + 1))
    lambdas = integer_lagrange(indices, delta)
    acc = gmpy2.mpz(1)
    for i in indices:
        acc = acc * gmpy2.powmod(keys[i - 1], lambdas[i], n2) % n2
    return bool(acc % modulus == 1)
