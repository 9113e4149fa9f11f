"""What secure aggregation reveals, computed directly: the ideal sum and the ring sum.

An :data:`Aggregator` is what the attacks call whenever the server learns a sum: the
evaluation passes the real protocol
(:func:`threat_models.attacks.protocol_level.protocol_aggregator`) or
:func:`plain_secure_sum`, the ideal functionality. Neither needs torch, so the attacks on
the protocol itself work with the core install.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from secagg.errors import InvalidParameterError
from secagg.validation import require_int

__all__ = ["Aggregator", "plain_secure_sum", "ring_sum"]

F64 = npt.NDArray[np.float64]
Aggregator = Callable[[Mapping[int, F64]], F64]
"""Computes what secure aggregation reveals: the sum of the given clients' flat updates."""


def plain_secure_sum(updates: Mapping[int, F64]) -> F64:
    """The sum of the updates, computed directly: exactly what secure aggregation reveals.

    An ideal-functionality stand-in for a protocol run (``protocols.simulate``), which
    reveals the same sum up to fixed-point quantisation.
    """
    if not updates:
        raise InvalidParameterError("need at least one update")
    vectors = [np.asarray(v, dtype=np.float64) for v in updates.values()]
    if any(v.shape != vectors[0].shape or v.ndim != 1 for v in vectors):
        raise InvalidParameterError("updates must be 1-D vectors of one length")
    return np.asarray(np.sum(vectors, axis=0), dtype=np.float64)


def ring_sum(encodings: Mapping[int, npt.NDArray[np.uint64]], bits: int) -> npt.NDArray[np.uint64]:
    """Sum of ring encodings in Z_(2^bits): what a masking protocol reveals for encoded inputs.

    Used for distributed DP, where each client's encoder (clip, rotate, scale, round, add
    its noise share) runs before masking and the server decodes the ring sum.
    """
    if not encodings:
        raise InvalidParameterError("need at least one encoding")
    bits = require_int("bits", bits, lo=1, hi=64)
    arrays = [np.asarray(e, dtype=np.uint64) for e in encodings.values()]
    if any(a.shape != arrays[0].shape or a.ndim != 1 for a in arrays):
        raise InvalidParameterError("encodings must be 1-D vectors of one length")
    total = np.zeros_like(arrays[0])
    for a in arrays:
        total += a  # uint64 arithmetic wraps modulo 2^64
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    return np.asarray(total & mask, dtype=np.uint64)
