"""Threshold Paillier: dealer, partial decryption, batched proofs, combining.

Golden values: ciphertexts made by ``phe`` (``raw_encrypt`` under the dealt modulus) must
threshold-decrypt to what was encrypted; primality is checked with ``phe``'s own
Miller-Rabin, independent of the gmpy2 test used by the generator.
"""

from __future__ import annotations

import itertools
import math
import secrets
from dataclasses import replace

import gmpy2
import numpy as np
import pytest
from phe.util import is_prime as phe_is_prime

from secagg.errors import (
    AuthenticationError,
    InvalidParameterError,
    MessageError,
    ShareError,
    ThresholdNotMetError,
)
from secagg.primitives.paillier import EncryptedVector, aggregate
from secagg.primitives.threshold_paillier import (
    DecryptionProof,
    KeyShare,
    PartialDecryption,
    ThresholdPublicKey,
    combine_partial_decryptions,
    deal_threshold_key,
    generate_safe_prime,
    partial_decrypt,
    verify_partial_decryption,
)

Dealt = tuple[ThresholdPublicKey, tuple[KeyShare, ...]]
L_DECRYPTORS, THRESHOLD = 5, 3


@pytest.fixture(scope="module")
def dealt() -> Dealt:
    # INSECURE 512-bit modulus, for speed only
    return deal_threshold_key(
        n_decryptors=L_DECRYPTORS, threshold=THRESHOLD, key_bits=512, hazmat_allow_weak_key=True
    )


def _phe_vector(pk: ThresholdPublicKey, plaintexts: list[int]) -> EncryptedVector:
    return EncryptedVector(
        key_id=pk.ciphertext_key_id,
        length=len(plaintexts),
        ciphertexts=tuple(int(pk.paillier.raw_encrypt(m)) for m in plaintexts),
    )


@pytest.fixture(scope="module")
def vector(dealt: Dealt) -> tuple[EncryptedVector, list[int]]:
    pk, _ = dealt
    plaintexts = [0, 1, pk.n - 1, secrets.randbelow(pk.n), 42]
    return _phe_vector(pk, plaintexts), plaintexts


def test_safe_prime_is_safe_and_sized() -> None:
    for bits in (64, 160):
        p = generate_safe_prime(bits)
        assert p.bit_length() == bits
        assert p >> (bits - 2) == 0b11
        assert phe_is_prime(p) and phe_is_prime((p - 1) // 2)
    with pytest.raises(InvalidParameterError):
        generate_safe_prime(8)


def test_dealt_key_shape(dealt: Dealt) -> None:
    pk, shares = dealt
    # the fixed encryption base is a quadratic residue (Jacobi symbol 1, and not -1 mod n)
    assert gmpy2.jacobi(pk.encryption_base, pk.n) == 1 and 1 < pk.encryption_base < pk.n - 1
    assert pk.n.bit_length() == 512
    assert pk.delta == math.factorial(L_DECRYPTORS)
    assert [s.index for s in shares] == list(range(1, L_DECRYPTORS + 1))
    assert len(set(s.secret for s in shares)) == L_DECRYPTORS
    assert all(0 <= s.secret < pk.n_squared for s in shares)
    # every verification key is v^(Delta s_i)
    for s in shares:
        assert pk.verification_keys[s.index - 1] == pow(
            pk.verification_base, pk.delta * s.secret, pk.n_squared
        )
    assert "secret" not in repr(shares[0])
    assert len(pk.key_id) == 32


def test_every_threshold_subset_decrypts_phe_ciphertexts(
    dealt: Dealt, vector: tuple[EncryptedVector, list[int]]
) -> None:
    pk, shares = dealt
    vec, plaintexts = vector
    partials = [partial_decrypt(s, vec, prove=False) for s in shares]
    for subset in itertools.combinations(partials, THRESHOLD):
        assert list(combine_partial_decryptions(pk, vec, list(subset), verify=False)) == plaintexts
    # more than t partials are fine too
    assert list(combine_partial_decryptions(pk, vec, partials, verify=False)) == plaintexts


def test_homomorphic_sum_decrypts(dealt: Dealt) -> None:
    pk, shares = dealt
    packing = pk.packing(value_bits=16, max_clients=6)
    enc = pk.encryptor(packing)
    rng = np.random.default_rng(2)
    xs = [rng.integers(0, 1 << 16, 90, dtype=np.uint64) for _ in range(6)]
    total = aggregate(pk.paillier, packing, [enc.encrypt(x) for x in xs])
    partials = [partial_decrypt(s, total, context=b"round-7") for s in shares[1:4]]
    plain = combine_partial_decryptions(pk, total, partials, context=b"round-7")
    expected = np.sum(np.stack(xs), axis=0, dtype=np.uint64) & np.uint64(0xFFFF)
    np.testing.assert_array_equal(packing.unpack(plain, 90, summands=6), expected)


def test_too_few_and_duplicate_partials(
    dealt: Dealt, vector: tuple[EncryptedVector, list[int]]
) -> None:
    pk, shares = dealt
    vec, _ = vector
    partials = [partial_decrypt(s, vec, prove=False) for s in shares[:THRESHOLD]]
    with pytest.raises(ThresholdNotMetError):
        combine_partial_decryptions(pk, vec, partials[:-1], verify=False)
    with pytest.raises(ShareError):
        combine_partial_decryptions(pk, vec, [partials[0], partials[0], partials[1]], verify=False)


def test_below_threshold_shares_do_not_decrypt(
    dealt: Dealt, vector: tuple[EncryptedVector, list[int]]
) -> None:
    # t - 1 partials combined as if they were t (a forged third partial of 1) give no plaintext
    pk, shares = dealt
    vec, plaintexts = vector
    partials = [partial_decrypt(s, vec, prove=False) for s in shares[: THRESHOLD - 1]]
    fake = PartialDecryption(index=THRESHOLD, values=(1,) * len(vec.ciphertexts), proof=None)
    try:
        result = combine_partial_decryptions(pk, vec, [*partials, fake], verify=False)
    except AuthenticationError:
        return
    assert list(result) != plaintexts


def test_valid_proofs_verify(dealt: Dealt, vector: tuple[EncryptedVector, list[int]]) -> None:
    pk, shares = dealt
    vec, plaintexts = vector
    partials = [partial_decrypt(s, vec, context=b"ctx") for s in shares]
    for p in partials:
        assert p.proof is not None
        verify_partial_decryption(pk, vec, p, context=b"ctx")
    assert list(combine_partial_decryptions(pk, vec, partials, context=b"ctx")) == plaintexts


def _tampered(pk: ThresholdPublicKey, p: PartialDecryption, how: str) -> PartialDecryption:
    n, n2 = pk.n, pk.n_squared
    values = list(p.values)
    if how == "plaintext-shift":  # multiply by (1 + n): shifts the decrypted value, still 1 mod n
        values[1] = values[1] * (1 + n) % n2
        return replace(p, values=tuple(values))
    if how == "random":
        values[0] = values[0] * 3 % n2
        return replace(p, values=tuple(values))
    if how == "swap":
        values[0], values[1] = values[1], values[0]
        return replace(p, values=tuple(values))
    if how == "other-index":
        return replace(p, index=pk.n_decryptors)  # claims to be the last decryptor
    if how == "no-proof":
        return replace(p, proof=None)
    assert p.proof is not None
    if how == "challenge":
        return replace(p, proof=DecryptionProof(p.proof.challenge ^ 1, p.proof.response))
    if how == "response":
        return replace(p, proof=DecryptionProof(p.proof.challenge, p.proof.response + 1))
    if how == "huge-response":
        return replace(p, proof=DecryptionProof(p.proof.challenge, p.proof.response << 5000))
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "plaintext-shift",
        "random",
        "swap",
        "other-index",
        "no-proof",
        "challenge",
        "response",
        "huge-response",
    ],
)
def test_tampered_partials_are_rejected(
    dealt: Dealt, vector: tuple[EncryptedVector, list[int]], how: str
) -> None:
    pk, shares = dealt
    vec, _ = vector
    good = partial_decrypt(shares[0], vec, context=b"ctx")
    bad = _tampered(pk, good, how)
    with pytest.raises(AuthenticationError):
        verify_partial_decryption(pk, vec, bad, context=b"ctx")
    others = [partial_decrypt(s, vec, context=b"ctx") for s in shares[1:THRESHOLD]]
    with pytest.raises(AuthenticationError):
        combine_partial_decryptions(pk, vec, [bad, *others], context=b"ctx")


def test_plaintext_shift_goes_unnoticed_without_proofs(
    dealt: Dealt, vector: tuple[EncryptedVector, list[int]]
) -> None:
    # documents why the malicious variant needs proofs: the combination is still 1 mod n
    pk, shares = dealt
    vec, plaintexts = vector
    partials = [partial_decrypt(s, vec, prove=False) for s in shares[:THRESHOLD]]
    bad = _tampered(pk, partial_decrypt(shares[0], vec), "plaintext-shift")
    result = combine_partial_decryptions(pk, vec, [bad, *partials[1:]], verify=False)
    assert result[1] != plaintexts[1] and result[0] == plaintexts[0]


def test_proof_is_bound_to_context_and_ciphertexts(
    dealt: Dealt, vector: tuple[EncryptedVector, list[int]]
) -> None:
    pk, shares = dealt
    vec, _ = vector
    p = partial_decrypt(shares[2], vec, context=b"round-1")
    with pytest.raises(AuthenticationError):
        verify_partial_decryption(pk, vec, p, context=b"round-2")
    other = _phe_vector(pk, [5, 6, 7, 8, 9])
    with pytest.raises(AuthenticationError):
        verify_partial_decryption(pk, other, p, context=b"round-1")


def test_malformed_partials_and_inputs(
    dealt: Dealt, vector: tuple[EncryptedVector, list[int]]
) -> None:
    pk, shares = dealt
    vec, _ = vector
    p = partial_decrypt(shares[0], vec, prove=False)
    for bad in [
        replace(p, index=0),
        replace(p, index=L_DECRYPTORS + 1),
        replace(p, values=p.values[:-1]),
        replace(p, values=(0,) + p.values[1:]),
        replace(p, values=(pk.n,) + p.values[1:]),
    ]:
        with pytest.raises(MessageError):
            verify_partial_decryption(pk, vec, bad)
    with pytest.raises(MessageError):
        partial_decrypt(shares[0], EncryptedVector(b"\x01" * 32, vec.length, vec.ciphertexts))
    with pytest.raises(MessageError):
        partial_decrypt(shares[0], EncryptedVector(vec.key_id, vec.length, (pk.n_squared,)))
    with pytest.raises(InvalidParameterError):
        partial_decrypt(shares[0], vec, context="text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_decryptors": 1, "threshold": 1},
        {"n_decryptors": 5, "threshold": 1},
        {"n_decryptors": 5, "threshold": 6},
        {"n_decryptors": 5, "threshold": 3, "key_bits": 1024},  # weak without the opt-in
        {"n_decryptors": 5, "threshold": 3, "key_bits": 2049},
        {"n_decryptors": 5, "threshold": 3, "key_bits": 64, "hazmat_allow_weak_key": True},
    ],
)
def test_dealer_argument_checks(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidParameterError):
        deal_threshold_key(**kwargs)  # type: ignore[arg-type]


def test_public_key_validation(dealt: Dealt) -> None:
    pk, _ = dealt
    with pytest.raises(InvalidParameterError):
        replace(pk, threshold=1)
    with pytest.raises(InvalidParameterError):
        replace(pk, verification_keys=pk.verification_keys[:-1])
    with pytest.raises(InvalidParameterError):
        replace(pk, encryption_base=pk.n)
    with pytest.raises(MessageError):
        replace(pk, verification_base=pk.n)
    assert replace(pk, threshold=4).key_id != pk.key_id
