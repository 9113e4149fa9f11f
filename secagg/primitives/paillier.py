"""Packed Paillier encryption for secure aggregation (the hazmat layer).

Scheme (Paillier, EUROCRYPT 1999, with ``g = 1 + n``): for a modulus ``n = p q`` a plaintext
``M`` in ``[0, n)`` encrypts to::

    c = (1 + n)^M * s  mod n^2,   (1 + n)^M = 1 + M n  mod n^2,

where ``s`` is a random *n-th residue*. Multiplying ciphertexts adds plaintexts modulo ``n``,
which is all an aggregating server needs.

Packing (BatchCrypt, Zhang et al., USENIX ATC 2020). Values are elements of Z_(2^b) produced
by a :class:`~secagg.primitives.encoding.VectorEncoder`, each at most a bound ``B`` (``2^b - 1`` in
general; ``L``, the number of levels, for a :class:`~secagg.primitives.encoding.FixedPointEncoder`,
whose
values never exceed it). A plaintext holds ``k`` slots of ``w`` bits each, slot ``j`` at bit
offset ``j w``::

    M = sum_j x_j 2^(j w),   0 <= x_j <= B.

With ``w = bitlength(max_clients * B)`` the integer sum of up to ``max_clients`` slot values
stays below ``2^w``, so no carry ever crosses into the next slot (for ``B = 2^b - 1`` this is
``w = b + ceil(log2(max_clients))``: ``ceil(log2(max_clients))`` headroom bits); and
``k = floor((|n| - 1) / w)`` keeps every such sum below ``2^(|n|-1) < n``, so nothing wraps
modulo ``n`` either. Each slot of the decrypted sum is then reduced modulo ``2^b``, giving
exactly the ring sum that the masking protocols compute. Values carry no per-value exponent:
the ciphertext reveals nothing about magnitudes. (Packing protects confidentiality only: a
malicious client can still corrupt the sum, with out-of-range slots as with any other value;
there are no range proofs.)

Encryption randomness (:class:`Randomness`):

* ``STANDARD``: ``s = r^n mod n^2`` with ``r`` uniform in ``[1, n)`` -- the textbook scheme,
  identical to ``phe``'s obfuscation. One ``|n|``-bit exponentiation modulo ``n^2`` per
  ciphertext.
* ``FIXED_BASE`` (default): ``s = h^a mod n^2`` where ``h = g^n mod n^2`` for a public ``g``
  that generates ``QR_n`` (so ``h`` generates the group ``SN`` of squared n-th residues,
  isomorphic to ``QR_n``, cyclic of order ``p'q'`` for safe primes), and ``a`` is uniform in
  ``[0, 2^(|n|+128))``. Because ``ord(h) < n``, ``h^a`` is within statistical distance
  ``2^-128`` of uniform on ``SN``. Security needs no assumption beyond Paillier's DCR:
  squaring maps uniform n-th residues to uniform elements of ``SN`` and uniform units to
  uniform squares, so DCR implies that ``SN`` is indistinguishable from the group of squares
  of ``Z*_(n^2)``; and since ``1 + n`` is a square (its order ``n`` is odd), ``(1 + n)^M``
  times a uniform square is a uniform square whatever ``M`` is. The exponentiation uses a
  fixed-base window table precomputed once per key, which is what makes it several times
  faster than ``r^n``. The base ``g`` must come from an authenticated public key (the trusted
  dealer makes it and checks its order, see :mod:`secagg.primitives.threshold_paillier`): a forged
  base
  of small order would expose plaintexts, exactly as a forged ``n`` would. (The ciphertext is
  also ``(1 + n)^M (g^a mod n)^n``, so the sender knows an ``r`` for the textbook form, which
  its proof of plaintext knowledge uses.)
* ``SHORT_EXPONENT`` (hazmat opt-in): as ``FIXED_BASE`` but ``a`` has only twice the security
  level in bits (Damgard, Jurik, Nielsen 2010). Faster still, but it rests on an *extra*
  assumption (the short-exponent indistinguishability of ``h^a``); it is never selected
  unless the caller names it.

All randomness (``r``, ``a``) comes from :mod:`secrets` (the OS CSPRNG).

Proof of plaintext knowledge (:meth:`PaillierEncryptor.prove_knowledge`): a contribution
comes with a batched proof that its sender can open it, bound to a context (round, sender).
Without it, a client colluding with the server could submit the inverse of the other
clients' ciphertexts (ciphertexts are malleable) and leave a single victim's update in an
aggregate of any size; see :mod:`threat_models.paillier`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any

import gmpy2
import numpy as np
import numpy.typing as npt
from phe import paillier as phe_paillier

from secagg.errors import (
    AuthenticationError,
    CapacityError,
    EncodingError,
    InvalidParameterError,
    MessageError,
)
from secagg.primitives.packing import EncryptedVector, PackingScheme
from secagg.primitives.paillier_group import (
    DEFAULT_KEY_BITS,
    MIN_KEY_BITS,
    STATISTICAL_BITS,
    check_encryption_base,
    ciphertext_width,
    key_modulus,
    multi_exponent,
    public_key_id,
    random_encryption_base,
    security_bits,
    validate_ciphertext,
)
from secagg.primitives.transcript import canonical
from secagg.validation import require_int

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "STATISTICAL_BITS",
    "Randomness",
    "PackingScheme",
    "EncryptedVector",
    "PaillierEncryptor",
    "PaillierAggregator",
    "security_bits",
    "public_key_id",
    "random_encryption_base",
    "check_encryption_base",
    "multi_exponent",
    "EncryptionWitness",
    "PlaintextProof",
    "PLAINTEXT_CHALLENGE_BITS",
    "verify_plaintext_knowledge",
    "validate_ciphertext",
    "aggregate",
    "decrypt_with_private_key",
]

_TABLE_BUDGET_BYTES = 64 << 20

U64 = npt.NDArray[np.uint64]


class Randomness(Enum):
    """How the n-th residue that hides a plaintext is drawn (see the module docstring)."""

    STANDARD = "standard"
    """``r^n mod n^2``, ``r`` uniform: textbook Paillier."""

    FIXED_BASE = "fixed_base"
    """``h^a``, full-length ``a``, fixed-base table: same security as textbook (DCR), faster."""

    SHORT_EXPONENT = "short_exponent"
    """``h^a`` with a short ``a``: fastest, needs an extra hardness assumption (opt-in only)."""


class _FixedBaseTable:
    """Fixed-base windowed exponentiation: ``table[i][j] = h^(j 2^(w i)) mod n^2``.

    ``h^a`` for ``a < 2^E`` costs ``ceil(E / w)`` modular multiplications and no squarings.
    """

    def __init__(self, base: int, modulus: int, exponent_bits: int, window_bits: int) -> None:
        self.modulus = gmpy2.mpz(modulus)
        self.window_bits = window_bits
        self.exponent_bits = exponent_bits
        windows = -(-exponent_bits // window_bits)
        size = 1 << window_bits
        table: list[list[Any]] = []
        g = gmpy2.mpz(base)
        for _ in range(windows):
            row = [gmpy2.mpz(1), g]
            for _ in range(size - 2):
                row.append(row[-1] * g % self.modulus)
            table.append(row)
            g = row[-1] * g % self.modulus  # g^(2^w)
        self.table = table
        self._digit_weights = np.left_shift(np.uint64(1), np.arange(window_bits, dtype=np.uint64))

    def power(self, exponent: int) -> Any:
        """``h^exponent mod n^2`` for ``0 <= exponent < 2^exponent_bits``."""
        w = self.window_bits
        windows = len(self.table)
        nbytes = (windows * w + 7) // 8
        bits = np.unpackbits(
            np.frombuffer(exponent.to_bytes(nbytes, "little"), dtype=np.uint8), bitorder="little"
        )
        digits = (
            bits[: windows * w].reshape(windows, w).astype(np.uint64) * self._digit_weights
        ).sum(axis=1)
        acc = gmpy2.mpz(1)
        mod = self.modulus
        table = self.table
        for i, digit in enumerate(digits.tolist()):
            if digit:
                acc = acc * table[i][digit] % mod
        return acc


def _window_bits_for(exponent_bits: int, modulus_bytes: int) -> int:
    for w in (8, 7, 6, 5, 4):
        if -(-exponent_bits // w) * (1 << w) * modulus_bytes <= _TABLE_BUDGET_BYTES:
            return w
    return 4


@lru_cache(maxsize=2)
def _fixed_base_table(base: int, modulus: int, exponent_bits: int) -> _FixedBaseTable:
    window = _window_bits_for(exponent_bits, (modulus.bit_length() + 7) // 8)
    return _FixedBaseTable(base, modulus, exponent_bits, window)


@dataclass(frozen=True)
class EncryptionWitness:
    """What a client keeps (only until it has built its proof) about its own ciphertexts.

    Attributes:
        randomness: how the ciphertexts were randomised.
        plaintexts: the packed plaintexts ``m_j``.
        secrets: ``r_j`` (``STANDARD``: ``c_j = (1+n)^m_j r_j^n``) or the exponents ``a_j``
            (fixed base: ``c_j = (1+n)^m_j (g^a_j)^n``).
    """

    randomness: Randomness
    plaintexts: tuple[int, ...] = field(repr=False)
    secrets: tuple[int, ...] = field(repr=False)


@dataclass(frozen=True)
class PlaintextProof:
    """Batched Fiat-Shamir proof that the sender knows the openings of its ciphertexts."""

    challenge: int
    response: int
    response_unit: int


PLAINTEXT_CHALLENGE_BITS = 128
"""Challenge length of the plaintext-knowledge proof (below the smallest prime factor of n)."""


def _plaintext_weights(
    key_id: bytes, vector: EncryptedVector, context: bytes, width: int
) -> list[int]:
    h = hashlib.sha256(
        canonical("secagg/paillier/plaintext-proof/weights/v1", key_id, context, vector.length)
    )
    for c in vector.ciphertexts:
        h.update(int(c).to_bytes(width, "big"))
    step = 16
    stream = hashlib.shake_256(h.digest()).digest(step * len(vector.ciphertexts))
    return [
        int.from_bytes(stream[k * step : (k + 1) * step], "big")
        for k in range(len(vector.ciphertexts))
    ]


def _plaintext_challenge(
    key_id: bytes, context: bytes, combined: Any, commitment: Any, width: int
) -> int:
    digest = hashlib.sha256(
        canonical(
            "secagg/paillier/plaintext-proof/challenge/v1",
            key_id,
            context,
            int(combined).to_bytes(width, "big"),
            int(commitment).to_bytes(width, "big"),
        )
    ).digest()
    return int.from_bytes(digest, "big") >> (256 - PLAINTEXT_CHALLENGE_BITS)


class PaillierEncryptor:
    """Packs and encrypts ring vectors under one public key.

    Args:
        public_key: ``phe`` public key (modulus ``n``; ``g = n + 1``).
        packing: slot layout (:meth:`PackingScheme.for_key`).
        randomness: how the hiding n-th residue is drawn; ``FIXED_BASE`` by default.
        encryption_base: the public fixed base ``g`` in ``QR_n`` (required unless ``STANDARD``;
            the hiding residue is ``(g^a)^n = h^a`` with ``h = g^n mod n^2``); take it from an
            authenticated key, e.g. ``ThresholdPublicKey.encryption_base``.

    The fixed-base table for ``h`` (up to 64 MiB) is built on first use and cached for the
    two most recently used keys.

    Raises:
        InvalidParameterError: bad key, packing that does not fit the key, or a missing or
            malformed encryption base.
    """

    def __init__(
        self,
        public_key: phe_paillier.PaillierPublicKey,
        packing: PackingScheme,
        *,
        randomness: Randomness = Randomness.FIXED_BASE,
        encryption_base: int | None = None,
    ) -> None:
        n = key_modulus(public_key)
        if not isinstance(packing, PackingScheme):
            raise InvalidParameterError("packing must be a PackingScheme")
        if packing.slots * packing.slot_bits > n.bit_length() - 1:
            raise InvalidParameterError(
                "packing does not fit this key: build it with PackingScheme.for_key"
            )
        if not isinstance(randomness, Randomness):
            raise InvalidParameterError(f"randomness must be a Randomness, got {randomness!r}")
        n2 = n * n
        if randomness is not Randomness.STANDARD and encryption_base is None:
            raise InvalidParameterError(
                f"{randomness.value} randomness needs the key's public encryption base; "
                "pass encryption_base= or use Randomness.STANDARD"
            )
        if encryption_base is not None:
            check_encryption_base(encryption_base, n)
        self.public_key = public_key
        self.packing = packing
        self.randomness = randomness
        self.key_id = public_key_id(public_key)
        self._n = gmpy2.mpz(n)
        self._n2 = gmpy2.mpz(n2)
        self._width = ciphertext_width(n)
        self._base = encryption_base
        self._h = None if encryption_base is None else int(gmpy2.powmod(encryption_base, n, n2))
        if randomness is Randomness.SHORT_EXPONENT:
            self._exponent_bits = 2 * security_bits(n.bit_length())
        else:
            self._exponent_bits = n.bit_length() + STATISTICAL_BITS

    def _hiding(self) -> tuple[int, Any]:
        """A fresh secret (``r`` or ``a``) and its hiding n-th residue."""
        if self.randomness is Randomness.STANDARD:
            r = secrets.randbelow(int(self._n) - 1) + 1
            return r, gmpy2.powmod(r, self._n, self._n2)
        if self._h is None:  # pragma: no cover - excluded by the constructor
            raise InvalidParameterError("missing encryption base")
        # the table covers full-length exponents; short exponents use its low windows
        table = _fixed_base_table(
            self._h, int(self._n2), int(self._n).bit_length() + STATISTICAL_BITS
        )
        a = secrets.randbits(self._exponent_bits)
        return a, table.power(a)

    def encrypt_plaintext(self, plaintext: int) -> int:
        """Encrypt one integer plaintext in ``[0, n)`` (already packed)."""
        return self._encrypt_one(plaintext)[0]

    def _encrypt_one(self, plaintext: int) -> tuple[int, int]:
        if not isinstance(plaintext, int) or not 0 <= plaintext < self._n:
            raise EncodingError("plaintext must be an int in [0, n)")
        secret, hiding = self._hiding()
        return int((1 + plaintext * self._n) * hiding % self._n2), secret

    def encrypt(self, values: npt.ArrayLike) -> EncryptedVector:
        """Pack and encrypt a vector of ring elements in Z_(2^b).

        Raises:
            EncodingError: see :meth:`PackingScheme.pack`.
        """
        return self.encrypt_with_witness(values)[0]

    def encrypt_with_witness(
        self, values: npt.ArrayLike
    ) -> tuple[EncryptedVector, EncryptionWitness]:
        """:meth:`encrypt`, also returning the openings needed by :meth:`prove_knowledge`."""
        plaintexts = self.packing.pack(values)
        pairs = [self._encrypt_one(m) for m in plaintexts]
        vector = EncryptedVector(
            key_id=self.key_id,
            length=int(np.asarray(values).size),
            ciphertexts=tuple(c for c, _ in pairs),
        )
        return vector, EncryptionWitness(
            self.randomness, tuple(plaintexts), tuple(r for _, r in pairs)
        )

    def prove_knowledge(
        self, vector: EncryptedVector, witness: EncryptionWitness, *, context: bytes
    ) -> PlaintextProof:
        """Prove knowledge of the plaintexts and randomness of ``vector`` (batched Sigma protocol).

        With weights ``rho_j`` (128 bits) hashed from the ciphertexts and ``context``, the
        combination ``C = prod c_j^rho_j = (1+n)^M R^n`` with ``M = sum rho_j m_j`` and
        ``R = prod r_j^rho_j`` (or ``g^(sum rho_j a_j)``) mod ``n``. The prover sends
        ``e = H(C, (1+n)^x s^n)``, ``z = x + e M mod n`` and ``w = s R^e mod n`` for random
        ``x``, ``s`` (Damgard-Jurik's proof of a known plaintext, made non-interactive). Binding
        ``context`` to the round and the sender's id makes a proof non-transferable: a colluding
        client cannot submit a combination of other clients' ciphertexts (for example the
        inverse of all but one of them, which would isolate the remaining client's update in
        the aggregate), because it cannot open it.

        Raises:
            InvalidParameterError: witness and vector do not match this encryptor.
        """
        if not isinstance(context, (bytes, bytearray)):
            raise InvalidParameterError("context must be bytes")
        if (
            not isinstance(witness, EncryptionWitness)
            or witness.randomness is not self.randomness
            or len(witness.plaintexts) != len(vector.ciphertexts)
            or len(witness.secrets) != len(vector.ciphertexts)
        ):
            raise InvalidParameterError("the witness does not belong to this vector")
        n, n2 = self._n, self._n2
        weights = _plaintext_weights(self.key_id, vector, bytes(context), self._width)
        big_m = sum(w * m for w, m in zip(weights, witness.plaintexts, strict=True)) % n
        if self.randomness is Randomness.STANDARD:
            big_r = gmpy2.mpz(multi_exponent(list(witness.secrets), weights, int(n)))
        else:
            exponent = sum(w * a for w, a in zip(weights, witness.secrets, strict=True))
            big_r = gmpy2.powmod(self._base, exponent, n)
        combined = (1 + big_m * n) * gmpy2.powmod(big_r, n, n2) % n2
        x = gmpy2.mpz(secrets.randbelow(int(n)))
        while True:
            unit = gmpy2.mpz(secrets.randbelow(int(n) - 1) + 1)
            if gmpy2.gcd(unit, n) == 1:
                break
        commitment = (1 + x * n) * gmpy2.powmod(unit, n, n2) % n2
        e = _plaintext_challenge(self.key_id, bytes(context), combined, commitment, self._width)
        z = (x + e * big_m) % n
        w = unit * gmpy2.powmod(big_r, e, n) % n
        return PlaintextProof(challenge=e, response=int(z), response_unit=int(w))


def verify_plaintext_knowledge(
    public_key: phe_paillier.PaillierPublicKey,
    vector: EncryptedVector,
    proof: PlaintextProof,
    *,
    context: bytes,
) -> None:
    """Check a :meth:`PaillierEncryptor.prove_knowledge` proof for ``vector`` and ``context``.

    Raises:
        AuthenticationError: missing, malformed or invalid proof (opaque).
    """
    n = key_modulus(public_key)
    n2 = n * n
    if (
        not isinstance(proof, PlaintextProof)
        or not isinstance(context, (bytes, bytearray))
        or not all(
            isinstance(v, int) for v in (proof.challenge, proof.response, proof.response_unit)
        )
        or not 0 <= proof.challenge < 1 << PLAINTEXT_CHALLENGE_BITS
        or not 0 <= proof.response < n
        or not 0 < proof.response_unit < n
        or gmpy2.gcd(proof.response_unit, n) != 1
        or not isinstance(vector, EncryptedVector)
        or not vector.ciphertexts
    ):
        raise AuthenticationError()
    key_id = public_key_id(public_key)
    width = ciphertext_width(n)
    weights = _plaintext_weights(key_id, vector, bytes(context), width)
    combined = multi_exponent(list(vector.ciphertexts), weights, n2)
    if gmpy2.gcd(combined, n) != 1:
        raise AuthenticationError()
    mpz_n2 = gmpy2.mpz(n2)
    commitment = (
        (1 + gmpy2.mpz(proof.response) * n)
        * gmpy2.powmod(proof.response_unit, n, mpz_n2)
        * gmpy2.powmod(combined, -proof.challenge, mpz_n2)
        % mpz_n2
    )
    expected = _plaintext_challenge(key_id, bytes(context), combined, commitment, width)
    if not secrets.compare_digest(
        expected.to_bytes(PLAINTEXT_CHALLENGE_BITS // 8, "big"),
        proof.challenge.to_bytes(PLAINTEXT_CHALLENGE_BITS // 8, "big"),
    ):
        raise AuthenticationError()


class PaillierAggregator:
    """The server's running product of encrypted vectors: O(one vector) memory.

    Args:
        public_key: the key the contributions are encrypted under.
        packing: the slot layout; its ``max_clients`` is the hard capacity.
        length: number of values per vector.

    ``add`` refuses (:class:`CapacityError`) a contribution beyond ``packing.max_clients``:
    the headroom bits would overflow into the neighbouring slot.
    """

    def __init__(
        self, public_key: phe_paillier.PaillierPublicKey, packing: PackingScheme, length: int
    ) -> None:
        n = key_modulus(public_key)
        if not isinstance(packing, PackingScheme):
            raise InvalidParameterError("packing must be a PackingScheme")
        self.public_key = public_key
        self.packing = packing
        self.length = require_int("length", length, lo=1)
        self.key_id = public_key_id(public_key)
        self._n = n
        self._n2 = gmpy2.mpz(n) * n
        self._acc: list[Any] = [gmpy2.mpz(1)] * packing.num_ciphertexts(length)
        self._count = 0

    @property
    def count(self) -> int:
        """Contributions added so far."""
        return self._count

    def check(self, vector: EncryptedVector) -> None:
        """Validate a contribution without adding it.

        Raises:
            MessageError: wrong key, length, count or a ciphertext outside ``Z*_(n^2)``.
            CapacityError: if the aggregate is full.
        """
        if not isinstance(vector, EncryptedVector):
            raise MessageError("contribution is not an EncryptedVector")
        if vector.key_id != self.key_id:
            raise MessageError("contribution is encrypted under another key")
        if vector.length != self.length or len(vector.ciphertexts) != len(self._acc):
            raise MessageError("contribution has the wrong length")
        n2 = int(self._n2)
        for c in vector.ciphertexts:
            validate_ciphertext(c, self._n, n2)
        if self._count + 1 > self.packing.max_clients:
            raise CapacityError(
                f"aggregate already holds {self._count} contributions, the packing headroom allows "
                f"{self.packing.max_clients}"
            )

    def add(self, vector: EncryptedVector) -> None:
        """Multiply a validated contribution into the aggregate (all-or-nothing)."""
        self.check(vector)
        n2 = self._n2
        self._acc = [a * c % n2 for a, c in zip(self._acc, vector.ciphertexts, strict=True)]
        self._count += 1

    def result(self) -> EncryptedVector:
        """The encrypted sum of everything added so far."""
        return EncryptedVector(
            key_id=self.key_id, length=self.length, ciphertexts=tuple(int(a) for a in self._acc)
        )


def aggregate(
    public_key: phe_paillier.PaillierPublicKey,
    packing: PackingScheme,
    vectors: Iterable[EncryptedVector],
) -> EncryptedVector:
    """Homomorphic sum of encrypted vectors (validated, capacity-checked).

    Raises:
        InvalidParameterError: if ``vectors`` is empty.
    """
    items = list(vectors)
    if not items:
        raise InvalidParameterError("nothing to aggregate")
    agg = PaillierAggregator(public_key, packing, items[0].length)
    for v in items:
        agg.add(v)
    return agg.result()


def decrypt_with_private_key(
    private_key: phe_paillier.PaillierPrivateKey,
    vector: EncryptedVector,
    packing: PackingScheme,
    *,
    summands: int,
) -> U64:
    """Decrypt with a single whole private key (``phe``'s CRT decryption) and unpack.

    For tests and for the single-key baseline only: in the protocols no party holds the whole
    key; see :mod:`secagg.primitives.threshold_paillier`.
    """
    if not isinstance(private_key, phe_paillier.PaillierPrivateKey):
        raise InvalidParameterError("expected a phe.paillier.PaillierPrivateKey")
    if vector.key_id != public_key_id(private_key.public_key):
        raise MessageError("vector is encrypted under another key")
    plaintexts = [int(private_key.raw_decrypt(c)) for c in vector.ciphertexts]
    return packing.unpack(plaintexts, vector.length, summands=summands)
