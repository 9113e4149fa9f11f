"""Encoders the recipe wraps around a round's encoder: for ``verify`` and for simulations.

* :class:`RecordingEncoder` keeps every encoding it produces, so that
  :func:`verify_aggregate` can recompute the survivors' aggregate in plaintext from the
  very encodings that entered the protocol;
* :class:`SeededNoiseEncoder` draws the distributed-DP noise and rounding from seeded
  streams (``SecureAggregator(simulation_seed=...)``: reproducible, not private).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import dp_accounting
import numpy as np
import numpy.typing as npt

from dp.distributed import DistributedDPEncoder, DistributedMechanism
from dp.samplers import sample_discrete_gaussian, sample_skellam
from secagg.primitives.encoding import VectorEncoder
from secagg.primitives.simulation import SimulationStream

__all__ = ["RecordingEncoder", "SeededNoiseEncoder", "digest", "verify_aggregate"]

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]


def digest(values: npt.ArrayLike) -> bytes:
    """SHA-256 of ``values`` as contiguous float64: the key of a client's encodings."""
    data = np.ascontiguousarray(np.asarray(values, dtype=np.float64)).tobytes()
    return hashlib.sha256(data).digest()


class RecordingEncoder:
    """Wraps a :class:`VectorEncoder` and keeps every encoding it produces (for ``verify``).

    Encodings are keyed by a digest of the float input, which is how they are matched back
    to clients after the protocol ran (the in-process driver encodes inside each client).
    """

    def __init__(self, inner: VectorEncoder) -> None:
        self.inner = inner
        self.encodings: dict[bytes, list[U64]] = {}

    @property
    def bits(self) -> int:
        """The wrapped encoder's ring exponent."""
        return self.inner.bits

    @property
    def max_clients(self) -> int:
        """The wrapped encoder's largest number of summands."""
        return self.inner.max_clients

    def encoded_length(self, d: int) -> int:
        """The wrapped encoder's length of an encoding of ``d`` values."""
        return self.inner.encoded_length(d)

    def encode(self, values: npt.ArrayLike) -> U64:
        """Encode with the wrapped encoder and keep a copy of the encoding."""
        encoded = self.inner.encode(values)
        copy = np.array(encoded, dtype=np.uint64)
        self.encodings.setdefault(digest(values), []).append(copy)
        return encoded

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> F64:
        """Decode with the wrapped encoder."""
        return self.inner.decode_sum(summed, n)

    def __getattr__(self, name: str) -> object:
        # anything else a protocol may read from its encoder (e.g. quantisation details)
        return getattr(self.inner, name)


class SeededNoiseEncoder:
    """A distributed-DP encoder whose noise and rounding come from seeded streams.

    Simulation only. The clipping, rotation, scaling and rounding are the wrapped
    encoder's, run by a twin configured without noise; each client's discrete Gaussian
    (or Skellam) share is then drawn by the same sampler as in a private run, keyed from
    the simulation's noise stream, and added in the ring. Decoding and the DP event are
    the wrapped encoder's.
    """

    def __init__(
        self,
        inner: DistributedDPEncoder,
        *,
        noise: SimulationStream,
        rounding: np.random.Generator,
    ) -> None:
        self.inner = inner
        params = inner.parameters
        self._noiseless = DistributedDPEncoder(
            dataclasses.replace(params, noise_multiplier=0.0),
            rotation_seed=inner.rotation_seed,
            rounding_rng=rounding,
        )
        self._noise = noise
        self._mask = np.uint64((1 << params.bits) - 1)

    @property
    def bits(self) -> int:
        """The wrapped encoder's ring exponent."""
        return int(self.inner.bits)

    @property
    def max_clients(self) -> int:
        """The wrapped encoder's expected number of clients."""
        return int(self.inner.max_clients)

    def encoded_length(self, d: int) -> int:
        """The wrapped encoder's (padded) length of an encoding of ``d`` values."""
        return int(self.inner.encoded_length(d))

    def encode(self, values: npt.ArrayLike) -> U64:
        """Encode without noise, then add a noise share drawn from the seeded stream."""
        params = self.inner.parameters
        encoded = np.asarray(self._noiseless.encode(values), dtype=np.uint64)
        if params.noise_multiplier == 0:
            return encoded
        size = params.padded_dimension
        if params.mechanism is DistributedMechanism.DISCRETE_GAUSSIAN:
            noise = sample_discrete_gaussian(params.local_sigma, size, seed=self._noise.key())
        else:
            noise = sample_skellam(params.local_mu, size, seed=self._noise.key())
        # two's complement: adding the int64 noise as uint64 wraps mod 2^64, a multiple of 2^b
        noised: U64 = (encoded + noise.astype(np.int64).view(np.uint64)) & self._mask
        return noised

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> F64:
        """Decode with the wrapped encoder."""
        return np.asarray(self.inner.decode_sum(summed, n), dtype=np.float64)

    def dp_event(self, num_contributors: int) -> dp_accounting.DpEvent:
        """The wrapped encoder's DP event for ``num_contributors`` noise shares."""
        return self.inner.dp_event(num_contributors)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def verify_aggregate(
    recorder: RecordingEncoder, matrix: F64, survivor_pids: Sequence[int], total: F64
) -> tuple[float | None, float | None]:
    """Recompute the survivors' aggregate in plaintext from the recorded encodings.

    Args:
        recorder: the encoder the round ran with.
        matrix: every client's input, row ``p - 1`` for protocol id ``p``.
        survivor_pids: the protocol ids in the aggregate.
        total: the secure aggregate (before central noise).

    Returns:
        ``(max_abs_difference, max_abs_dp_error)``: the largest coordinate difference
        between ``total`` and the decoded sum of the recorded encodings (``None`` when a
        client's encoding cannot be attributed), and between ``total`` and the plaintext
        sum of the rows (``None`` when the shapes differ).
    """
    rows = [p - 1 for p in survivor_pids]
    plain = matrix[rows].sum(axis=0) if rows else np.zeros(matrix.shape[1])
    dp_error = float(np.max(np.abs(total - plain))) if total.shape == plain.shape else None
    length = recorder.encoded_length(matrix.shape[1])
    ring_sum = np.zeros(length, dtype=np.uint64)
    used: dict[bytes, int] = {}
    for row in rows:
        key = digest(matrix[row])
        encodings = recorder.encodings.get(key, [])
        index = used.get(key, 0)
        if index >= len(encodings):
            return None, dp_error  # this client's encoding cannot be attributed
        used[key] = index + 1
        ring_sum += encodings[index]
    ring_sum &= np.uint64((1 << recorder.bits) - 1)
    decoded = recorder.inner.decode_sum(ring_sum, len(rows))
    expected = np.asarray(decoded, dtype=np.float64)
    return float(np.max(np.abs(total - expected))), dp_error
