"""Packed Paillier encryption for secure aggregation (the hazmat layer).

Scheme (Paillier, EUROCRYPT 1999, with ``g = 1 + n``): for a modulus ``n = p q`` a plaintext
``M`` in ``[0, n)`` encrypts to::

    c = (1 + n)^M * s  mod n^2,   (1 + n)^M = 1 + M n  mod n^2,

where ``s`` is a random *n-th residue*. Multiplying ciphertexts adds plaintexts modulo ``n``,
which is all an aggregating server needs.

Packing (BatchCrypt, Zhang et al., USENIX ATC 2020). Values are elements of Z_(2^b) produced
by a :class:`~secagg.primitives.encoding.VectorEncoder`, each at most a bound ``B`` (``2^b - 1`` in
general; ``L``, the number of levels, for a :class:`~secagg.primitives.encoding.FixedPointEncoder`, whose
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
  dealer makes it and checks its order, see :mod:`secagg.primitives.threshold_paillier`): a forged base
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
import struct
from collections.abc import Iterable, Sequence
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
from secagg.primitives.encoding import MAX_RING_BITS, FixedPointEncoder, VectorEncoder
from secagg.primitives.transcript import canonical

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

DEFAULT_KEY_BITS = 3072
"""Default modulus size: about 128-bit security (NIST SP 800-57)."""

MIN_KEY_BITS = 2048
"""Smallest modulus accepted without the explicit hazmat opt-in (about 112-bit security)."""

STATISTICAL_BITS = 128
"""Statistical security parameter for full-length random exponents and proof masking."""

_WIRE_MAGIC = b"SAPV"
_WIRE_VERSION = 1
_WIRE_HEADER = struct.Struct(">4sB32sQI")
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


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise InvalidParameterError(f"{name} must be {bound}, got {value}")
    return value


def _modulus(public_key: Any) -> int:
    if not isinstance(public_key, phe_paillier.PaillierPublicKey):
        raise InvalidParameterError(
            f"expected a phe.paillier.PaillierPublicKey, got {type(public_key).__name__}"
        )
    return int(public_key.n)


def public_key_id(public_key: phe_paillier.PaillierPublicKey) -> bytes:
    """SHA-256 fingerprint of a Paillier modulus; every ciphertext vector carries it."""
    n = _modulus(public_key)
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
    n = gmpy2.mpz(_modulus(public_key))
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
    if (
        not isinstance(base, int)
        or isinstance(base, bool)
        or not 1 < base < n - 1
        or gmpy2.gcd(base, n) != 1
    ):
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
    if not isinstance(value, int) or isinstance(value, bool):
        raise MessageError("ciphertext is not an integer")
    if not 0 < value < n_squared or gmpy2.gcd(value, n) != 1:
        raise MessageError("ciphertext is not a unit modulo n^2")
    return value


@dataclass(frozen=True)
class PackingScheme:
    """Layout of ``b``-bit ring elements in Paillier plaintexts, with headroom for a sum.

    Args:
        value_bits: ``b``, the ring exponent of the encoder (values are in Z_(2^b)).
        max_clients: the most ciphertexts that may ever be added together.
        plaintext_bits: usable plaintext bits, ``|n| - 1`` for a modulus ``n`` (use
            :meth:`for_key`).
        value_bound: ``B``, the largest value one contribution may put in a slot; ``0``
            (default) means ``2^b - 1``. :meth:`for_encoder` sets it to a
            ``FixedPointEncoder``'s ``levels``, whose encodings already leave room for the sum.

    Attributes:
        slot_bits: ``w = bitlength(max_clients * B)``.
        headroom_bits: ``w - bitlength(B)``.
        slots: ``k = floor(plaintext_bits / w)`` values per ciphertext.

    Raises:
        InvalidParameterError: malformed arguments.
        CapacityError: if not even one slot fits in a plaintext, or a slot would not fit in
            64 bits.
    """

    value_bits: int
    max_clients: int
    plaintext_bits: int
    value_bound: int = 0
    headroom_bits: int = field(init=False)
    slot_bits: int = field(init=False)
    slots: int = field(init=False)

    def __post_init__(self) -> None:
        _check_int("value_bits", self.value_bits, 1, MAX_RING_BITS)
        _check_int("max_clients", self.max_clients, 1)
        _check_int("plaintext_bits", self.plaintext_bits, 1)
        top = (1 << self.value_bits) - 1
        bound = _check_int("value_bound", self.value_bound, 0, top) or top
        slot_bits = (self.max_clients * bound).bit_length()
        if slot_bits > 64:
            raise CapacityError(
                f"slot of {slot_bits} bits for {self.max_clients} x {bound} exceeds 64; "
                "use fewer value bits or a smaller max_clients"
            )
        slots = self.plaintext_bits // slot_bits
        if slots < 1:
            raise CapacityError(
                f"a {slot_bits}-bit slot does not fit in a {self.plaintext_bits}-bit plaintext"
            )
        object.__setattr__(self, "value_bound", bound)
        object.__setattr__(self, "headroom_bits", slot_bits - bound.bit_length())
        object.__setattr__(self, "slot_bits", slot_bits)
        object.__setattr__(self, "slots", slots)

    @classmethod
    def for_key(
        cls,
        public_key: phe_paillier.PaillierPublicKey,
        *,
        value_bits: int,
        max_clients: int,
        value_bound: int = 0,
    ) -> PackingScheme:
        """The densest packing for this key: ``plaintext_bits = |n| - 1``."""
        return cls(
            value_bits=value_bits,
            max_clients=max_clients,
            plaintext_bits=_modulus(public_key).bit_length() - 1,
            value_bound=value_bound,
        )

    @classmethod
    def for_encoder(
        cls, public_key: phe_paillier.PaillierPublicKey, encoder: VectorEncoder
    ) -> PackingScheme:
        """Packing for an encoder's ring and cohort (``value_bound = levels`` when it has one)."""
        levels = encoder.levels if isinstance(encoder, FixedPointEncoder) else 0
        return cls.for_key(
            public_key,
            value_bits=encoder.bits,
            max_clients=encoder.max_clients,
            value_bound=levels,
        )

    def num_ciphertexts(self, length: int) -> int:
        """Ciphertexts needed for ``length`` values: ``ceil(length / k)``."""
        _check_int("length", length, 1)
        return -(-length // self.slots)

    def pack(self, values: npt.ArrayLike) -> list[int]:
        """Pack a 1-D vector of ring elements (integers in ``[0, B]``) into plaintext integers.

        Raises:
            EncodingError: if the input is not a non-empty 1-D integer vector in ``[0, B]``.
        """
        arr = np.asarray(values)
        if arr.ndim != 1 or arr.size == 0:
            raise EncodingError(f"expected a non-empty 1-D vector, got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise EncodingError(f"expected ring elements (integers), got dtype {arr.dtype}")
        if arr.dtype.kind == "i" and int(arr.min()) < 0:
            raise EncodingError("ring elements must be non-negative")
        vals = arr.astype(np.uint64)
        if int(vals.max()) > self.value_bound:
            raise EncodingError(
                f"values must lie in Z_(2^{self.value_bits}) and not exceed {self.value_bound}"
            )
        k, w = self.slots, self.slot_bits
        count = self.num_ciphertexts(vals.size)
        padded = np.zeros(count * k, dtype=np.uint64)
        padded[: vals.size] = vals
        # bit j of slot i goes to bit i*w + j of the plaintext (little-endian throughout)
        bits = ((padded[:, None] >> np.arange(w, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
        packed = np.packbits(bits.reshape(count, k * w), axis=1, bitorder="little")
        return [int.from_bytes(row.tobytes(), "little") for row in packed]

    def unpack(self, plaintexts: Sequence[int], length: int, *, summands: int) -> U64:
        """Unpack the plaintext sum of ``summands`` packed vectors into ring sums in Z_(2^b).

        Each slot holds the integer sum of ``summands`` values in ``[0, B]``; the result is that
        sum modulo ``2^b`` (what an encoder's ``decode_sum`` expects).

        Raises:
            CapacityError: if ``summands`` exceeds ``max_clients``.
            EncodingError: if a plaintext or a slot is larger than such a sum can be (a malformed
                contribution or a wrong decryption).
        """
        _check_int("summands", summands, 0)
        if summands > self.max_clients:
            raise CapacityError(
                f"{summands} summands exceed the packing headroom of {self.max_clients}"
            )
        count = self.num_ciphertexts(length)
        if len(plaintexts) != count:
            raise EncodingError(
                f"expected {count} plaintexts for {length} values, got {len(plaintexts)}"
            )
        k, w = self.slots, self.slot_bits
        nbytes = (k * w + 7) // 8
        chunks = []
        for m in plaintexts:
            m = int(m)
            if m < 0 or m.bit_length() > k * w:
                raise EncodingError("plaintext exceeds the packed layout")
            chunks.append(m.to_bytes(nbytes, "little"))
        raw = np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(count, nbytes)
        bits = np.unpackbits(raw, axis=1, bitorder="little")[:, : k * w].reshape(count * k, w)
        slot_sums: U64 = (bits.astype(np.uint64) << np.arange(w, dtype=np.uint64)).sum(
            axis=1, dtype=np.uint64
        )
        bound = summands * self.value_bound
        if int(slot_sums.max()) > bound or (
            length < count * k and int(slot_sums[length:].max()) != 0
        ):
            raise EncodingError("slot exceeds the sum of the declared number of contributions")
        ring_sums: U64 = slot_sums[:length] & np.uint64((1 << self.value_bits) - 1)
        return ring_sums


@dataclass(frozen=True)
class EncryptedVector:
    """A packed, encrypted vector: ``length`` ring elements in ``len(ciphertexts)`` ciphertexts.

    Attributes:
        key_id: :func:`public_key_id` of the key it is encrypted under.
        length: number of packed values.
        ciphertexts: elements of ``Z*_(n^2)``.
    """

    key_id: bytes
    length: int
    ciphertexts: tuple[int, ...]

    def to_bytes(self, public_key: phe_paillier.PaillierPublicKey) -> bytes:
        """Wire encoding: ``magic | version | key_id | length | count | fixed-width ciphertexts``."""
        n = _modulus(public_key)
        width = _ciphertext_width(n)
        body = b"".join(int(c).to_bytes(width, "big") for c in self.ciphertexts)
        return (
            _WIRE_HEADER.pack(
                _WIRE_MAGIC, _WIRE_VERSION, self.key_id, self.length, len(self.ciphertexts)
            )
            + body
        )

    @classmethod
    def from_bytes(
        cls, data: bytes, public_key: phe_paillier.PaillierPublicKey, packing: PackingScheme
    ) -> EncryptedVector:
        """Strictly decode and validate a wire encoding (see :meth:`to_bytes`).

        Raises:
            MessageError: wrong magic, version, key, size, count, or a ciphertext that is not a
                unit modulo ``n^2``.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MessageError("encrypted vector must be bytes")
        data = bytes(data)
        n = _modulus(public_key)
        if len(data) < _WIRE_HEADER.size:
            raise MessageError("encrypted vector is truncated")
        magic, version, key_id, length, count = _WIRE_HEADER.unpack_from(data)
        if magic != _WIRE_MAGIC or version != _WIRE_VERSION:
            raise MessageError("not an encrypted vector of a supported version")
        if key_id != public_key_id(public_key):
            raise MessageError("encrypted vector is under another key")
        if length < 1 or count != packing.num_ciphertexts(length):
            raise MessageError("ciphertext count does not match the vector length")
        width = _ciphertext_width(n)
        if len(data) != _WIRE_HEADER.size + count * width:
            raise MessageError("encrypted vector has the wrong size")
        n2 = n * n
        body = memoryview(data)[_WIRE_HEADER.size :]
        cts = tuple(
            validate_ciphertext(int.from_bytes(body[i * width : (i + 1) * width], "big"), n, n2)
            for i in range(count)
        )
        return cls(key_id=key_id, length=length, ciphertexts=cts)

    def digest(self) -> bytes:
        """SHA-256 over the canonical encoding of (key, length, ciphertexts): what contributors sign."""
        h = hashlib.sha256(
            canonical("secagg/paillier/encrypted-vector/v1", self.key_id, self.length)
        )
        for c in self.ciphertexts:
            c = int(c)
            h.update(canonical(c.to_bytes((c.bit_length() + 7) // 8 or 1, "big")))
        return h.digest()

    def wire_size(self, public_key: phe_paillier.PaillierPublicKey) -> int:
        """Bytes of :meth:`to_bytes` without building it."""
        return _WIRE_HEADER.size + len(self.ciphertexts) * _ciphertext_width(_modulus(public_key))


def _ciphertext_width(n: int) -> int:
    return ((n * n).bit_length() + 7) // 8


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
        n = _modulus(public_key)
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
        self._width = _ciphertext_width(n)
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
    n = _modulus(public_key)
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
    width = _ciphertext_width(n)
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
        n = _modulus(public_key)
        if not isinstance(packing, PackingScheme):
            raise InvalidParameterError("packing must be a PackingScheme")
        self.public_key = public_key
        self.packing = packing
        self.length = _check_int("length", length, 1)
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
