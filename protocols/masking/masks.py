"""Adding many PRG masks to one vector, at the cost of the keystream.

A masked input is ``y = x + PRG(b) + sum_v sign(u, v) PRG(s_uv) mod 2^bits``; unmasking
subtracts the same expansions from a sum. This module computes such signed sums of
expansions with exactly the semantics of :class:`secagg.primitives.prg.MaskPRG` (element
``i`` of the expansion of ``seed`` is the ``i``-th little-endian keystream word of the
AES-256-CTR (or ChaCha20) keystream under ``seed`` and a zero nonce, 4 bytes wide for
``bits <= 32`` and 8 bytes wide above, reduced mod ``2^bits``:
:data:`~secagg.primitives.prg.MASK_PRG_VERSION`), but with less work per mask than calling
:meth:`MaskPRG.add_into` once per seed:

* the accumulator holds unreduced machine words (``uint32`` for a ring of at most 32 bits,
  else ``uint64``) and numpy's wrapping arithmetic works modulo ``2^32`` or ``2^64``;
  since ``2^bits`` divides it, one reduction at the very end gives the result mod
  ``2^bits`` (``(a + w) mod 2^b = (a + (w mod 2^b)) mod 2^b``), so the per-mask work is
  one keystream write and one add;
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
from secagg.primitives.prg import PrgAlgorithm, word_bytes

__all__ = ["apply_masks", "reduce_words", "ring_words", "CHUNK_WORDS", "CHUNK_BYTES"]

CHUNK_BYTES = 1 << 17
"""Bytes of the accumulator walked at a time (all masks of a chunk stay in L2)."""
CHUNK_WORDS = CHUNK_BYTES // 8
"""Elements per chunk of a ``uint64`` accumulator (a ``uint32`` one takes twice as many)."""
_SLACK = 64
_COPY_CHUNK_BYTES = 1 << 19  # input read per check-and-copy step (stays in L2)

Words = npt.NDArray[np.uint32] | npt.NDArray[np.uint64]
_AnyWords = npt.NDArray[np.uint32 | np.uint64]


def _encryptor(seed: bytes, algorithm: PrgAlgorithm) -> CipherContext:
    """Keystream generator at offset 0, identical to ``MaskPRG(seed, ...)`` with the zero nonce."""
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
        raise InvalidParameterError("mask seeds are exactly 32 bytes")
    if algorithm is PrgAlgorithm.AES_256_CTR:
        return Cipher(algorithms.AES(bytes(seed)), modes.CTR(bytes(16))).encryptor()
    return Cipher(algorithms.ChaCha20(bytes(seed), bytes(16)), mode=None).encryptor()


def _word_of(acc: object, bits: int | None) -> int:
    """Keystream bytes per element for ``acc`` in Z_(2^bits); refuses what cannot be right."""
    if (
        not isinstance(acc, np.ndarray)
        or acc.dtype not in (np.uint32, np.uint64)
        or acc.ndim != 1
        or not acc.flags.c_contiguous
        or not acc.flags.writeable
    ):
        raise InvalidParameterError("acc must be a writeable contiguous 1-D uint32 or uint64 array")
    if bits is None:
        if acc.dtype == np.uint64:
            # a uint64 accumulator may hold a ring of any size: 4- or 8-byte words
            raise InvalidParameterError("a uint64 accumulator needs bits (the ring's size)")
        return 4
    word = word_bytes(bits)
    if word > acc.dtype.itemsize:
        raise InvalidParameterError(f"a uint32 accumulator cannot hold Z_(2^{bits})")
    return word


def apply_masks(
    acc: _AnyWords,
    *,
    add: Sequence[bytes] = (),
    subtract: Sequence[bytes] = (),
    algorithm: PrgAlgorithm = PrgAlgorithm.AES_256_CTR,
    bits: int | None = None,
) -> None:
    """``acc += sum PRG(add) - sum PRG(subtract)`` in place, modulo ``2^32`` or ``2^64``.

    Args:
        acc: contiguous 1-D ``uint32`` (a ring of at most 32 bits) or ``uint64`` array.
            Entries need not be reduced; call :func:`reduce_words` at the end to get the
            result mod ``2^bits``.
        add: seeds whose expansions are added.
        subtract: seeds whose expansions are subtracted.
        algorithm: the PRG's stream cipher.
        bits: the ring Z_(2^bits) (it fixes the keystream word). Required with a
            ``uint64`` accumulator; a ``uint32`` one implies ``bits <= 32``.

    Raises:
        InvalidParameterError: a bad accumulator, ring or seed.
    """
    word = _word_of(acc, bits)
    algorithm = PrgAlgorithm(algorithm)
    streams = [(_encryptor(s, algorithm), False) for s in add]
    streams += [(_encryptor(s, algorithm), True) for s in subtract]
    if not streams or acc.size == 0:
        return
    d = acc.shape[0]
    chunk = min(CHUNK_BYTES // acc.dtype.itemsize, d)
    scratch = np.empty(chunk + _SLACK // word, dtype=np.uint32 if word == 4 else np.uint64)
    raw = memoryview(scratch.data).cast("B")
    zeros = bytes(chunk * word)
    big_endian = sys.byteorder != "little"
    for lo in range(0, d, chunk):
        hi = min(d, lo + chunk)
        n = hi - lo
        view = acc[lo:hi]
        words = scratch[:n]
        src = zeros if n == chunk else zeros[: n * word]
        for enc, negative in streams:
            enc.update_into(src, raw)
            if big_endian:  # pragma: no cover - the keystream is little-endian words
                words.byteswap(inplace=True)
            if negative:
                np.subtract(view, words, out=view)
            else:
                np.add(view, words, out=view)


def reduce_words(acc: _AnyWords, bits: int) -> None:
    """Reduce a ``uint32`` or ``uint64`` accumulator mod ``2^bits`` in place."""
    if not 1 <= bits <= 8 * acc.dtype.itemsize:
        raise InvalidParameterError(
            f"bits must lie in [1, {8 * acc.dtype.itemsize}] for a {acc.dtype.name} "
            f"accumulator, got {bits}"
        )
    if bits < 8 * acc.dtype.itemsize:
        np.bitwise_and(acc, acc.dtype.type((1 << bits) - 1), out=acc)


def ring_words(values: npt.NDArray[np.integer], bits: int) -> Words:
    """A new array of the ring's machine word holding ``values``, each checked in [0, 2^bits).

    The word is ``uint32`` for ``bits <= 32``, else ``uint64``. The input is read once: each
    cache-sized chunk is range-checked and then copied while it is still in cache, and a
    check that the input's type makes redundant is skipped (an unsigned type no wider than
    the ring needs none; a signed one no wider needs only the sign; otherwise the largest
    value, with negative values read as unsigned, is compared with ``2^bits``).

    Raises:
        InvalidParameterError: not a 1-D integer array, or a value outside [0, 2^bits).
    """
    if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype.kind not in "ui":
        raise InvalidParameterError("ring elements must be a 1-D integer array")
    word = word_bytes(bits)
    out: Words = np.empty(values.shape[0], dtype=np.uint32 if word == 4 else np.uint64)
    width = 8 * values.dtype.itemsize
    signed = values.dtype.kind == "i"
    probe: npt.NDArray[np.integer] | None = None
    if bits < width:
        # a negative value read as unsigned is at least 2^(width - 1) >= 2^bits
        probe = values.view(np.dtype(f"u{values.dtype.itemsize}")) if signed else values
    elif signed:
        probe = values
    step = _COPY_CHUNK_BYTES // values.dtype.itemsize
    for lo in range(0, values.shape[0], step):
        hi = lo + step
        if probe is not None:
            part = probe[lo:hi]
            bad = int(part.max()) >> bits if bits < width else int(part.min()) < 0
            if bad:
                raise InvalidParameterError(f"input elements must lie in [0, 2^{bits})")
        np.copyto(out[lo:hi], values[lo:hi], casting="unsafe")
    return out
