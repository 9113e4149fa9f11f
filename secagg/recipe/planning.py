"""Round planning shared by the recipe and the Flower adapter.

Both the recipe's :class:`~secagg.recipe.aggregator.SecureAggregator` and Flower's
:class:`~protocols.flower.policy.SecAggPolicy` derive a round's encoding from the same
public inputs -- the protocol, the threat model, the clip norm, the cohort size and the
dimension -- so that the server and every client compute the same parameters:

* without distributed noise, a fixed-point encoder on ``[-B, B]``
  (:func:`fixed_point_encoder`, ring :func:`fixed_point_ring_bits`);
* with distributed DP, the discrete Gaussian encoder of :mod:`dp.distributed`
  (:func:`distributed_encoder`, ring :func:`distributed_ring_bits`), with the minimum
  aggregate the noise needs (:func:`dp_minimum_threat_model`).
"""

from __future__ import annotations

import dataclasses
import math

from dp.distributed import (
    DistributedDPEncoder,
    DistributedMechanism,
    select_parameters_for_threat_model,
)
from protocols.options import ProtocolName
from secagg.primitives.encoding import FixedPointEncoder
from threat_models.model import ThreatModel

__all__ = [
    "distributed_encoder",
    "distributed_ring_bits",
    "dp_minimum_threat_model",
    "fixed_point_encoder",
    "fixed_point_ring_bits",
]

#: Quantisation levels per client, in bits, for clipped and unclipped updates.
_CLIPPED_LEVEL_BITS = 24
_UNCLIPPED_LEVEL_BITS = 40
#: The most the fixed-point encoder supports.
_MAX_RING_BITS = 62


def fixed_point_ring_bits(cohort: int, *, clipped: bool, max_weight: float | None = None) -> int:
    """Ring exponent of the fixed-point encoding: ``2^L`` levels per client over ``log2 n``.

    With clipping ``L = 24`` (a quantum of ``2C / 2^24``, far below any useful update
    resolution), so small cohorts fit 32-bit words, which halves the masked vectors;
    without clipping the range is the wide ``value_bound``, so ``L = 40``. A weighted
    mean widens the range by ``max_weight`` and adds its bits, keeping the resolution of
    a unit weight.
    """
    level_bits = _CLIPPED_LEVEL_BITS if clipped else _UNCLIPPED_LEVEL_BITS
    if max_weight is not None:
        level_bits += max(0, math.ceil(math.log2(max_weight)))
    return min(_MAX_RING_BITS, max(32, (cohort - 1).bit_length() + level_bits))


def fixed_point_encoder(
    bound: float, *, cohort: int, clipped: bool, max_weight: float | None = None
) -> FixedPointEncoder:
    """The encoder of a round without distributed noise: ``[-B, B]`` for ``cohort`` summands.

    ``B`` is the clip norm (every coordinate of a clipped update lies within it) or the
    value bound, times ``max_weight`` for a weighted mean, plus a relative ``1e-9`` so
    that float rounding of a clipped update never leaves the range.
    """
    scale = max_weight if max_weight is not None else 1.0
    return FixedPointEncoder.symmetric(
        bound * scale * (1.0 + 1e-9),
        bits=fixed_point_ring_bits(cohort, clipped=clipped, max_weight=max_weight),
        max_clients=cohort,
    )


def distributed_ring_bits(protocol: ProtocolName) -> int:
    """Ring of distributed DP: 32-bit words for masking (half the bytes of 64-bit words);
    24 bits for Paillier, whose packing then fits more slots per ciphertext."""
    return 24 if protocol is ProtocolName.PAILLIER else 32


def distributed_encoder(
    threat_model: ThreatModel,
    *,
    noise_multiplier: float,
    clip_norm: float,
    bits: int,
    cohort: int,
    dimension: int,
    rotation_seed: bytes | None = None,
) -> DistributedDPEncoder:
    """The distributed discrete Gaussian encoder of a round (:mod:`dp.distributed`).

    Every client's share of noise is sized so that the honest survivors -- the cohort
    less the threat model's dropouts and colluders -- reach noise multiplier ``z``.
    Server and clients compute the same parameters from the same public inputs; the
    rotation seed is fresh per round (``None``: a new one from the OS CSPRNG).
    """
    params = select_parameters_for_threat_model(
        threat_model,
        mechanism=DistributedMechanism.DISCRETE_GAUSSIAN,
        noise_multiplier=noise_multiplier,
        clip_norm=clip_norm,
        bits=bits,
        expected_clients=cohort,
        dimension=dimension,
    )
    return DistributedDPEncoder(params, rotation_seed=rotation_seed)


def dp_minimum_threat_model(threat_model: ThreatModel, cohort: int) -> ThreatModel:
    """The threat model a distributed-DP round enforces: minimum aggregate ``n - D``.

    The noise is sized for ``n - max_dropouts(n)`` survivors; raising the minimum
    aggregate size to that makes clients refuse to unmask a sum with less noise than the
    ledger recorded.
    """
    needed = cohort - threat_model.max_dropouts(cohort)
    if needed <= threat_model.effective_min_aggregate_size(cohort):
        return threat_model
    return dataclasses.replace(threat_model, min_aggregate_size=needed)
