"""Adding many PRG masks to one vector, at the cost of the keystream.

A masked input is ``y = x + PRG(b) + sum_v sign(u, v) PRG(s_uv) mod 2^bits``; unmasking
subtracts the same expansions from a sum. This module computes such signed sums of
expansions with exactly the semantics of :class:`secagg.primitives.prg.MaskPRG` (element
``i`` of the expansion of ``seed`` is the ``i``-th little-endian 64-bit word of the
AES-256-CTR (or ChaCha20) keystream under ``seed`` and a zero nonce, reduced mod
``2^bits``), but with less work per mask than calling :meth:`MaskPRG.add_into` once per
seed:

* the accumulator holds unreduced ``uint64`` words and numpy's wrapping arithmetic works
  modulo ``2^64``; since ``2^bits`` divides ``2^64``, one reduction at the very end gives
  the result mod ``2^bits`` (``(a + w) mod 2^b = (a + (w mod 2^b)) mod 2^b``), so the
  per-mask work is one keystream write and one add;
* the vector is walked in cache-sized chunks with one live cipher context per seed, so
  each chunk of the accumulator is loaded from memory once for all the masks and the
  keystream never leaves the cache.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from secagg.errors import InvalidParameterError
from secagg.primitives.prg import PrgAlgorithm

__all__ = ["apply_masks", "reduce_words", "CHUNK_WORDS"]

CHUNK_WORDS = 1 << 14
_SLACK = 64


def _encryptor(seed: bytes, algorithm: PrgAlgorithm) -> CipherContext:
    """Keystream generator at offset 0, identical to ``MaskPRG(seed, ...)`` with the zero nonce."""
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
        raise InvalidParameterError("mask seeds are exactly 32 bytes")
    if algorithm is PrgAlgorithm.AES_256_CTR:
        return Cipher(algorithms.AES(bytes(seed)), modes.CTR(bytes(16))).encryptor()
    return Cipher(algorithms.ChaCha20(bytes(seed), bytes(16)), mode=None).encryptor()


def apply_masks(
    acc: npt.NDArray[np.uint64],
    *,
    add: Sequence[bytes] = (),
    subtract: Sequence[bytes] = (),
    algorithm: PrgAlgorithm = PrgAlgorithm.AES_256_CTR,
) -> None:
    """``acc += sum PRG(add) - sum PRG(subtract)`` in place, modulo ``2^64``.

    Args:
        acc: contiguous 1-D ``uint64`` array. Entries need not be reduced; call
            :func:`reduce_words` at the end to get the result mod ``2^bits``.
        add: seeds whose expansions are added.
        subtract: seeds whose expansions are subtracted.
        algorithm: the PRG's stream cipher.
    """
    if (
        not isinstance(acc, np.ndarray)
        or acc.dtype != np.uint64
        or acc.ndim != 1
        or not acc.flags.c_contiguous
        or not acc.flags.writeable
    ):
        raise InvalidParameterError("acc must be a writeable contiguous 1-D uint64 array")
    algorithm = PrgAlgorithm(algorithm)
    streams = [(_encryptor(s, algorithm), False) for s in add]
    streams += [(_encryptor(s, algorithm), True) for s in subtract]
    if not streams or acc.size == 0:
        return
    d = acc.shape[0]
    chunk = min(CHUNK_WORDS, d)
    scratch = np.empty(chunk + _SLACK // 8, dtype=np.uint64)
    raw = memoryview(scratch.data).cast("B")
    zeros = bytes(chunk * 8)
    big_endian = sys.byteorder != "little"
    for lo in range(0, d, chunk):
        hi = min(d, lo + chunk)
        n = hi - lo
        view = acc[lo:hi]
        words = scratch[:n]
        src = zeros if n == chunk else zeros[: n * 8]
        for enc, negative in streams:
            enc.update_into(src, raw)
            if big_endian:  # pragma: no cover - the keystream is little-endian words
                words.byteswap(inplace=True)
            if negative:
                np.subtract(view, words, out=view)
            else:
                np.add(view, words, out=view)


def reduce_words(acc: npt.NDArray[np.uint64], bits: int) -> None:
    """Reduce a ``uint64`` accumulator mod ``2^bits`` in place."""
    if not 1 <= bits <= 64:
        raise InvalidParameterError(f"bits must lie in [1, 64], got {bits}")
    if bits < 64:
        np.bitwise_and(acc, np.uint64((1 << bits) - 1), out=acc)
