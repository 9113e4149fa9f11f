"""Seeded randomness for reproducible simulations -- never for a private run.

A :class:`SimulationRandomness` turns an integer seed into independent, deterministic
byte streams, one per purpose (cohort sampling, DP noise, rounding, ...). Each stream is
the AES-256-CTR keystream (from ``cryptography``) under the key
``SHA-256("secagg-fl simulation v1" || 0 || purpose || 0 || seed)``, so the code that
consumes it is the same code that consumes the OS CSPRNG in a private run (the samplers
take bytes or a 32-byte PRG key either way); only the source of the key differs.

Why this is not private: whoever knows the seed -- and a small integer seed is easy to
guess -- can predict every cohort and every noise sample, subtract the noise and read the
exact sum. Use it to reproduce figures (tests, papers, demos); never in a deployment. The
recipe that uses it emits :class:`UnsafeSimulationWarning` and marks its ledger and its
privacy statements as seeded. Masks, key pairs, Shamir shares and Paillier keys never come
from here: they always come from the OS CSPRNG.
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.errors import InvalidParameterError
from secagg.validation import is_int

__all__ = [
    "SIMULATION_WARNING",
    "SimulationRandomness",
    "SimulationStream",
    "UnsafeSimulationWarning",
]

_DOMAIN = b"secagg-fl simulation v1"
_KEY_BYTES = 32

#: What every seeded run states about itself.
SIMULATION_WARNING = (
    "seeded simulation: cohorts and DP noise come from a PRG keyed by a known seed, so anyone "
    "who knows or guesses the seed can predict them and remove the noise; the run is "
    "reproducible and NOT private (for experiments only, never for real data)"
)


class UnsafeSimulationWarning(UserWarning):
    """Cohorts and DP noise come from a seeded PRG: the run is reproducible and not private."""


class SimulationStream:
    """One deterministic byte stream: the AES-256-CTR keystream under a derived key.

    Args:
        key: 32-byte AES key (derived by :meth:`SimulationRandomness.stream`).
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
            raise InvalidParameterError("a simulation stream needs a 32-byte key")
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def read(self, count: int) -> bytes:
        """The next ``count`` bytes of the stream (same signature as ``secrets.token_bytes``)."""
        if not is_int(count) or count < 0:
            raise InvalidParameterError(f"count must be a non-negative int, got {count!r}")
        return self._encryptor.update(bytes(count))

    def key(self) -> bytes:
        """A 32-byte key for a PRG-based sampler (the next 32 bytes of the stream)."""
        return self.read(_KEY_BYTES)

    def integer(self) -> int:
        """A 63-bit non-negative integer (e.g. a numpy seed for non-secret rounding)."""
        return int.from_bytes(self.read(8), "little") >> 1

    def numpy_generator(self) -> np.random.Generator:
        """A numpy generator seeded from the stream, for code whose interface takes one."""
        return np.random.default_rng(np.frombuffer(self.read(32), dtype=np.uint64).tolist())


class SimulationRandomness:
    """Independent deterministic streams derived from one integer seed.

    Args:
        seed: any non-negative int. Two instances with the same seed give the same streams.

    Raises:
        InvalidParameterError: a negative or non-integer seed.
    """

    def __init__(self, seed: int) -> None:
        if not is_int(seed) or seed < 0:
            raise InvalidParameterError(
                f"a simulation seed must be a non-negative int, got {seed!r}"
            )
        self._seed = seed

    @property
    def seed(self) -> int:
        """The seed."""
        return self._seed

    def stream(self, purpose: str) -> SimulationStream:
        """A fresh stream for ``purpose`` (distinct purposes give unrelated streams)."""
        if not isinstance(purpose, str) or not purpose or "\x00" in purpose:
            raise InvalidParameterError("purpose must be a non-empty string without NUL")
        material = b"\x00".join([_DOMAIN, purpose.encode(), str(self._seed).encode()])
        return SimulationStream(hashlib.sha256(material).digest())

    def __repr__(self) -> str:
        return f"SimulationRandomness(seed={self._seed})"
