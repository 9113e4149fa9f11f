"""The one in-process entry: run a round of any protocol family and decode the sum.

:func:`simulate` takes the options every family shares (threat model, encoder, weights,
round id, wire, view) and those of one family, each a typed keyword argument; an option
of the other family, and an unknown keyword, are refused with
:class:`~secagg.errors.InvalidParameterError` naming the options it takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence

import numpy.typing as npt

from protocols.inputs import DEFAULT_BITS, K
from protocols.masking.config import Hardening
from protocols.masking.driver import simulate_masking
from protocols.masking.graph import CommunicationGraph
from protocols.options import ProtocolName
from protocols.paillier.config import PaillierHardening
from protocols.paillier.driver import run_round, simulation_result
from protocols.paillier.keygen import KeyGeneration
from protocols.result import SimulationResult
from protocols.stages import Stage
from secagg.errors import InvalidParameterError
from secagg.primitives.encoding import VectorEncoder
from secagg.primitives.paillier import DEFAULT_KEY_BITS, Randomness
from secagg.primitives.prg import PrgAlgorithm
from secagg.primitives.threshold_paillier import KeyShare, ThresholdPublicKey, Workers
from threat_models.model import ThreatModel
from threat_models.parameters import ProtocolParameters

__all__ = ["simulate"]


def simulate(
    updates: Mapping[K, npt.ArrayLike],
    *,
    protocol: ProtocolName | str = ProtocolName.SECAGG_PLUS,
    dropouts: Mapping[str | Stage, Iterable[K]] | None = None,
    seed: int | None = None,
    threat_model: ThreatModel | None = None,
    encoder: VectorEncoder | None = None,
    bits: int = DEFAULT_BITS,
    weights: Mapping[K, float] | None = None,
    max_weight: float | None = None,
    round_id: int | None = None,
    wire: bool = True,
    record_view: bool = True,
    hardening: Hardening | Mapping[K, Hardening] | PaillierHardening | None = None,
    parameters: ProtocolParameters | None = None,
    model_hash: bytes | Mapping[K, bytes] | None = None,
    graph: CommunicationGraph | None = None,
    prg: PrgAlgorithm | None = None,
    key: tuple[ThresholdPublicKey, Sequence[KeyShare]] | None = None,
    key_bits: int = DEFAULT_KEY_BITS,
    hazmat_allow_weak_key: bool = False,
    committee_size: int | None = None,
    decryptor_dropouts: Iterable[int] = (),
    randomness: Randomness | None = None,
    progress: bool = False,
    key_generation: KeyGeneration | str = KeyGeneration.DEALER,
    decryption_workers: Workers = 1,
    **unknown: object,
) -> SimulationResult:
    """Run one secure aggregation round in process and decode the survivors' sum.

    Args:
        updates: client id -> 1-D float vector, all the same length. Ids are non-negative
            ints (0 included) or strings (:func:`~protocols.inputs.wire_ids` maps them to
            the protocol's ids; ``server_view`` and ``details`` use those, the result's
            survivors use yours).
        protocol: ``"secagg+"`` (default: graph and threshold derived from the threat
            model), ``"secagg"`` (complete graph) or ``"paillier"`` (threshold Paillier
            with a decryption committee).
        dropouts: stage name (``Stage`` value) -> client ids that vanish at that stage.
        seed: makes the simulation's own randomness reproducible (stochastic rounding
            of the default encoder); never any cryptographic secret.
        threat_model: default ``ThreatModel()`` (malicious server, 5 % colluders, 10 %
            dropouts).
        encoder: any :class:`~secagg.primitives.encoding.VectorEncoder`; default a
            :class:`~secagg.primitives.encoding.FixedPointEncoder` on ``[-B, B]`` with ``B``
            the smallest power of two bounding the (weighted) inputs, ``bits`` bits and
            capacity ``n`` (a simulation convenience: deployments fix ``B`` in advance).
        bits: ring bits of the default encoder.
        weights: client id -> non-negative weight: each client contributes ``[w x, w]``,
            so that the server learns ``sum w x`` and ``sum w`` only.
        max_weight: the public bound on a weight (default: the largest weight rounded up
            to a power of two).
        round_id: default a fresh random one.
        wire: pass every message through the binary encoding (default True).
        record_view: keep every message the server accepted (default True).
        hardening: masking: a :class:`~protocols.masking.config.Hardening` (or one per
            client); Paillier: a :class:`~protocols.paillier.PaillierHardening`. The
            weakened settings exist for attack baselines only.
        parameters: masking only: explicit ``ProtocolParameters`` (``k``, ``t``).
        model_hash: masking only: the global model's hash (32 bytes, or one per client).
        graph: masking only: an explicit communication graph.
        prg: masking only: the mask expansion algorithm.
        key: Paillier only: a dealt ``(public key, shares)``.
        key_bits: Paillier only: modulus size of a fresh key.
        hazmat_allow_weak_key: Paillier only: allow keys below 2048 bits (tests).
        committee_size: Paillier only: decryption committee size.
        decryptor_dropouts: Paillier only: decryptors that vanish before decrypting.
        randomness: Paillier only: how encryption randomness is drawn.
        progress: Paillier only: progress bars.
        key_generation: Paillier only: ``"dealer"`` (default) or ``"distributed"``.
        decryption_workers: Paillier only: processes each decryptor's partial decryption
            runs on (default 1; ``"auto"``: the CPUs this process may use; see
            :func:`~secagg.primitives.threshold_paillier.decryption_workers`).

    A client that withholds its graph-seed contribution makes the server start a new round
    without it (fresh round id; ``details["restarts"]`` counts them), as a deployment's
    server would.

    Returns:
        :class:`~protocols.result.SimulationResult`.

    Raises:
        ThresholdNotMetError: too few clients remain (the round aborts; nothing revealed).
        InvalidParameterError: bad arguments, or an option of the other protocol family.
        InfeasibleThreatModelError: no parameters satisfy the threat model.
        SecAggError: any other protocol failure.
    """
    if unknown:
        raise InvalidParameterError(
            f"unknown simulate() options: {sorted(unknown)}; it takes {sorted(_OPTIONS)}"
        )
    name = ProtocolName.parse(protocol)
    if name is ProtocolName.PAILLIER:
        masking_only = {
            "parameters": parameters,
            "model_hash": model_hash,
            "graph": graph,
            "prg": prg,
        }
        given = sorted(k for k, v in masking_only.items() if v is not None)
        if isinstance(hardening, Hardening) or isinstance(hardening, Mapping):
            given.append("hardening (a masking Hardening)")
        if given:
            raise InvalidParameterError(
                f"options of the masking protocols given to Paillier: {given}"
            )
        if hardening is not None and not isinstance(hardening, PaillierHardening):
            raise InvalidParameterError("Paillier's hardening must be a PaillierHardening")
        if not all(isinstance(c, int) for c in updates):
            raise InvalidParameterError("the Paillier protocol takes integer client ids")
        outcome = run_round(
            {int(c): v for c, v in updates.items()},
            dropouts=None
            if dropouts is None
            else {s: [int(c) for c in m] for s, m in dropouts.items()},
            seed=seed,
            threat_model=threat_model,
            encoder=encoder,
            bits=bits,
            weights=None if weights is None else {int(c): w for c, w in weights.items()},
            max_weight=max_weight,
            round_id=round_id,
            wire=wire,
            record_view=record_view,
            hardening=hardening,
            key=key,
            key_bits=key_bits,
            hazmat_allow_weak_key=hazmat_allow_weak_key,
            committee_size=committee_size,
            decryptor_dropouts=decryptor_dropouts,
            randomness=randomness,
            progress=progress,
            key_generation=key_generation,
            decryption_workers=decryption_workers,
        )
        return simulation_result(outcome)
    paillier_only = {
        "key": key is not None,
        "key_bits": key_bits != DEFAULT_KEY_BITS,
        "hazmat_allow_weak_key": hazmat_allow_weak_key,
        "committee_size": committee_size is not None,
        "decryptor_dropouts": bool(tuple(decryptor_dropouts)),
        "randomness": randomness is not None,
        "progress": progress,
        "key_generation": KeyGeneration(key_generation) is not KeyGeneration.DEALER,
        "decryption_workers": decryption_workers != 1,
    }
    given = sorted(k for k, v in paillier_only.items() if v)
    masking_hardening: Hardening | Mapping[K, Hardening] | None = None
    if isinstance(hardening, PaillierHardening):
        given.append("hardening (a PaillierHardening)")
    else:
        masking_hardening = hardening
    if given:
        raise InvalidParameterError(
            f"options of the Paillier protocol given to {name.value}: {given}"
        )
    return simulate_masking(
        updates,
        protocol=name,
        dropouts=dropouts,
        seed=seed,
        threat_model=threat_model,
        encoder=encoder,
        bits=bits,
        weights=weights,
        max_weight=max_weight,
        round_id=round_id,
        wire=wire,
        record_view=record_view,
        hardening=masking_hardening,
        parameters=parameters,
        model_hash=model_hash,
        graph=graph,
        prg=prg,
    )


_OPTIONS = frozenset(inspect.signature(simulate).parameters) - {"updates", "unknown"}
