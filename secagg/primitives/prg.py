"""Mask expansion: a 32-byte seed -> d uniform elements of Z_(2^b).

The keystream of AES-256-CTR (default) or ChaCha20, both from ``cryptography``, is cut
into whole little-endian 64-bit words and reduced by masking the low ``b`` bits. Because
the modulus is a power of two, masking a uniform word is exactly uniform: there is no
modulo bias. (Narrower words for small ``b`` would save keystream but not time: writing
the ``uint64`` output costs more than AES-NI spends on the extra keystream.)

Element ``i`` always comes from keystream bytes ``[8i, 8i + 8)``,
so the expansion is deterministic and *seekable*: :meth:`MaskPRG.block` can produce any
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

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from secagg.errors import InvalidParameterError
from secagg.validation import is_int

__all__ = ["PrgAlgorithm", "MaskPRG", "expand_mask", "keystream", "secure_uint64", "MAX_BITS"]

MAX_BITS = 62
SEED_BYTES = 32
DEFAULT_CHUNK = 1 << 18  # elements per chunk when streaming

U64 = npt.NDArray[np.uint64]
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


class MaskPRG:
    """Deterministic, seekable expansion of one 32-byte seed into elements of Z_(2^bits).

    Args:
        seed: exactly 32 bytes of key material.
        bits: modulus exponent b (1..64); elements are returned as ``uint64``.
        algorithm: AES-256-CTR (default) or ChaCha20.
        nonce: 16 bytes of IV / counter block start (default all zero). Distinct seeds
            never need distinct nonces; the nonce exists only for domain separation.
    """

    __slots__ = ("_seed", "bits", "algorithm", "_nonce", "_mask")

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
        _check_bits(bits)
        self._seed = bytes(seed)
        self.bits = bits
        self.algorithm = PrgAlgorithm(algorithm)
        self._nonce = bytes(nonce)
        self._mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)

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

    def block(self, start: int, stop: int) -> U64:
        """Elements ``[start, stop)`` of the expansion as a new ``uint64`` array."""
        if start < 0 or stop < start:
            raise InvalidParameterError(f"invalid window [{start}, {stop})")
        n = stop - start
        buf = np.empty(n + 2, dtype=np.uint64)  # 16 spare bytes for update_into
        raw = buf.data.cast("B")
        enc = self._positioned(start)
        for lo in range(0, n, _CACHE_CHUNK):
            hi = min(n, lo + _CACHE_CHUNK)
            # keystream lands directly in the output and is reduced while still in cache
            enc.update_into(_zeros((hi - lo) * 8), raw[lo * 8 : hi * 8 + _SLACK])
            part = buf[lo:hi]
            if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
                part.byteswap(inplace=True)
            if self.bits < 64:
                np.bitwise_and(part, self._mask, out=part)
        out: U64 = buf[:n]
        return out

    def _positioned(self, start: int) -> CipherContext:
        """An encryptor whose next keystream byte is the first byte of element ``start``."""
        enc, skip = self._encryptor_at(start * 8)
        if skip:
            enc.update(bytes(skip))
        return enc

    def expand(self, d: int) -> U64:
        """The first ``d`` elements."""
        return self.block(0, d)

    def add_into(
        self, acc: U64, *, subtract: bool = False, chunk: int = DEFAULT_CHUNK, start: int = 0
    ) -> None:
        """``acc += mask`` (or ``-=``) modulo 2^bits, in place, chunk by chunk.

        ``acc`` must be a contiguous ``uint64`` array holding values in Z_(2^bits);
        ``start`` is the index of the expansion that lines up with ``acc[0]``.
        """
        if acc.dtype != np.uint64 or acc.ndim != 1:
            raise InvalidParameterError("acc must be a 1-D uint64 array")
        if chunk <= 0:
            raise InvalidParameterError("chunk must be positive")
        d = acc.shape[0]
        step = min(chunk, _CACHE_CHUNK)
        scratch = np.empty(step + 2, dtype=np.uint64)
        raw = scratch.data.cast("B")
        enc = self._positioned(start)
        for lo in range(0, d, step):
            hi = min(d, lo + step)
            enc.update_into(_zeros((hi - lo) * 8), raw)
            words = scratch[: hi - lo]
            if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
                words.byteswap(inplace=True)
            view = acc[lo:hi]
            # raw words are reduced after the add: (a + w) mod 2^b == (a + (w mod 2^b)) mod 2^b
            if subtract:
                np.subtract(view, words, out=view)
            else:
                np.add(view, words, out=view)
            if self.bits < 64:
                np.bitwise_and(view, self._mask, out=view)


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
