"""The arithmetic of distributed Paillier key generation (secagg.primitives.distributed_paillier).

Each step is checked against the integers it stands for, computed here in the clear from
primes the test draws itself (so the test may know p and q; the protocol never does).
"""

from __future__ import annotations

import math
import secrets

import gmpy2
import numpy as np
import pytest
from phe import paillier as phe_paillier

from secagg.errors import InvalidParameterError, ShareError
from secagg.primitives.distributed_paillier import (
    KeygenParameters,
    biprimality_bases,
    biprimality_holds,
    biprimality_values,
    draw_candidate_shares,
    integer_lagrange,
    interpolate_field,
    interpolate_residues,
    passes_trial_division,
    phi_share,
    product_share,
    random_mask,
    random_residues,
    rerandomised_product_share,
    residue_survivors,
    residues_of,
    share_field,
    share_integer,
    share_residues,
    theta_inverse,
    verification_base,
    verification_keys_consistent,
    zero_mask,
)
from secagg.primitives.paillier import Randomness
from secagg.primitives.threshold_paillier import (
    KeyShare,
    ThresholdPublicKey,
    combine_partial_decryptions,
    partial_decrypt,
    verify_partial_decryption,
)

BITS = 256


def _params(n: int = 5, t: int = 3, bits: int = BITS) -> KeygenParameters:
    return KeygenParameters(key_bits=bits, n_parties=n, threshold=t, hazmat_allow_weak_key=True)


def _prime_3_mod_4(bits: int) -> int:
    while True:
        p = gmpy2.next_prime(secrets.randbits(bits) | (3 << (bits - 2)))
        if p % 4 == 3 and p.bit_length() == bits:
            return int(p)


def _split(value: int, params: KeygenParameters) -> list[int]:
    """Additive shares of ``value`` of the protocol's form (party 1 carries the residue)."""
    step = params.residue_modulus
    others = [
        step * secrets.randbits(params.share_random_bits) for _ in range(params.n_parties - 1)
    ]
    return [value - sum(others), *others]


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_parties": 2, "threshold": 2},
        {"n_parties": 3, "threshold": 4},
        {"n_parties": 3, "threshold": 1},
        {"n_parties": 3, "threshold": 2, "key_bits": 255},
        {"n_parties": 3, "threshold": 2, "hazmat_allow_weak_key": False},
        {"n_parties": 3, "threshold": 2, "biprimality_rounds": 0},
        {"n_parties": True, "threshold": 2},
    ],
)
def test_parameters_refuse_bad_values(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"key_bits": BITS, "hazmat_allow_weak_key": True}
    with pytest.raises(InvalidParameterError):
        KeygenParameters(**{**base, **kwargs})  # type: ignore[arg-type]


def test_real_sizes_need_no_opt_in() -> None:
    params = KeygenParameters(key_bits=2048, n_parties=10, threshold=6)
    assert params.degree == 4 and params.product_parties == tuple(range(1, 10))
    assert params.field_prime > 1 << 2048 and gmpy2.is_prime(params.field_prime)
    assert all(m < 1 << 31 for m in params.sieve_moduli)
    # every odd prime in (l, sieve_limit] divides exactly one modulus; none <= l does
    primes = [p for p in range(3, params.sieve_limit + 1) if gmpy2.is_prime(p)]
    for p in primes:
        assert sum(m % p == 0 for m in params.sieve_moduli) == (1 if p > 10 else 0)


def test_candidate_shares_sum_to_well_formed_candidates() -> None:
    params = _params(n=7, t=4, bits=512)
    shares = [draw_candidate_shares(params, i, 50) for i in range(1, 8)]
    for k in range(50):
        for which in (0, 1):
            p = sum(s[which][k] for s in shares)
            assert p.bit_length() == 256 and p >> 254 == 3  # top two bits set
            assert p % 4 == 3 and all(p % r == 2 for r in (3, 5, 7))
    assert all(s[0][0] % params.residue_modulus == 0 for s in shares[1:])


# --------------------------------------------------------------------------- rings and fields


def test_residues_of_matches_python() -> None:
    moduli = _params().sieve_moduli
    values = [secrets.randbits(700) for _ in range(20)] + [0, 1, (1 << 64) - 1]
    expected = np.array([[v % m for m in moduli] for v in values], dtype=np.int64)
    assert np.array_equal(residues_of(values, moduli), expected)
    with pytest.raises(InvalidParameterError):
        residues_of([-1], moduli)


def test_random_residues_are_in_range_and_cover_a_small_ring() -> None:
    values = random_residues([7, 11 * 13], (4000,))
    assert values.shape == (4000, 2)
    assert set(values[:, 0].tolist()) == set(range(7))
    assert values[:, 1].min() >= 0 and values[:, 1].max() < 143


def test_bgw_product_in_small_rings_opens_the_product_only() -> None:
    params = _params(n=5)
    moduli = params.sieve_moduli
    mods = np.asarray(moduli, dtype=np.int64)
    a = [residues_of([secrets.randbits(100) for _ in range(6)], moduli) for _ in range(5)]
    b = [residues_of([secrets.randbits(100) for _ in range(6)], moduli) for _ in range(5)]
    k = params.degree
    fa = [share_residues(x, moduli, k, 5) for x in a]
    fb = [share_residues(x, moduli, k, 5) for x in b]
    fz = [share_residues(x, moduli, 2 * k, 5, zero=True) for x in a]
    points = {}
    for x in range(1, 6):
        sa = sum(f[x - 1] for f in fa) % mods
        sb = sum(f[x - 1] for f in fb) % mods
        sz = sum(f[x - 1] for f in fz) % mods
        points[x] = (sa * sb + sz) % mods
    opened = interpolate_residues({i: points[i] for i in params.product_parties}, moduli)
    assert np.array_equal(opened, (sum(a) % mods) * (sum(b) % mods) % mods)
    # any 2k+1 points give the same value; k points of a degree-k sharing say nothing useful
    assert np.array_equal(
        interpolate_residues({i: points[i] for i in (1, 3, 4, 5, 2)}, moduli), opened
    )
    with pytest.raises(ShareError):
        interpolate_residues({}, moduli)


def test_residue_survivors_are_the_units() -> None:
    moduli = (3 * 5, 7 * 11)
    residues = np.array([[1, 1], [3, 1], [1, 77 - 7], [14, 76]], dtype=np.int64)
    assert residue_survivors(residues, moduli) == [0, 3]


def test_field_sharing_round_trip_and_product() -> None:
    params = _params()
    prime = params.field_prime
    values = [secrets.randbits(BITS // 2) for _ in range(4)]
    others = [secrets.randbits(BITS // 2) for _ in range(4)]
    fa = share_field(values, params.degree, 5, prime)
    fb = share_field(others, params.degree, 5, prime)
    assert interpolate_field({i: fa[i - 1] for i in (2, 4, 5)}, prime) == values
    products = {
        x: [a * b % prime for a, b in zip(fa[x - 1], fb[x - 1], strict=True)] for x in range(1, 6)
    }
    opened = interpolate_field({i: products[i] for i in params.product_parties}, prime)
    assert opened == [a * b for a, b in zip(values, others, strict=True)]


def test_trial_division() -> None:
    params = _params(bits=512)
    p, q = _prime_3_mod_4(256), _prime_3_mod_4(256)
    n = p * q
    assert passes_trial_division(n, params)
    small = 65521  # the largest prime below the limit 2^16
    multiple = n - n % small
    while multiple % 4 != 1:
        multiple += small
    assert multiple.bit_length() == 512 and not passes_trial_division(multiple, params)
    assert not passes_trial_division(p * 5, params)  # wrong size
    assert not passes_trial_division(n + 2, params)  # not 1 mod 4


# --------------------------------------------------------------------------- biprimality


def test_biprimality_accepts_a_biprime_and_rejects_composites() -> None:
    params = _params(n=4, t=2, bits=512)
    p, q = _prime_3_mod_4(256), _prime_3_mod_4(256)
    n = p * q
    ps, qs = _split(p, params), _split(q, params)
    bases = biprimality_bases(n, b"context", 40)
    assert all(gmpy2.jacobi(g, n) == 1 for g in bases) and len(set(bases)) == 40
    assert bases[5:] == biprimality_bases(n, b"context", 35, start=5)
    values = {i: biprimality_values(i, n, ps[i - 1], qs[i - 1], bases) for i in range(1, 5)}
    assert biprimality_holds(n, values)
    # "p" = r s u with primes = 3 mod 4 (so it is 3 mod 4 like a real share sum): caught
    composite = _prime_3_mod_4(86) * _prime_3_mod_4(86) * _prime_3_mod_4(86)
    assert composite % 4 == 3
    m = composite * q
    cs, qs2 = _split(composite, params), _split(q, params)
    bases = biprimality_bases(m, b"context", 40)
    values = {i: biprimality_values(i, m, cs[i - 1], qs2[i - 1], bases) for i in range(1, 5)}
    assert not biprimality_holds(m, values)
    with pytest.raises(ShareError):
        biprimality_holds(n, {2: [1]})


# --------------------------------------------------------------------------- the exponent


def test_exponent_shares_interpolate_a_working_decryption_exponent() -> None:
    """Steps 5-7 in the clear: d = 0 mod phi, d = 1 mod N; the dealer's decryption works."""
    size, t = 5, 3
    params = _params(n=size, t=t, bits=512)
    p, q = _prime_3_mod_4(256), _prime_3_mod_4(256)
    n = p * q
    phi = (p - 1) * (q - 1)
    ps, qs = _split(p, params), _split(q, params)
    phis = [phi_share(i, n, ps[i - 1], qs[i - 1]) for i in range(1, size + 1)]
    assert sum(phis) == phi
    bounds = params.bounds
    betas = [secrets.randbits(bounds.beta_bits) for _ in range(size)]
    fp = [share_integer(x, params.degree, size, bounds.phi_coefficient_bits) for x in phis]
    fb = [share_integer(x, params.degree, size, bounds.beta_coefficient_bits) for x in betas]
    a = [
        product_share(params, j, sum(f[j - 1] for f in fp), sum(f[j - 1] for f in fb))
        for j in range(1, size + 1)
    ]
    assert sum(a) == params.delta * phi * sum(betas)
    assert all(abs(x).bit_length() <= bounds.product_bits for x in a)
    assert a[-1] == 0 or size in params.product_parties
    theta = sum(x + n * random_mask(params) for x in a)
    mu = theta_inverse(theta, n)
    assert mu is not None
    d_shares = [x * mu for x in a]
    d = sum(d_shares)
    assert d % phi == 0 and d % n == 1
    reshared = [share_integer(x, t - 1, size, bounds.exponent_coefficient_bits) for x in d_shares]
    key_shares = [sum(f[i - 1] for f in reshared) for i in range(1, size + 1)]
    assert all(abs(s).bit_length() <= bounds.key_share_bits for s in key_shares)
    for subset in ([1, 2, 3], [2, 4, 5], [1, 3, 5]):
        lam = integer_lagrange(subset, params.delta)
        assert sum(lam[i] * key_shares[i - 1] for i in subset) == params.delta * d
    v = verification_base(n, b"transcript")
    n2 = n * n
    keys = tuple(int(gmpy2.powmod(v, params.delta * s, n2)) for s in key_shares)
    assert verification_keys_consistent(n, t, keys, params.delta)
    assert not verification_keys_consistent(n, t, (keys[0] * v % n2, *keys[1:]), params.delta)
    public = ThresholdPublicKey(
        paillier=phe_paillier.PaillierPublicKey(n),
        n_decryptors=size,
        threshold=t,
        verification_base=v,
        verification_keys=keys,
        encryption_base=None,
        share_bits=bounds.key_share_bits,
    )
    shares = [KeyShare(index=i, secret=s, public_key=public) for i, s in enumerate(key_shares, 1)]
    packing = public.packing(value_bits=16, max_clients=3)
    values = np.array([0, 1, 65535, 1234, 7], dtype=np.uint64)
    vector = public.encryptor(packing).encrypt(values)
    assert public.encryptor(packing).randomness is Randomness.STANDARD
    partials = [partial_decrypt(shares[i], vector, context=b"ctx") for i in (4, 0, 2)]
    for partial in partials:
        verify_partial_decryption(public, vector, partial, context=b"ctx")
    plain = combine_partial_decryptions(public, vector, partials, context=b"ctx")
    assert np.array_equal(packing.unpack(plain, len(values), summands=1), values)


def test_theta_sharing_a_factor_with_n_is_refused() -> None:
    p, q = _prime_3_mod_4(128), _prime_3_mod_4(128)
    assert theta_inverse(p * 12345, p * q) is None
    assert theta_inverse(0, p * q) is None
    assert theta_inverse(7, p * q) == int(gmpy2.invert(7, p * q))


def test_integer_lagrange_is_exact_and_refuses_out_of_range_indices() -> None:
    delta = math.factorial(4)
    lam = integer_lagrange([1, 2, 4], delta)
    secret = -(1 << 300) + 17
    points = share_integer(secret, 2, 4, 420)
    assert sum(lam[i] * points[i - 1] for i in (1, 2, 4)) == delta * secret
    with pytest.raises(ShareError):
        integer_lagrange([1, 2, 9, 11], delta)


def _interpolate_mod(points: dict[int, int], x: int, modulus: int) -> int:
    """Lagrange interpolation modulo ``modulus`` (a test-side attacker's tool)."""
    total = 0
    for i, y in points.items():
        num, den = 1, 1
        for j in points:
            if j != i:
                num = num * (x - j) % modulus
                den = den * (i - j) % modulus
        total = (total + y * num * pow(den, -1, modulus)) % modulus
    return total


@pytest.mark.parametrize("rerandomised", [False, True])
def test_published_product_shares_reveal_only_their_sum(rerandomised: bool) -> None:
    """An observer of THETA interpolates the product polynomial modulo N from the published
    values: without the pairwise sharing of zero (positive control) it learns the secret
    point Phi(4) B(4) of a party outside the product set; with it, it does not."""
    size, t = 4, 3
    params = _params(n=size, t=t, bits=512)
    assert params.product_parties == (1, 2, 3)
    p, q = _prime_3_mod_4(256), _prime_3_mod_4(256)
    n = p * q
    ps, qs = _split(p, params), _split(q, params)
    phis = [phi_share(i, n, ps[i - 1], qs[i - 1]) for i in range(1, size + 1)]
    bounds = params.bounds
    betas = [secrets.randbits(bounds.beta_bits) for _ in range(size)]
    fp = [share_integer(x, params.degree, size, bounds.phi_coefficient_bits) for x in phis]
    fb = [share_integer(x, params.degree, size, bounds.beta_coefficient_bits) for x in betas]
    phi_points = [sum(f[j] for f in fp) for j in range(size)]
    beta_points = [sum(f[j] for f in fb) for j in range(size)]
    a = [
        product_share(params, j, phi_points[j - 1], beta_points[j - 1]) for j in range(1, size + 1)
    ]
    if rerandomised:
        masks = {(i, j): zero_mask(params) for i in range(size) for j in range(size) if i != j}
        a = [
            rerandomised_product_share(
                a[j],
                [masks[(i, j)] for i in range(size) if i != j],
                [masks[(j, i)] for i in range(size) if i != j],
            )
            for j in range(size)
        ]
        assert all(abs(x).bit_length() <= bounds.product_bits for x in a)
    assert sum(a) == params.delta * sum(phis) * sum(betas)
    published = [x + n * random_mask(params) for x in a]
    lam = integer_lagrange(params.product_parties, params.delta)
    observed = {j: published[j - 1] * pow(lam[j], -1, n) % n for j in params.product_parties}
    secret_point = phi_points[3] * beta_points[3] % n
    leaked = _interpolate_mod(observed, 4, n) == secret_point
    assert leaked is not rerandomised
