"""One round of the recipe's protocol: the Paillier key of a run and the protocol call.

The recipe runs every protocol through the in-process driver
:func:`protocols.simulate.simulate`, which hands the server side only masked vectors or
ciphertexts. A Paillier run makes its threshold key once (:func:`paillier_key`), with a
fixed decryption committee, so that one key serves every round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from protocols.options import ProtocolName
from protocols.paillier.keygen import KeyGeneration, generate_distributed_key
from protocols.result import SimulationResult
from protocols.simulate import simulate
from secagg.errors import InvalidParameterError
from secagg.primitives.encoding import VectorEncoder
from secagg.primitives.threshold_paillier import KeyShare, ThresholdPublicKey, deal_threshold_key
from threat_models.model import ThreatModel
from threat_models.paillier import paillier_parameters

__all__ = ["PaillierKey", "paillier_key", "run_protocol"]

F64 = npt.NDArray[np.float64]
PaillierKey = tuple[ThresholdPublicKey, Sequence[KeyShare]]
"""A threshold Paillier public key and the committee's shares, in share-index order."""


def paillier_key(
    threat_model: ThreatModel,
    cohort: int,
    *,
    committee: int,
    key_bits: int,
    key_generation: KeyGeneration,
) -> PaillierKey:
    """The threshold key of a Paillier run, for a committee of ``committee`` members.

    The threshold depends on the committee only; the client-side checks use the round's
    cohort, for which the round's threat model was derived. ``key_generation`` says who
    makes the key: a trusted dealer, or the committee itself (no dealer, an honest
    majority of semi-honest members). A key below 2048 bits is insecure (tests only).
    """
    params = paillier_parameters(cohort, threat_model, n_decryptors=committee)
    weak = key_bits < 2048
    if key_generation is KeyGeneration.DISTRIBUTED:
        distributed = generate_distributed_key(
            list(range(1, committee + 1)),
            threshold=params.threshold,
            key_bits=key_bits,
            hazmat_allow_weak_key=weak,
            restart=False,
        )
        shares = sorted(distributed.shares.values(), key=lambda share: share.index)
        return distributed.public_key, tuple(shares)
    return deal_threshold_key(
        n_decryptors=committee,
        threshold=params.threshold,
        key_bits=key_bits,
        hazmat_allow_weak_key=weak,
    )


def run_protocol(
    protocol: ProtocolName,
    vectors: Mapping[int, F64],
    *,
    encoder: VectorEncoder,
    threat_model: ThreatModel,
    round_id: int,
    dropouts: Mapping[str, Sequence[int]] | None,
    seed: int | None,
    weights: Mapping[int, float] | None,
    max_weight: float,
    key: PaillierKey | None,
    committee: int,
    progress: bool,
) -> SimulationResult:
    """Run one round of ``protocol`` on ``vectors`` (protocol id -> clipped update).

    ``weights`` (a weighted mean) are folded into the masked vector up to ``max_weight``;
    ``key``, ``committee`` and ``progress`` are the Paillier protocol's.
    ``seed`` seeds the stochastic rounding of fixed-point encodings (``None``: OS-seeded).
    The recipe never reads the server's view, so masking rounds do not record it.
    """
    if protocol is ProtocolName.PAILLIER:
        if key is None:
            raise InvalidParameterError("a Paillier round needs its key")
        return simulate(
            vectors,
            protocol=protocol,
            dropouts=dropouts,
            seed=seed,
            encoder=encoder,
            threat_model=threat_model,
            round_id=round_id,
            weights=weights,
            max_weight=max_weight if weights is not None else None,
            key=key,
            committee_size=committee,
            progress=progress,
        )
    return simulate(
        vectors,
        protocol=protocol,
        dropouts=dropouts,
        seed=seed,
        encoder=encoder,
        threat_model=threat_model,
        round_id=round_id,
        weights=weights,
        max_weight=max_weight if weights is not None else None,
        record_view=False,
    )
