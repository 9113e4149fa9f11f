"""Mask expansion: a 32-byte seed -> d uniform elements of Z_(2^b).

The keystream of AES-256-CTR (default) or ChaCha20, both from ``cryptography``, is cut
into whole little-endian words (4 bytes when b <= 32, else 8 bytes) and reduced by masking
the low ``b`` bits. Because the modulus is a power of two, masking a uniform word is
exactly uniform: there is no modulo bias.

Element ``i`` always comes from keystream bytes ``[i*w, (i+1)*w)`` (``w`` the word size),
so the expansion is deterministic and *seekable*: :meth:`MaskPRG.block` can produce any
window ``[start, stop)`` without generating what precedes it, and :meth:`MaskPRG.add_into`
streams the mask into an accumulator in fixed-size chunks so memory stays O(chunk).

Secrets: seeds must come from ``secrets``/``os.urandom`` or from a key derivation
(:mod:`secagg.keys`); nothing here ever touches numpy's random generators.
"""

from __future__ import annotations

import os
from enum import Enum

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.errors import InvalidParameterError

__all__ = ["PrgAlgorithm", "MaskPRG", "expand_mask", "keystream", "secure_uint64", "MAX_BITS"]

MAX_BITS = 62
SEED_BYTES = 32
DEFAULT_CHUNK = 1 << 18  # elements per chunk when streaming

U64 = npt.NDArray[np.uint64]


class PrgAlgorithm(str, Enum):
    """Stream cipher used to expand seeds."""

    AES_256_CTR = "aes-256-ctr"
    CHACHA20 = "chacha20"


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 64:
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

    __slots__ = ("_seed", "bits", "algorithm", "_nonce", "word_bytes", "_mask")

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
        self.word_bytes = 4 if bits <= 32 else 8
        self._mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)

    def _keystream_at(self, byte_offset: int, nbytes: int) -> bytes:
        """Keystream bytes ``[byte_offset, byte_offset + nbytes)``."""
        block, skip = divmod(byte_offset, 16 if self.algorithm is PrgAlgorithm.AES_256_CTR else 64)
        if self.algorithm is PrgAlgorithm.AES_256_CTR:
            counter = (int.from_bytes(self._nonce, "big") + block) % (1 << 128)
            cipher = Cipher(algorithms.AES(self._seed), modes.CTR(counter.to_bytes(16, "big")))
        else:
            # ChaCha20 in cryptography: 16-byte nonce = 4-byte LE block counter || 12-byte nonce.
            counter = (int.from_bytes(self._nonce[:4], "little") + block) % (1 << 32)
            full_nonce = counter.to_bytes(4, "little") + self._nonce[4:]
            cipher = Cipher(algorithms.ChaCha20(self._seed, full_nonce), mode=None)  # type: ignore[arg-type]
        enc = cipher.encryptor()
        if skip:
            enc.update(bytes(skip))
        return enc.update(bytes(nbytes))

    def block(self, start: int, stop: int) -> U64:
        """Elements ``[start, stop)`` of the expansion as a new ``uint64`` array."""
        if start < 0 or stop < start:
            raise InvalidParameterError(f"invalid window [{start}, {stop})")
        n = stop - start
        raw = self._keystream_at(start * self.word_bytes, n * self.word_bytes)
        if self.word_bytes == 4:
            out = np.frombuffer(raw, dtype="<u4").astype(np.uint64)
        else:
            out = np.frombuffer(raw, dtype="<u8").copy()
        if self.bits < 64:
            np.bitwise_and(out, self._mask, out=out)
        return out

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
        for lo in range(0, d, chunk):
            hi = min(d, lo + chunk)
            part = self.block(start + lo, start + hi)
            view = acc[lo:hi]
            if subtract:
                np.subtract(view, part, out=view)
            else:
                np.add(view, part, out=view)
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


def keystream(seed: bytes, nbytes: int, *, algorithm: PrgAlgorithm = PrgAlgorithm.AES_256_CTR) -> bytes:
    """Raw keystream bytes: the physical floor that mask expansion is benchmarked against."""
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
