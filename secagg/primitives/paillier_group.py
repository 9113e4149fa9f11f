"""Paillier group arithmetic shared by the packed and the threshold schemes.

Key sizes and their security level, a public key's modulus and identifier, the public
base of fixed-base encryption (made and checked), multi-exponentiation, and the checks of
a ciphertext as an element of ``Z*_(n^2)``. The scheme itself is described in
:mod:`secagg.primitives.paillier`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

import gmpy2
from phe import paillier as phe_paillier

from secagg.errors import InvalidParameterError, MessageError
from secagg.primitives.transcript import canonical
from secagg.validation import is_int

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "STATISTICAL_BITS",
    "security_bits",
    "key_modulus",
    "public_key_id",
    "random_encryption_base",
    "check_encryption_base",
    "multi_exponent",
    "validate_ciphertext",
    "ciphertext_width",
]

DEFAULT_KEY_BITS = 3072
"""Default modulus size: about 128-bit security (NIST SP 800-57)."""

MIN_KEY_BITS = 2048
"""Smallest modulus accepted without the explicit hazmat opt-in (about 112-bit security)."""

STATISTICAL_BITS = 128
"""Statistical security parameter for full-length random exponents and proof masking."""


def security_bits(modulus_bits: int) -> int:
    """Symmetric-equivalent security of an RSA/Paillier modulus (NIST SP 800-57 Part 1, Table 2)."""
    if modulus_bits >= 15360:
        return 256
    if modulus_bits >= 7680:
        return 192
    if modulus_bits >= 3072:
        return 128
    if modulus_bits >= 2048:
        return 112
    return 80


def key_modulus(public_key: object) -> int:
    """The modulus ``n`` of a ``phe`` public key.

    Raises:
        InvalidParameterError: ``public_key`` is not a ``phe.paillier.PaillierPublicKey``.
    """
    if not isinstance(public_key, phe_paillier.PaillierPublicKey):
        raise InvalidParameterError(
            f"expected a phe.paillier.PaillierPublicKey, got {type(public_key).__name__}"
        )
    return int(public_key.n)


def public_key_id(public_key: phe_paillier.PaillierPublicKey) -> bytes:
    """SHA-256 fingerprint of a Paillier modulus; every ciphertext vector carries it."""
    n = key_modulus(public_key)
    return hashlib.sha256(
        canonical("secagg/paillier/public-key/v1", n.to_bytes((n.bit_length() + 7) // 8, "big"))
    ).digest()


def random_encryption_base(public_key: phe_paillier.PaillierPublicKey) -> int:
    """A fresh fixed base ``g = x^2 mod n`` for :attr:`Randomness.FIXED_BASE`.

    ``x`` is uniform in ``Z*_n``; ``g`` then generates ``QR_n`` (and ``h = g^n mod n^2`` the
    squared n-th residues) except with probability about ``1/p' + 1/q'`` (negligible). The
    key owner (or the trusted dealer, which can also *check* the order) makes ``g`` and
    publishes it with the key.
    """
    n = gmpy2.mpz(key_modulus(public_key))
    while True:
        x = gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.gcd(x, n) == 1:
            g = gmpy2.powmod(x, 2, n)
            if g != 1:
                return int(g)


def check_encryption_base(base: object, n: int) -> int:
    """Validate a public fixed base ``g`` (an element of ``Z*_n`` other than +-1).

    Raises:
        InvalidParameterError: if it is not.
    """
    if not is_int(base) or not 1 < base < n - 1 or gmpy2.gcd(base, n) != 1:
        raise InvalidParameterError("encryption_base is not a valid fixed base for this key")
    return base


def multi_exponent(bases: Sequence[int], exponents: Sequence[int], modulus: int) -> int:
    """``prod_j bases[j]^exponents[j] mod modulus`` for non-negative exponents (bucket method).

    With ``k`` bases and ``E``-bit exponents it costs about ``E/4 (k + 30) + E`` modular
    multiplications instead of ``k 1.25 E`` for separate exponentiations.
    """
    if len(bases) != len(exponents):
        raise InvalidParameterError("need one exponent per base")
    if any(e < 0 for e in exponents):
        raise InvalidParameterError("exponents must be non-negative")
    mod = gmpy2.mpz(modulus)
    top = max((int(e).bit_length() for e in exponents), default=0)
    window = 4
    mask = (1 << window) - 1
    bs = [gmpy2.mpz(b) for b in bases]
    es = [int(e) for e in exponents]
    acc = gmpy2.mpz(1)
    for shift in range(((top + window - 1) // window - 1) * window, -1, -window):
        if acc != 1:
            for _ in range(window):
                acc = acc * acc % mod
        buckets = [gmpy2.mpz(1)] * (mask + 1)
        for b, e in zip(bs, es, strict=True):
            digit = (e >> shift) & mask
            if digit:
                buckets[digit] = buckets[digit] * b % mod
        running = gmpy2.mpz(1)
        total = gmpy2.mpz(1)
        for digit in range(mask, 0, -1):
            running = running * buckets[digit] % mod
            total = total * running % mod
        acc = acc * total % mod
    return int(acc % mod)


def validate_ciphertext(value: object, n: int, n_squared: int) -> int:
    """Check that ``value`` is an element of ``Z*_(n^2)``; return it as an int.

    Raises:
        MessageError: if it is not an int in ``[1, n^2)`` coprime to ``n``.
    """
    if not is_int(value):
        raise MessageError("ciphertext is not an integer")
    if not 0 < value < n_squared or gmpy2.gcd(value, n) != 1:
        raise MessageError("ciphertext is not a unit modulo n^2")
    return value


def ciphertext_width(n: int) -> int:
    """Bytes of one ciphertext (an element of ``Z_(n^2)``) on the wire."""
    return ((n * n).bit_length() + 7) // 8
