"""Physical floors of a masking round, for the SecAgg suite's ratios.

A floor does only what no implementation of the round can skip, with the raw primitives:
AES-256-CTR keystream written by ``cryptography``'s ``update_into`` into a preallocated
buffer, one numpy add per mask into an accumulator of the ring's machine word (4-byte
keystream words and ``uint32`` adds for rings of at most 32 bits, 8-byte words and
``uint64`` adds above: the PRG's output definition), X25519 exchanges, and one
conversion of each client's floats into ring words. The full floor of a round of the
default threat model adds what that model requires and a bare round does not do: the
Ed25519 verifications of what the server relays (:func:`verification_floor_seconds`) and
the uniform draws of stochastic rounding (:func:`rounding_floor_seconds`). Times are CPU
seconds of the process (``time.process_time``): everything measured is single-threaded.
"""

from __future__ import annotations

import os
import time

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from protocols.masking.masks import CHUNK_BYTES
from secagg.primitives import signing
from secagg.primitives.prg import word_bytes

__all__ = [
    "encode_floor_seconds",
    "mask_floor_seconds",
    "rounding_floor_seconds",
    "sum_floor_seconds",
    "verification_floor_seconds",
    "verifications_so_far",
]

#: Verifications timed at most; a larger count is priced at the measured rate.
_VERIFICATIONS_TIMED = 2_000

_clock = time.process_time


def _dtype(bits: int) -> type[np.uint32] | type[np.uint64]:
    return np.uint32 if word_bytes(bits) == 4 else np.uint64


def mask_floor_seconds(num_masks: int, d: int, num_exchanges: int, *, bits: int) -> float:
    """Floor: ``num_exchanges`` X25519 exchanges + ``num_masks`` keystream expansions and adds.

    Each expansion writes ``word_bytes(bits) * d`` keystream bytes and adds them into an
    accumulator of the ring's word. The expansions are timed in two orders -- one whole
    vector per mask, and cache-sized chunks with one live cipher context per mask -- and
    the faster counts, so that the floor is a lower bound for these operations however
    they are scheduled.
    """
    word = word_bytes(bits)
    dtype = _dtype(bits)
    zeros = bytes(word * d)
    seeds = [os.urandom(32) for _ in range(num_masks)]
    private = X25519PrivateKey.generate()
    peers = [
        X25519PrivateKey.generate().public_key() for _ in range(min(max(num_exchanges, 1), 64))
    ]

    started = _clock()
    for i in range(num_exchanges):
        private.exchange(peers[i % len(peers)])
    exchanges = _clock() - started

    buf = np.empty(d + 64 // word, dtype=dtype)
    raw = memoryview(buf.data).cast("B")
    acc = np.zeros(d, dtype=dtype)
    words = buf[:d]
    started = _clock()
    for seed in seeds:
        Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor().update_into(zeros, raw)
        np.add(acc, words, out=acc)
    whole = _clock() - started

    chunk = min(CHUNK_BYTES // word, d)
    scratch = np.empty(chunk + 64 // word, dtype=dtype)
    scratch_raw = memoryview(scratch.data).cast("B")
    acc = np.zeros(d, dtype=dtype)
    started = _clock()
    streams = [Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor() for seed in seeds]
    for lo in range(0, d, chunk):
        hi = min(d, lo + chunk)
        view = acc[lo:hi]
        part = scratch[: hi - lo]
        src = zeros[: word * (hi - lo)]
        for enc in streams:
            enc.update_into(src, scratch_raw)
            np.add(view, part, out=view)
    blocked = _clock() - started
    return exchanges + min(whole, blocked)


def sum_floor_seconds(count: int, d: int, *, bits: int) -> float:
    """Floor of the server's streaming sum: ``count`` adds of ``d`` ring words."""
    dtype = _dtype(bits)
    acc = np.zeros(d, dtype=dtype)
    vector = np.ones(d, dtype=dtype)
    started = _clock()
    for _ in range(count):
        np.add(acc, vector, out=acc)
    return _clock() - started


def encode_floor_seconds(updates: list[npt.NDArray[np.float64]], *, bits: int) -> float:
    """Floor of quantising every update: one conversion of its floats into ring words."""
    dtype = _dtype(bits)
    out = np.empty(max((u.shape[0] for u in updates), default=0), dtype=dtype)
    started = _clock()
    with np.errstate(invalid="ignore"):  # negative floats wrap: the values do not matter
        for u in updates:
            np.copyto(out[: u.shape[0]], u, casting="unsafe")
    return _clock() - started


def verifications_so_far() -> int:
    """Ed25519 verifications this process has made: each loads its key through one cache."""
    info = signing._public_key.cache_info()
    return int(info.hits + info.misses)


def verification_floor_seconds(count: int) -> float:
    """Floor of ``count`` Ed25519 verifications: ``cryptography``'s verify of a real signature.

    At most :data:`_VERIFICATIONS_TIMED` are timed; a larger count is priced at their rate.
    """
    if count <= 0:
        return 0.0
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = os.urandom(96)
    signature = key.sign(message)
    timed = min(count, _VERIFICATIONS_TIMED)
    started = _clock()
    for _ in range(timed):
        public.verify(signature, message)
    return (_clock() - started) * count / timed


def rounding_floor_seconds(updates: list[npt.NDArray[np.float64]]) -> float:
    """Floor of stochastic rounding's randomness: one uniform draw per coordinate.

    The encoder rounds each coordinate up with probability its fraction (unbiased, as the
    DP analysis needs), which takes one ``Generator.random`` draw per value, on top of the
    conversion of :func:`encode_floor_seconds`.
    """
    gen = np.random.default_rng(0)
    out = np.empty(max((u.shape[0] for u in updates), default=0), dtype=np.float64)
    started = _clock()
    for u in updates:
        gen.random(out=out[: u.shape[0]])
    return _clock() - started
