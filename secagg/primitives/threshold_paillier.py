"""Threshold Paillier with a trusted dealer (Shoup 2000; Fouque-Poupard-Stern 2000; Damgard-Jurik
2001, s = 1).

No party holds the whole private key: the dealer Shamir-shares the decryption exponent
*over the integers* among ``l`` decryptors; any ``t`` partial decryptions combine into the
plaintext, ``t - 1`` reveal nothing about it.

Key generation (the dealer, who forgets everything but the public values afterwards):

* safe primes ``p = 2p' + 1``, ``q = 2q' + 1`` of ``|n| / 2`` bits each, ``n = p q``,
  ``m = p' q'``;
* the decryption exponent ``d`` with ``d = 0 mod m`` and ``d = 1 mod n`` (CRT), so that for
  every ciphertext ``c^(4 d) = (1 + n)^(4 M)`` -- the n-th residue hiding ``M`` has order
  dividing ``2m`` and disappears;
* ``f(X) = d + a_1 X + ... + a_(t-1) X^(t-1)`` with ``a_k`` uniform in ``[0, n m)``; decryptor
  ``i`` (1-based) gets ``s_i = f(i) mod n m``;
* ``Delta = l!`` and, for the proofs, a random square ``v`` that generates the cyclic group
  of squares of ``Z*_(n^2)`` (order ``n m``; the dealer checks this with the factorisation),
  and verification keys ``v_i = v^(Delta s_i) mod n^2``;
* the public fixed base ``g = x^2 mod n`` of order exactly ``m`` in ``QR_n`` (checked by the
  dealer), used by :attr:`secagg.primitives.paillier.Randomness.FIXED_BASE` encryption.

Partial decryption by decryptor ``i``: ``c_i = c^(2 Delta s_i) mod n^2``.

Combining a set ``S`` of ``t`` partials with the integer Lagrange coefficients
``lambda_i = Delta prod_(j in S, j != i) j / (j - i)``::

    c' = prod_(i in S) c_i^(2 lambda_i) = c^(4 Delta^2 d) = (1 + n)^(4 Delta^2 M)  mod n^2
    M  = L(c') * (4 Delta^2)^(-1) mod n,      L(u) = (u - 1) / n.

Proof of correct partial decryption (Damgard-Jurik, section 4.2, made non-interactive by
Fiat-Shamir with SHA-256), *batched* over a whole vector of ciphertexts: with weights
``rho_j`` (128 bits) hashed from all ``c_j`` and ``c_ij``, let ``C = prod c_j^(rho_j)`` and
``C_i = prod c_ij^(rho_j)``. The prover shows ``log_(C^4) C_i^2 = log_v v_i`` (= ``Delta s_i``):
it draws ``r`` of ``|n^2| + |Delta| + 256 + 128`` bits, sends ``e = H(..., C^4, C_i^2, v, v_i,
C^(4r), v^r)`` (256 bits) and ``z = r + e Delta s_i``; the verifier recomputes
``a = C^(4z) C_i^(-2e)``, ``b = v^z v_i^(-e)`` and checks the hash. Batching is sound
because every error term ``c_ij^2 / c_j^(4 Delta s_i)`` is a square, and the group of squares
of ``Z*_(n^2)`` has order ``n p' q'``, with no prime factor below ``min(p', q')``: a non-trivial
error survives the random linear combination with probability at most about ``2^-128``.
Only ``c_ij^2`` enters the combination, so the proof covers exactly what is used.

Security: with ``t - 1`` or fewer shares, nothing about ``d`` (beyond the public values)
leaks (Shoup's simulation argument, which uses that ``m`` has only large prime factors); DCR
gives semantic security of the ciphertexts. The dealer is trusted: it learns the
factorisation and must erase it.

Keys without a dealer (:mod:`secagg.primitives.distributed_paillier`,
:mod:`protocols.paillier.keygen`)
use the same decryption, combination and proofs: their exponent ``d`` is a multiple of
``phi(n)`` (not of ``m``) with ``d = 1 mod n``, which gives the same ``c^(4 Delta^2 d)``; their
shares are integer points, possibly negative and longer than ``|n^2|``
(:attr:`ThresholdPublicKey.share_bits` sizes the proof responses); they have no checked
fixed base (``encryption_base`` is ``None``: ``Randomness.STANDARD``). Their primes are not
safe primes, so the batching argument above covers only the component of order ``n`` (the
one that carries the plaintext): a partial with a small-order error in the other component
can pass its proof, and then either cancels in the combination or makes it fail the
``1 mod n`` check (:class:`AuthenticationError`), never yielding a wrong plaintext.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import secrets
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from itertools import repeat
from typing import Any, Literal, TypeAlias

import gmpy2
import numpy as np
from phe import paillier as phe_paillier

from secagg.errors import (
    AuthenticationError,
    InvalidParameterError,
    MessageError,
    ShareError,
    ThresholdNotMetError,
)
from secagg.primitives.encoding import VectorEncoder
from secagg.primitives.packing import EncryptedVector, PackingScheme
from secagg.primitives.paillier import PaillierEncryptor, Randomness
from secagg.primitives.paillier_group import (
    DEFAULT_KEY_BITS,
    MIN_KEY_BITS,
    STATISTICAL_BITS,
    check_encryption_base,
    multi_exponent,
    public_key_id,
    validate_ciphertext,
)
from secagg.primitives.transcript import canonical
from secagg.validation import is_int

__all__ = [
    "CHALLENGE_BITS",
    "MIN_HAZMAT_KEY_BITS",
    "Workers",
    "decryption_workers",
    "ThresholdPublicKey",
    "KeyShare",
    "DecryptionProof",
    "PartialDecryption",
    "deal_threshold_key",
    "generate_safe_prime",
    "partial_decrypt",
    "proof_response_bits",
    "verify_partial_decryption",
    "combine_partial_decryptions",
    "integer_lagrange",
]

CHALLENGE_BITS = 256
"""Length of the Fiat-Shamir challenge ``e`` (soundness error about ``2^-256`` per query)."""

BATCH_WEIGHT_BITS = 128
"""Length of the random weights ``rho_j`` of a batched proof."""

MIN_HAZMAT_KEY_BITS = 128
"""Smallest modulus the hazmat (testing) opt-in accepts; such keys are NOT secure."""

Workers: TypeAlias = int | Literal["auto"]
"""How many processes a partial decryption runs on: a positive int, or ``"auto"`` (the CPUs
this process may run on)."""

_SIEVE_LIMIT = 1 << 18
_SIEVE_WINDOW = 1 << 16
_MILLER_RABIN_ROUNDS = 40
_CHUNKS_PER_WORKER = 4
_MIN_CIPHERTEXTS_PER_WORKER = 2


@dataclass(frozen=True)
class ThresholdPublicKey:
    """Public part of a dealt threshold Paillier key.

    Attributes:
        paillier: the ``phe`` public key (modulus ``n``, ``g = n + 1``).
        n_decryptors: ``l``, the number of key shares.
        threshold: ``t``, the number of partial decryptions needed.
        verification_base: ``v``, a generator of the squares of ``Z*_(n^2)``.
        verification_keys: ``v_i = v^(Delta s_i)`` for ``i = 1..l``.
        encryption_base: ``g`` in ``QR_n``, the fixed base for :attr:`Randomness.FIXED_BASE`;
            ``None`` for a key whose base nobody could check (distributed key generation,
            :mod:`secagg.primitives.distributed_paillier`): such a key encrypts with
            :attr:`Randomness.STANDARD` only.
        share_bits: bound on the bit length of ``|s_i|`` when the shares are not reduced
            modulo ``n m`` (distributed keys, whose shares are integer points and may be
            negative); ``None`` for dealt keys (``|n^2|``). Proof responses are sized from it.
    """

    paillier: phe_paillier.PaillierPublicKey
    n_decryptors: int
    threshold: int
    verification_base: int
    verification_keys: tuple[int, ...]
    encryption_base: int | None
    share_bits: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.paillier, phe_paillier.PaillierPublicKey):
            raise InvalidParameterError("paillier must be a phe.paillier.PaillierPublicKey")
        if not isinstance(self.n_decryptors, int) or self.n_decryptors < 2:
            raise InvalidParameterError("n_decryptors must be an int >= 2")
        if not isinstance(self.threshold, int) or not 2 <= self.threshold <= self.n_decryptors:
            raise InvalidParameterError("threshold must be an int in [2, n_decryptors]")
        if len(self.verification_keys) != self.n_decryptors:
            raise InvalidParameterError("need one verification key per decryptor")
        n = int(self.paillier.n)
        n2 = n * n
        for value in (self.verification_base, *self.verification_keys):
            validate_ciphertext(value, n, n2)
        if self.encryption_base is not None:
            check_encryption_base(self.encryption_base, n)
        if self.share_bits is not None and (not is_int(self.share_bits) or self.share_bits < 1):
            raise InvalidParameterError("share_bits must be a positive int or None")

    @property
    def n(self) -> int:
        """The modulus."""
        return int(self.paillier.n)

    @property
    def n_squared(self) -> int:
        return int(self.paillier.nsquare)

    @property
    def delta(self) -> int:
        """``Delta = l!``."""
        return math.factorial(self.n_decryptors)

    @cached_property
    def key_id(self) -> bytes:
        """SHA-256 fingerprint of every public value (binds transcripts and proofs to the key)."""
        width = (self.n_squared.bit_length() + 7) // 8
        fields: list[bytes | str | int] = [
            "secagg/threshold-paillier/public-key/v1",
            self.n.to_bytes(width, "big"),
            self.n_decryptors,
            self.threshold,
            self.verification_base.to_bytes(width, "big"),
            b"" if self.encryption_base is None else self.encryption_base.to_bytes(width, "big"),
        ]
        if self.share_bits is not None:
            fields += ["share-bits", self.share_bits]
        fields += [vk.to_bytes(width, "big") for vk in self.verification_keys]
        return hashlib.sha256(canonical(*fields)).digest()

    @property
    def ciphertext_key_id(self) -> bytes:
        """The key id carried by :class:`EncryptedVector` (fingerprint of ``n``)."""
        return public_key_id(self.paillier)

    def packing(self, *, value_bits: int, max_clients: int, value_bound: int = 0) -> PackingScheme:
        """The densest :class:`PackingScheme` for this key."""
        return PackingScheme.for_key(
            self.paillier, value_bits=value_bits, max_clients=max_clients, value_bound=value_bound
        )

    def packing_for(self, encoder: VectorEncoder) -> PackingScheme:
        """The densest :class:`PackingScheme` for this key and an encoder's ring and cohort."""
        return PackingScheme.for_encoder(self.paillier, encoder)

    @property
    def has_encryption_base(self) -> bool:
        """Whether the key carries a checked fixed base (dealt keys do, distributed ones not)."""
        return self.encryption_base is not None

    def encryptor(
        self, packing: PackingScheme, *, randomness: Randomness | None = None
    ) -> PaillierEncryptor:
        """An encryptor under this key using its published fixed base.

        ``randomness`` defaults to ``FIXED_BASE`` for a key with a fixed base and to
        ``STANDARD`` for one without (distributed keys).
        """
        if randomness is None:
            randomness = (
                Randomness.STANDARD if self.encryption_base is None else Randomness.FIXED_BASE
            )
        return PaillierEncryptor(
            self.paillier, packing, randomness=randomness, encryption_base=self.encryption_base
        )


@dataclass(frozen=True)
class KeyShare:
    """Decryptor ``index``'s share of the decryption exponent. Secret.

    ``s_i = f(i) mod n m`` from the dealer; an integer point (possibly negative) of the
    committee's polynomial for a distributed key.
    """

    index: int
    secret: int = field(repr=False)
    public_key: ThresholdPublicKey = field(repr=False)


@dataclass(frozen=True)
class DecryptionProof:
    """Batched Fiat-Shamir proof ``(e, z)`` that a partial decryption used the dealt share."""

    challenge: int
    response: int


@dataclass(frozen=True)
class PartialDecryption:
    """Decryptor ``index``'s partial decryptions ``c_j^(2 Delta s_i)`` of a ciphertext vector."""

    index: int
    values: tuple[int, ...]
    proof: DecryptionProof | None


# --------------------------------------------------------------------------- primes


def _odd_primes(limit: int) -> list[int]:
    sieve = np.ones(limit + 1, dtype=bool)
    sieve[:2] = False
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    return [int(p) for p in np.nonzero(sieve)[0][1:]]


_SMALL_PRIMES: list[int] = []


def _small_primes() -> list[int]:
    if not _SMALL_PRIMES:
        _SMALL_PRIMES.extend(_odd_primes(_SIEVE_LIMIT))
    return _SMALL_PRIMES


def generate_safe_prime(bits: int) -> int:
    """A uniformly drawn safe prime ``p = 2p' + 1`` of exactly ``bits`` bits, top two bits set.

    Candidates ``p'`` start from ``secrets.randbits`` and run through a window in which a
    numpy sieve removes every ``p'`` for which ``p'`` or ``2p' + 1`` has a prime factor below
    ``2^18``; survivors get base-2 Fermat tests, then 40 Miller-Rabin rounds each (gmpy2).

    Raises:
        InvalidParameterError: if ``bits < 16``.
    """
    if not is_int(bits) or bits < 16:
        raise InvalidParameterError(f"bits must be an int >= 16, got {bits!r}")
    primes = [s for s in _small_primes() if s.bit_length() < bits - 2]
    top = bits - 1  # p' has bits - 1 bits
    while True:
        start = gmpy2.mpz(secrets.randbits(top)) | (gmpy2.mpz(3) << (top - 2)) | 1
        alive = np.ones(_SIEVE_WINDOW, dtype=bool)
        for s in primes:
            r = int(start % s)
            half = (s + 1) // 2  # inverse of 2 modulo s
            alive[(-r * half) % s :: s] = False  # s | p'
            alive[(((s - 1) // 2 - r) * half) % s :: s] = False  # s | 2p' + 1
        for offset in np.nonzero(alive)[0].tolist():
            q = start + 2 * offset
            if q.bit_length() != top:
                break
            if gmpy2.powmod(2, q - 1, q) != 1:
                continue
            p = 2 * q + 1
            if gmpy2.powmod(2, p - 1, p) != 1:
                continue
            if gmpy2.is_prime(q, _MILLER_RABIN_ROUNDS) and gmpy2.is_prime(p, _MILLER_RABIN_ROUNDS):
                return int(p)


# --------------------------------------------------------------------------- dealer


def _random_unit(n: Any) -> Any:
    while True:
        x = gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.gcd(x, n) == 1:
            return x


def deal_threshold_key(
    *,
    n_decryptors: int,
    threshold: int,
    key_bits: int = DEFAULT_KEY_BITS,
    hazmat_allow_weak_key: bool = False,
) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    """Trusted dealer: generate a threshold Paillier key and its ``n_decryptors`` shares.

    Args:
        n_decryptors: ``l >= 2`` key shares, indices ``1..l``.
        threshold: ``t`` partial decryptions needed, ``2 <= t <= l``.
        key_bits: modulus size; 3072 (128-bit security) by default, at least 2048.
        hazmat_allow_weak_key: allow ``key_bits`` below 2048 (down to 128). INSECURE: for tests
            only, where safe-prime generation at real sizes would take seconds per key.

    Returns:
        ``(public_key, shares)``; give share ``i`` to decryptor ``i`` over an authenticated,
        confidential channel. The factorisation is discarded when this returns.

    Raises:
        InvalidParameterError: on bad arguments or a weak key size without the opt-in.
    """
    if not is_int(n_decryptors) or n_decryptors < 2:
        raise InvalidParameterError(f"n_decryptors must be an int >= 2, got {n_decryptors!r}")
    if not is_int(threshold) or not 2 <= threshold <= n_decryptors:
        raise InvalidParameterError(
            f"threshold must be an int in [2, n_decryptors={n_decryptors}], got {threshold!r}; "
            "a threshold of 1 would give every decryptor the whole key"
        )
    if not is_int(key_bits) or key_bits % 2:
        raise InvalidParameterError(f"key_bits must be an even int, got {key_bits!r}")
    floor = MIN_HAZMAT_KEY_BITS if hazmat_allow_weak_key else MIN_KEY_BITS
    if key_bits < floor:
        raise InvalidParameterError(
            f"key_bits={key_bits} is below {floor}; use 3072 (default) or 2048, or pass "
            "hazmat_allow_weak_key=True in tests only"
        )
    half = key_bits // 2
    while True:
        p = gmpy2.mpz(generate_safe_prime(half))
        q = gmpy2.mpz(generate_safe_prime(half))
        n = p * q
        # p' != q', p != q' and the like would make m share factors with n or collapse groups
        if p != q and n.bit_length() == key_bits and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            break
    pp, qq = (p - 1) // 2, (q - 1) // 2
    m = pp * qq
    nm = n * m
    n2 = n * n
    d = m * gmpy2.invert(m, n)  # d = 0 mod m, d = 1 mod n
    coefficients = [d] + [gmpy2.mpz(secrets.randbelow(int(nm))) for _ in range(threshold - 1)]
    secrets_i = []
    for i in range(1, n_decryptors + 1):
        acc = gmpy2.mpz(0)
        for a in reversed(coefficients):
            acc = (acc * i + a) % nm
        secrets_i.append(acc)
    delta = math.factorial(n_decryptors)

    # v generates the squares of Z*_(n^2): cyclic of order n p' q' (pairwise coprime factors)
    while True:
        v = gmpy2.powmod(_random_unit(n2), 2, n2)
        if all(gmpy2.powmod(v, nm // f, n2) != 1 for f in (p, q, pp, qq)):
            break
    # g generates QR_n (cyclic of order p' q'), so h = g^n generates the squared n-th residues
    while True:
        g = gmpy2.powmod(_random_unit(n), 2, n)
        if all(gmpy2.powmod(g, m // f, n) != 1 for f in (pp, qq)):
            break
    public = ThresholdPublicKey(
        paillier=phe_paillier.PaillierPublicKey(int(n)),
        n_decryptors=n_decryptors,
        threshold=threshold,
        verification_base=int(v),
        verification_keys=tuple(int(gmpy2.powmod(v, delta * s, n2)) for s in secrets_i),
        encryption_base=int(g),
    )
    shares = tuple(
        KeyShare(index=i, secret=int(s), public_key=public)
        for i, s in enumerate(secrets_i, start=1)
    )
    del p, q, pp, qq, m, nm, d, coefficients, secrets_i
    return public, shares


# --------------------------------------------------------------------------- proofs


def _int_bytes(value: int, width: int) -> bytes:
    return int(value).to_bytes(width, "big")


def _batch_weights(
    public_key: ThresholdPublicKey,
    ciphertexts: Sequence[int],
    values: Sequence[int],
    index: int,
    context: bytes,
) -> list[int]:
    width = (public_key.n_squared.bit_length() + 7) // 8
    h = hashlib.sha256(
        canonical("secagg/threshold-paillier/batch/v1", public_key.key_id, context, index)
    )
    for c in ciphertexts:
        h.update(_int_bytes(c, width))
    for c in values:
        h.update(_int_bytes(c, width))
    stream = hashlib.shake_256(h.digest()).digest(len(ciphertexts) * BATCH_WEIGHT_BITS // 8)
    step = BATCH_WEIGHT_BITS // 8
    return [
        int.from_bytes(stream[j * step : (j + 1) * step], "big") for j in range(len(ciphertexts))
    ]


def _combine_weighted(values: Sequence[int], weights: Sequence[int], modulus: Any) -> Any:
    return gmpy2.mpz(multi_exponent(values, weights, int(modulus)))


def _challenge(
    public_key: ThresholdPublicKey,
    index: int,
    context: bytes,
    u: Any,
    u_i: Any,
    v_i: int,
    a: Any,
    b: Any,
) -> int:
    width = (public_key.n_squared.bit_length() + 7) // 8
    digest = hashlib.sha256(
        canonical(
            "secagg/threshold-paillier/decryption-proof/v1",
            public_key.key_id,
            context,
            index,
            _int_bytes(u, width),
            _int_bytes(u_i, width),
            _int_bytes(public_key.verification_base, width),
            _int_bytes(v_i, width),
            _int_bytes(a, width),
            _int_bytes(b, width),
        )
    ).digest()
    return int.from_bytes(digest, "big") >> (256 - CHALLENGE_BITS)


def proof_response_bits(public_key: ThresholdPublicKey) -> int:
    """Bit length bound of an honest proof response ``z`` (verifiers accept one bit more)."""
    return _response_bits(public_key) + 1


def _response_bits(public_key: ThresholdPublicKey) -> int:
    share_bits = public_key.share_bits
    return (
        max(public_key.n_squared.bit_length(), 0 if share_bits is None else share_bits)
        + public_key.delta.bit_length()
        + CHALLENGE_BITS
        + STATISTICAL_BITS
    )


def _check_context(context: object) -> bytes:
    if not isinstance(context, (bytes, bytearray)):
        raise InvalidParameterError("context must be bytes")
    return bytes(context)


def _check_vector(public_key: ThresholdPublicKey, ciphertexts: EncryptedVector) -> None:
    if not isinstance(ciphertexts, EncryptedVector):
        raise InvalidParameterError("ciphertexts must be an EncryptedVector")
    if ciphertexts.key_id != public_key.ciphertext_key_id:
        raise MessageError("ciphertexts are encrypted under another key")
    n, n2 = public_key.n, public_key.n_squared
    for c in ciphertexts.ciphertexts:
        validate_ciphertext(c, n, n2)


def decryption_workers(workers: object) -> int:
    """The number of processes ``workers`` asks for: itself, or the usable CPUs for ``"auto"``.

    Raises:
        InvalidParameterError: anything but a positive int or ``"auto"``.
    """
    if isinstance(workers, str) and workers == "auto":
        affinity = getattr(os, "sched_getaffinity", None)
        return max(1, len(affinity(0)) if affinity is not None else os.cpu_count() or 1)
    if not is_int(workers) or workers < 1:
        raise InvalidParameterError(f"workers must be a positive int or 'auto', got {workers!r}")
    return workers


def _powmod_chunk(bases: Sequence[int], exponent: int, modulus: int) -> list[int]:
    """``[b^exponent mod modulus for b in bases]`` (the work of one pool task)."""
    e, mod = gmpy2.mpz(exponent), gmpy2.mpz(modulus)
    return [int(gmpy2.powmod(b, e, mod)) for b in bases]


def _pool_context() -> Any:
    # a single-threaded caller forks (a few ms, no re-import of ``__main__``); with other
    # threads alive (a gRPC server, a test runner) forking could copy a held lock, so the
    # workers come from a clean fork server (or are spawned): about a second to start them.
    # Either way no file is written: the exponent and ciphertexts go over a pipe.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _powmod_all(bases: Sequence[int], exponent: Any, modulus: Any, workers: int) -> tuple[int, ...]:
    """Every ``b^exponent mod modulus``, on ``workers`` processes for a long enough vector."""
    workers = min(workers, len(bases) // _MIN_CIPHERTEXTS_PER_WORKER)  # no idle processes
    if workers <= 1:
        return tuple(_powmod_chunk(bases, exponent, modulus))
    pieces = min(len(bases), workers * _CHUNKS_PER_WORKER)
    bounds = [len(bases) * k // pieces for k in range(pieces + 1)]
    chunks = [list(bases[lo:hi]) for lo, hi in zip(bounds, bounds[1:], strict=False)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        results = pool.map(_powmod_chunk, chunks, repeat(int(exponent)), repeat(int(modulus)))
        return tuple(v for chunk in results for v in chunk)


def partial_decrypt(
    share: KeyShare,
    ciphertexts: EncryptedVector,
    *,
    prove: bool = True,
    context: bytes = b"",
    workers: Workers = 1,
) -> PartialDecryption:
    """Decryptor ``share.index``'s partial decryption ``c_j^(2 Delta s_i)`` of every ciphertext.

    Args:
        share: this decryptor's key share.
        ciphertexts: the (aggregate) vector to decrypt. The caller decides whether it *may* be
            decrypted (see ``protocols.paillier``: only legitimate aggregates, once per round).
        prove: attach the batched proof of correctness (the malicious variant needs it).
        context: bytes bound into the proof (round id, protocol, ...).
        workers: processes for the exponentiations ``c_j^(2 Delta s_i)`` (see
            :func:`decryption_workers`); default 1, in this process. The values (and the
            proof's statement) do not depend on it. The workers live for this call only and
            receive the exponent and the ciphertexts over a pipe (never a file); they are
            forked when the caller runs a single thread, else started from a fork server
            (about a second, and a script then needs the ``if __name__ == "__main__":``
            guard). The gain is the number of *free* cores.

    Raises:
        InvalidParameterError, MessageError: malformed share, ciphertexts or ``workers``.
    """
    if not isinstance(share, KeyShare):
        raise InvalidParameterError("share must be a KeyShare")
    context = _check_context(context)
    pk = share.public_key
    _check_vector(pk, ciphertexts)
    processes = decryption_workers(workers)
    n2 = gmpy2.mpz(pk.n_squared)
    exponent = 2 * pk.delta * gmpy2.mpz(share.secret)
    values = _powmod_all(ciphertexts.ciphertexts, exponent, n2, processes)
    proof = None
    if prove:
        weights = _batch_weights(pk, ciphertexts.ciphertexts, values, share.index, context)
        u = gmpy2.powmod(_combine_weighted(ciphertexts.ciphertexts, weights, n2), 4, n2)
        u_i = gmpy2.powmod(_combine_weighted(values, weights, n2), 2, n2)
        v_i = pk.verification_keys[share.index - 1]
        while True:
            r = gmpy2.mpz(secrets.randbits(_response_bits(pk)))
            a = gmpy2.powmod(u, r, n2)
            b = gmpy2.powmod(pk.verification_base, r, n2)
            e = _challenge(pk, share.index, context, u, u_i, v_i, a, b)
            z = r + e * pk.delta * gmpy2.mpz(share.secret)
            # a negative share (distributed keys) gives z < 0 with probability below 2^-128
            if z >= 0:
                break
        proof = DecryptionProof(challenge=e, response=int(z))
    return PartialDecryption(index=share.index, values=values, proof=proof)


def _check_partial_shape(
    public_key: ThresholdPublicKey, ciphertexts: EncryptedVector, partial: object
) -> PartialDecryption:
    if not isinstance(partial, PartialDecryption):
        raise MessageError("not a PartialDecryption")
    if not isinstance(partial.index, int) or not 1 <= partial.index <= public_key.n_decryptors:
        raise MessageError("partial decryption has an unknown decryptor index")
    if len(partial.values) != len(ciphertexts.ciphertexts):
        raise MessageError("partial decryption has the wrong length")
    n, n2 = public_key.n, public_key.n_squared
    for value in partial.values:
        validate_ciphertext(value, n, n2)
    return partial


def verify_partial_decryption(
    public_key: ThresholdPublicKey,
    ciphertexts: EncryptedVector,
    partial: PartialDecryption,
    *,
    context: bytes = b"",
) -> None:
    """Check the batched proof that ``partial`` is ``c_j^(2 Delta s_i)`` for the dealt ``s_i``.

    Raises:
        MessageError: malformed partial decryption.
        AuthenticationError: missing or invalid proof (opaque: says nothing about why).
    """
    context = _check_context(context)
    _check_vector(public_key, ciphertexts)
    _verify_proof(
        public_key, ciphertexts, _check_partial_shape(public_key, ciphertexts, partial), context
    )


def _verify_proof(
    public_key: ThresholdPublicKey,
    ciphertexts: EncryptedVector,
    partial: PartialDecryption,
    context: bytes,
) -> None:
    """The proof check of :func:`verify_partial_decryption` on an already validated partial."""
    proof = partial.proof
    if not isinstance(proof, DecryptionProof):
        raise AuthenticationError()
    e, z = proof.challenge, proof.response
    if (
        not isinstance(e, int)
        or not isinstance(z, int)
        or not 0 <= e < 1 << CHALLENGE_BITS
        or not 0 <= z < 1 << (_response_bits(public_key) + 1)
    ):
        raise AuthenticationError()
    n2 = gmpy2.mpz(public_key.n_squared)
    weights = _batch_weights(
        public_key, ciphertexts.ciphertexts, partial.values, partial.index, context
    )
    u = gmpy2.powmod(_combine_weighted(ciphertexts.ciphertexts, weights, n2), 4, n2)
    u_i = gmpy2.powmod(_combine_weighted(partial.values, weights, n2), 2, n2)
    v = public_key.verification_base
    v_i = public_key.verification_keys[partial.index - 1]
    a = gmpy2.powmod(u, z, n2) * gmpy2.powmod(u_i, -e, n2) % n2
    b = gmpy2.powmod(v, z, n2) * gmpy2.powmod(v_i, -e, n2) % n2
    if not secrets.compare_digest(
        e.to_bytes(CHALLENGE_BITS // 8, "big"),
        _challenge(public_key, partial.index, context, u, u_i, v_i, a, b).to_bytes(
            CHALLENGE_BITS // 8, "big"
        ),
    ):
        raise AuthenticationError()


def integer_lagrange(indices: Sequence[int], delta: int) -> dict[int, int]:
    """Integer coefficients ``Delta prod_(j != i) j / (j - i)`` at 0 (exact: ``Delta = l!``).

    Raises:
        ShareError: if a coefficient is not integral (an index beyond the ``l`` shares).
    """
    coefficients = {}
    for i in indices:
        num, den = delta, 1
        for j in indices:
            if j != i:
                num *= j
                den *= j - i
        if num % den:
            raise ShareError(
                "Lagrange coefficient is not integral: indices exceed the number of shares"
            )
        coefficients[i] = num // den
    return coefficients


def combine_partial_decryptions(
    public_key: ThresholdPublicKey,
    ciphertexts: EncryptedVector,
    partials: Sequence[PartialDecryption],
    *,
    verify: bool = True,
    context: bytes = b"",
) -> tuple[int, ...]:
    """Combine ``t`` partial decryptions of the same vector into its plaintexts.

    Args:
        public_key: the threshold key.
        ciphertexts: the vector that was partially decrypted.
        partials: at least ``t`` partial decryptions with distinct indices; the ``t`` with the
            smallest indices are used.
        verify: check every given partial's proof first (malicious variant). Without proofs,
            a corrupted partial is still detected when the combination is not ``1 mod n``, but
            a partial multiplied by a power of ``1 + n`` would go unnoticed.
        context: as given to :func:`partial_decrypt`.

    Returns:
        The plaintexts, one per ciphertext (unpack them with the :class:`PackingScheme`).

    Raises:
        ThresholdNotMetError: fewer than ``t`` partials.
        ShareError: duplicate indices.
        AuthenticationError: a proof is missing or invalid, or the partials are inconsistent.
        MessageError: malformed input.
    """
    context = _check_context(context)
    _check_vector(public_key, ciphertexts)
    checked = [_check_partial_shape(public_key, ciphertexts, p) for p in partials]
    indices = [p.index for p in checked]
    if len(set(indices)) != len(indices):
        raise ShareError("duplicate decryptor indices among the partial decryptions")
    if len(checked) < public_key.threshold:
        raise ThresholdNotMetError(
            f"{len(checked)} partial decryptions, the threshold is {public_key.threshold}"
        )
    if verify:
        for p in checked:  # vector and shapes were validated above
            _verify_proof(public_key, ciphertexts, p, context)
    chosen = sorted(checked, key=lambda p: p.index)[: public_key.threshold]
    delta = public_key.delta
    lambdas = integer_lagrange([p.index for p in chosen], delta)
    n = gmpy2.mpz(public_key.n)
    n2 = n * n
    scale = gmpy2.invert(4 * delta * delta, n)
    plaintexts = []
    for j in range(len(ciphertexts.ciphertexts)):
        acc = gmpy2.mpz(1)
        for p in chosen:
            acc = acc * gmpy2.powmod(p.values[j], 2 * lambdas[p.index], n2) % n2
        if acc % n != 1:
            raise AuthenticationError()
        plaintexts.append(int((acc - 1) // n * scale % n))
    return tuple(plaintexts)
