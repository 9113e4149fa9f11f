"""Mask expansion: a 32-byte seed -> d uniform elements of Z_(2^b).

The keystream of AES-256-CTR (default) or ChaCha20, both from ``cryptography``, is cut
into whole little-endian machine words and reduced by masking the low ``b`` bits. Because
the modulus is a power of two, masking a uniform word is exactly uniform: there is no
modulo bias.

Output definition, version :data:`MASK_PRG_VERSION` (= 2): the word is as wide as the
ring needs (:func:`word_bytes`),

* ``b <= 32``: element ``i`` is the little-endian ``uint32`` word at keystream bytes
  ``[4i, 4i + 4)``, reduced mod ``2^b``;
* ``b > 32``: element ``i`` is the little-endian ``uint64`` word at keystream bytes
  ``[8i, 8i + 8)``, reduced mod ``2^b``.

Version 1 cut every ring into 8-byte words; for ``b > 32`` both versions agree. The
version is bound into what a round's parties sign
(:mod:`protocols.masking.transcripts`), so that parties on different definitions refuse
each other instead of producing a wrong sum. Rings of at most 32 bits are then computed in
``uint32`` end to end (half the keystream and half the memory traffic of 8-byte words).

The expansion is deterministic and *seekable*: :meth:`MaskPRG.block` can produce any
window ``[start, stop)`` without generating what precedes it, and :meth:`MaskPRG.add_into`
streams the mask into an accumulator in fixed-size chunks so memory stays O(chunk).

Secrets: seeds must come from ``secrets``/``os.urandom`` or from a key derivation
(:mod:`secagg.primitives.keys`); nothing here ever touches numpy's random generators.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from functools import lru_cache
from typing import cast

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from secagg.errors import InvalidParameterError
from secagg.validation import is_int

__all__ = [
    "PrgAlgorithm",
    "MaskPRG",
    "expand_mask",
    "keystream",
    "secure_uint64",
    "word_bytes",
    "MAX_BITS",
    "MASK_PRG_VERSION",
]

MAX_BITS = 62
MASK_PRG_VERSION = 2
"""The version of the output definition (see the module docstring): 4-byte words for
rings of at most 32 bits, 8-byte words above."""
SEED_BYTES = 32
DEFAULT_CHUNK = 1 << 18  # elements per chunk when streaming

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
_SLACK = 16
_CACHE_CHUNK = 1 << 15  # words per chunk: keystream and reduction stay in L2


@lru_cache(maxsize=4)
def _zero_buffer(nbytes: int) -> bytes:
    return bytes(nbytes)


def _zeros(nbytes: int) -> memoryview:
    """A read-only all-zero buffer of ``nbytes`` (cached for the usual chunk sizes)."""
    size = 1 << max(12, (nbytes - 1).bit_length())
    return memoryview(_zero_buffer(size))[:nbytes]


class PrgAlgorithm(str, Enum):
    """Stream cipher used to expand seeds."""

    AES_256_CTR = "aes-256-ctr"
    CHACHA20 = "chacha20"


def _check_bits(bits: int) -> None:
    if not is_int(bits) or not 1 <= bits <= 64:
        raise InvalidParameterError(f"bits must be an int in [1, 64], got {bits!r}")


def word_bytes(bits: int) -> int:
    """Keystream bytes per element of Z_(2^bits): 4 for ``bits <= 32``, else 8."""
    _check_bits(bits)
    return 4 if bits <= 32 else 8


class MaskPRG:
    """Deterministic, seekable expansion of one 32-byte seed into elements of Z_(2^bits).

    Args:
        seed: exactly 32 bytes of key material.
        bits: modulus exponent b (1..64). Elements come from 4-byte keystream words for
            ``b <= 32`` and from 8-byte words above (:data:`MASK_PRG_VERSION`);
            :meth:`words` returns them in that word (``uint32`` / ``uint64``),
            :meth:`block` and :meth:`expand` always as ``uint64``.
        algorithm: AES-256-CTR (default) or ChaCha20.
        nonce: 16 bytes of IV / counter block start (default all zero). Distinct seeds
            never need distinct nonces; the nonce exists only for domain separation.
    """

    __slots__ = ("_seed", "bits", "algorithm", "_nonce", "word_bytes", "_dtype")

    def __init__(
        self,
        seed: bytes,
        bits: int,
        *,
        algorithm: PrgAlgorithm = PrgAlgorithm.AES_256_CTR,
        nonce: bytes = bytes(16),
    ) -> None:
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_BYTES:
            raise InvalidParameterError("seed must be exactly 32 bytes")
        if not isinstance(nonce, (bytes, bytearray)) or len(nonce) != 16:
            raise InvalidParameterError("nonce must be exactly 16 bytes")
        self._seed = bytes(seed)
        self.word_bytes = word_bytes(bits)
        self.bits = bits
        self.algorithm = PrgAlgorithm(algorithm)
        self._nonce = bytes(nonce)
        self._dtype: type[np.uint32] | type[np.uint64] = (
            np.uint32 if self.word_bytes == 4 else np.uint64
        )

    @property
    def dtype(self) -> type[np.uint32] | type[np.uint64]:
        """The machine word of one element (``uint32`` for ``bits <= 32``, else ``uint64``)."""
        return self._dtype

    def _encryptor_at(self, byte_offset: int) -> tuple[CipherContext, int]:
        """An encryptor positioned at the block holding ``byte_offset``, and the bytes to skip."""
        if self.algorithm is PrgAlgorithm.AES_256_CTR:
            block, skip = divmod(byte_offset, 16)
            counter = (int.from_bytes(self._nonce, "big") + block) % (1 << 128)
            cipher = Cipher(algorithms.AES(self._seed), modes.CTR(counter.to_bytes(16, "big")))
        else:
            # ChaCha20 in cryptography: 16-byte nonce = 4-byte LE block counter || 12-byte nonce.
            block, skip = divmod(byte_offset, 64)
            counter = (int.from_bytes(self._nonce[:4], "little") + block) % (1 << 32)
            full_nonce = counter.to_bytes(4, "little") + self._nonce[4:]
            cipher = Cipher(algorithms.ChaCha20(self._seed, full_nonce), mode=None)  # type: ignore[arg-type]
        return cipher.encryptor(), skip

    def _keystream_into(self, byte_offset: int, out: bytearray | memoryview, nbytes: int) -> None:
        """Write keystream bytes ``[byte_offset, byte_offset + nbytes)`` to ``out[:nbytes]``.

        ``out`` must have 15 spare bytes (``update_into`` may need a block of slack).
        """
        enc, skip = self._encryptor_at(byte_offset)
        if skip:
            enc.update(bytes(skip))
        if nbytes:
            enc.update_into(_zeros(nbytes), out)

    def _keystream_at(self, byte_offset: int, nbytes: int) -> bytes:
        """Keystream bytes ``[byte_offset, byte_offset + nbytes)``."""
        buf = bytearray(nbytes + _SLACK)
        self._keystream_into(byte_offset, buf, nbytes)
        return bytes(buf[:nbytes])

    def words(self, start: int, stop: int) -> U32 | U64:
        """Elements ``[start, stop)`` as a new array of :attr:`dtype` (no widening)."""
        if start < 0 or stop < start:
            raise InvalidParameterError(f"invalid window [{start}, {stop})")
        n = stop - start
        w = self.word_bytes
        buf = np.empty(n + _SLACK // w, dtype=self._dtype)  # spare bytes for update_into
        raw = buf.data.cast("B")
        enc = self._positioned(start)
        full = self.bits == 8 * w
        mask = self._dtype((1 << self.bits) - 1) if not full else None
        for lo in range(0, n, _CACHE_CHUNK):
            hi = min(n, lo + _CACHE_CHUNK)
            # keystream lands directly in the output and is reduced while still in cache
            enc.update_into(_zeros((hi - lo) * w), raw[lo * w : hi * w + _SLACK])
            part = buf[lo:hi]
            if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
                part.byteswap(inplace=True)
            if mask is not None:
                np.bitwise_and(part, mask, out=part)
        return cast("U32 | U64", buf[:n])

    def block(self, start: int, stop: int) -> U64:
        """Elements ``[start, stop)`` of the expansion as a new ``uint64`` array."""
        words = self.words(start, stop)
        if words.dtype == np.uint64:
            return words  # type: ignore[return-value]
        return words.astype(np.uint64)

    def _positioned(self, start: int) -> CipherContext:
        """An encryptor whose next keystream byte is the first byte of element ``start``."""
        enc, skip = self._encryptor_at(start * self.word_bytes)
        if skip:
            enc.update(bytes(skip))
        return enc

    def expand(self, d: int) -> U64:
        """The first ``d`` elements (as ``uint64``; :meth:`words` keeps the element's word)."""
        return self.block(0, d)

    def add_into(
        self,
        acc: npt.NDArray[np.uint32 | np.uint64],
        *,
        subtract: bool = False,
        chunk: int = DEFAULT_CHUNK,
        start: int = 0,
    ) -> None:
        """``acc += mask`` (or ``-=``) modulo 2^bits, in place, chunk by chunk.

        ``acc`` must be a contiguous 1-D ``uint64`` array, or ``uint32`` when
        ``bits <= 32``, holding values in Z_(2^bits); ``start`` is the index of the
        expansion that lines up with ``acc[0]``.
        """
        if (
            not isinstance(acc, np.ndarray)
            or acc.ndim != 1
            or acc.dtype not in (np.uint32, np.uint64)
            or (acc.dtype == np.uint32 and self.bits > 32)
        ):
            raise InvalidParameterError(
                "acc must be a 1-D uint64 array (or uint32 for a ring of at most 32 bits)"
            )
        if chunk <= 0:
            raise InvalidParameterError("chunk must be positive")
        d = acc.shape[0]
        w = self.word_bytes
        step = min(chunk, _CACHE_CHUNK)
        scratch = np.empty(step + _SLACK // w, dtype=self._dtype)
        raw = scratch.data.cast("B")
        acc_bits = 8 * acc.dtype.itemsize
        mask = acc.dtype.type((1 << self.bits) - 1) if self.bits < acc_bits else None
        enc = self._positioned(start)
        for lo in range(0, d, step):
            hi = min(d, lo + step)
            enc.update_into(_zeros((hi - lo) * w), raw)
            words = scratch[: hi - lo]
            if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
                words.byteswap(inplace=True)
            view = acc[lo:hi]
            # raw words are reduced after the add: (a + w) mod 2^b == (a + (w mod 2^b)) mod 2^b
            if subtract:
                np.subtract(view, words, out=view)
            else:
                np.add(view, words, out=view)
            if mask is not None:
                np.bitwise_and(view, mask, out=view)


def expand_mask(
    seed: bytes,
    d: int,
    bits: int,
    *,
    algorithm: PrgAlgorithm = PrgAlgorithm.AES_256_CTR,
) -> U64:
    """Expand ``seed`` into ``d`` uniform elements of Z_(2^bits) (see :class:`MaskPRG`)."""
    return MaskPRG(seed, bits, algorithm=algorithm).expand(d)


def keystream(
    seed: bytes, nbytes: int, *, algorithm: PrgAlgorithm = PrgAlgorithm.AES_256_CTR
) -> bytes:
    """Raw keystream bytes from offset 0: the physical floor mask expansion is benchmarked
    against."""
    return MaskPRG(seed, 64, algorithm=algorithm)._keystream_at(0, nbytes)


def secure_uint64(count: int, *, seed: bytes | None = None) -> U64:
    """``count`` uniform 64-bit words from AES-256-CTR keyed with ``os.urandom(32)``.

    The source of randomness for everything secret or privacy-relevant that needs bulk
    random numbers (DP noise samplers, for example). Pass ``seed`` only in tests, to get
    a reproducible stream.
    """
    if count < 0:
        raise InvalidParameterError("count must be non-negative")
    key = os.urandom(SEED_BYTES) if seed is None else seed
    return MaskPRG(key, 64).expand(count)
