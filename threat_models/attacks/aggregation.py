"""What secure aggregation reveals: the sums an attacking server learns.

An :data:`Aggregator` is what the attacks call whenever the server learns a sum: the
evaluation passes the real protocol (:func:`protocol_aggregator`, a SecAgg+ round of
``protocols.simulate`` per sum) or :func:`plain_secure_sum`, the ideal functionality.
:func:`secure_sum` and :func:`secure_ring_sum` run one real round on float updates or on
already encoded ones (distributed DP); :func:`ring_sum` is the ideal ring sum. Nothing
here needs torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from protocols.masking.config import Hardening
from protocols.masking.driver import setup_round
from protocols.simulate import simulate
from secagg.errors import InvalidParameterError
from secagg.validation import require_int

__all__ = [
    "Aggregator",
    "plain_secure_sum",
    "ring_sum",
    "model_hash",
    "secure_sum",
    "secure_ring_sum",
    "protocol_aggregator",
]

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
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


def model_hash(model_state: bytes) -> bytes:
    """SHA-256 of a serialised global model: what clients bind into their signed keys."""
    return hashlib.sha256(model_state).digest()


def secure_sum(
    updates: Mapping[int, F64],
    *,
    protocol: str = "secagg+",
    seed: int | None = 0,
    hardening: Hardening | None = None,
    model_hash: bytes | Mapping[int, bytes] | None = None,
) -> F64:
    """The decoded sum from a real ``protocols.simulate`` round (all clients survive).

    Args:
        updates: client id (>= 1) -> flat update.
        protocol: ``"secagg"`` or ``"secagg+"``.
        seed: seed of the simulation's randomness.
        hardening: the clients' checks (default: every check on).
        model_hash: the global model's hash each client binds into its signed keys (one
            for all, or per client: a server sending different models).
    """
    result = simulate(
        dict(updates), protocol=protocol, seed=seed, hardening=hardening, model_hash=model_hash
    )
    return np.asarray(result.aggregate, dtype=np.float64)


def secure_ring_sum(encodings: Mapping[int, U64], *, bits: int, protocol: str = "secagg+") -> U64:
    """The ring sum of already encoded inputs (e.g. distributed-DP encodings) from a real round.

    Each client's encoder runs before masking; the real clients mask the encodings and
    the real server unmasks their sum in Z_(2^bits).
    """
    runner = setup_round(
        {cid: np.asarray(v, dtype=np.uint64) for cid, v in encodings.items()},
        bits=bits,
        protocol=protocol,
    )
    return np.asarray(runner.run().ring_sum, dtype=np.uint64)


def protocol_aggregator(protocol: str = "secagg+") -> tuple[Aggregator, str]:
    """An :data:`~threat_models.attacks.aggregation.Aggregator` backed by a real
    ``protocols.simulate`` round, and its name for the evaluation's rows."""

    def aggregate(updates: Mapping[int, F64]) -> F64:
        ids = sorted(updates)
        # simulate() numbers clients from 1; keep the caller's ids when they already are
        renumbered = (
            {cid: updates[cid] for cid in ids}
            if ids[0] >= 1
            else {i + 1: updates[cid] for i, cid in enumerate(ids)}
        )
        return secure_sum(renumbered, protocol=protocol)

    return aggregate, f"{protocol} protocol"
