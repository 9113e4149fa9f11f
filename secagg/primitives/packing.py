"""Packing many ring elements into one Paillier plaintext, and encrypted vectors on the wire.

The layout (BatchCrypt, Zhang et al., USENIX ATC 2020) is described in
:mod:`secagg.primitives.paillier`: :class:`PackingScheme` computes slot width and slots
per plaintext from the key and the encoder, packs and unpacks; :class:`EncryptedVector` is
a vector of ciphertexts bound to one key, with its strict binary encoding.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from phe import paillier as phe_paillier

from secagg.errors import CapacityError, EncodingError, MessageError
from secagg.primitives.encoding import MAX_RING_BITS, FixedPointEncoder, VectorEncoder
from secagg.primitives.paillier_group import (
    ciphertext_width,
    key_modulus,
    public_key_id,
    validate_ciphertext,
)
from secagg.primitives.transcript import canonical
from secagg.validation import require_int

__all__ = ["PackingScheme", "EncryptedVector"]

_WIRE_MAGIC = b"SAPV"
_WIRE_VERSION = 1
_WIRE_HEADER = struct.Struct(">4sB32sQI")

U64 = npt.NDArray[np.uint64]


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
        require_int("value_bits", self.value_bits, lo=1, hi=MAX_RING_BITS)
        require_int("max_clients", self.max_clients, lo=1)
        require_int("plaintext_bits", self.plaintext_bits, lo=1)
        top = (1 << self.value_bits) - 1
        bound = require_int("value_bound", self.value_bound, lo=0, hi=top) or top
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
            plaintext_bits=key_modulus(public_key).bit_length() - 1,
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
        require_int("length", length, lo=1)
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
        require_int("summands", summands, lo=0)
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
        """Wire encoding:
        ``magic | version | key_id | length | count | fixed-width ciphertexts``."""
        n = key_modulus(public_key)
        width = ciphertext_width(n)
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
        n = key_modulus(public_key)
        if len(data) < _WIRE_HEADER.size:
            raise MessageError("encrypted vector is truncated")
        magic, version, key_id, length, count = _WIRE_HEADER.unpack_from(data)
        if magic != _WIRE_MAGIC or version != _WIRE_VERSION:
            raise MessageError("not an encrypted vector of a supported version")
        if key_id != public_key_id(public_key):
            raise MessageError("encrypted vector is under another key")
        if length < 1 or count != packing.num_ciphertexts(length):
            raise MessageError("ciphertext count does not match the vector length")
        width = ciphertext_width(n)
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
        """SHA-256 over the canonical encoding of (key, length, ciphertexts): what contributors
        sign."""
        h = hashlib.sha256(
            canonical("secagg/paillier/encrypted-vector/v1", self.key_id, self.length)
        )
        for c in self.ciphertexts:
            c = int(c)
            h.update(canonical(c.to_bytes((c.bit_length() + 7) // 8 or 1, "big")))
        return h.digest()

    def wire_size(self, public_key: phe_paillier.PaillierPublicKey) -> int:
        """Bytes of :meth:`to_bytes` without building it."""
        return _WIRE_HEADER.size + len(self.ciphertexts) * ciphertext_width(key_modulus(public_key))
