"""Empirical audit cell: canary clients under each DP defence, one-run lower bound on epsilon.

For each DP defence of the evaluation -- central Gaussian DP on the sum
(:class:`dp.central.CentralGaussianMechanism`) and distributed discrete Gaussian noise
added by every client before masking (:class:`dp.distributed.DistributedDPEncoder`) --
:func:`canary_run` runs DP-FedAvg rounds in which ``m`` canary clients
(:class:`dp.canaries.CanaryClients`), each included with probability 1/2, send a random
direction of norm equal to the clipping norm next to a few ordinary clients. Every round's
release goes through the defence's own code and is recorded in a
:class:`dp.ledger.PrivacyLedger`; after the run the canaries are scored by the cosine
between the sum of the releases and their directions, and the one-run audit of Steinke,
Nasr and Jagielski (2023, :func:`dp.audit.one_run_audit`, abstention grid with the
Bonferroni correction) gives an epsilon lower bound at confidence ``1 - SIGNIFICANCE``
and at the accountant's delta.

**Verdict rule** (:mod:`threat_models.evaluation.audit_rule`, shared with the DP-SGD
audit): the audit "succeeds" when its lower bound exceeds the epsilon the ledger's
accountant states for the same run (the worst client's, no amplification). On an honest
defence that must not happen (``expected=False``): a lower bound above the accountant's
epsilon means the accountant or the mechanism is wrong. Each defence has a **positive
control**: the same run with the noise multiplier applied far below the one the accountant
is told (the ledger records the events of the claimed multiplier); the audit must then
find a lower bound above the claimed epsilon (``expected=True``), or it has no power and
proves nothing.

A distributed round sums the clients' encodings modulo ``2^b`` directly: the masks of
secure aggregation cancel exactly in that sum, so the server learns the same vector as
through the protocol, and the audit is of the noise, not of the masking.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import dp_accounting
import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from dp.audit import OneRunAuditResult
from dp.canaries import CanaryClients
from dp.central import CentralGaussianMechanism
from dp.distributed import (
    DistributedDPEncoder,
    DistributedDPParameters,
    DistributedMechanism,
    select_parameters,
)
from dp.ledger import ClientSampling, PrivacyLedger, RoundRecord
from secagg.errors import InvalidParameterError
from secagg.primitives.encoding import ring_mask
from threat_models.evaluation.audit_rule import (
    SIGNIFICANCE,
    audit_bound_row,
)
from threat_models.evaluation.context import EvaluationContext
from threat_models.evaluation.dpsgd_audit import dpsgd_audit_rows
from threat_models.evaluation.rows import CellOutput, PrivacyLevel, Protection, Row
from threat_models.evaluation.scoring import DELTA

__all__ = [
    "AuditDefence",
    "AuditSizes",
    "CanaryRun",
    "audit_sizes",
    "canary_run",
    "audit_row",
    "cell_empirical_audit",
]

#: Clip norm of every update (canary directions have exactly this norm).
_CLIP = 1.0
#: Bits of the distributed-DP ring.
_BITS = 20


class AuditDefence(str, enum.Enum):
    """The DP defences the audit runs."""

    #: Gaussian noise on the exact sum, added by a party trusted to see it
    CENTRAL = "central Gaussian DP"
    #: discrete Gaussian shares added by every client before masking
    DISTRIBUTED = "distributed discrete Gaussian"


@dataclass(frozen=True)
class AuditSizes:
    """Size of one audited run.

    Attributes:
        canaries: ``m``, canary clients (each included with probability 1/2).
        dimension: length of every update.
        rounds: FedAvg rounds (every client and included canary takes part in each).
        clients: ordinary clients per round (random updates, clipped like the canaries).
        noise_multiplier: ``z`` of the honest run.
        weak_noise_multiplier: ``z`` applied in the positive control.
        claimed_noise_multiplier: ``z`` the accountant is told in the positive control.
    """

    canaries: int
    dimension: int
    rounds: int
    clients: int
    noise_multiplier: float
    weak_noise_multiplier: float = 0.1
    claimed_noise_multiplier: float = 20.0

    def __post_init__(self) -> None:
        if self.canaries < 2 or self.dimension < 2 or self.rounds < 1 or self.clients < 0:
            raise InvalidParameterError(
                "need at least 2 canaries, dimension 2, one round and no negative client count"
            )
        for z in (self.noise_multiplier, self.weak_noise_multiplier, self.claimed_noise_multiplier):
            if not (z > 0 and math.isfinite(z)):
                raise InvalidParameterError("noise multipliers must be positive and finite")


def audit_sizes(defence: AuditDefence, quick: bool) -> AuditSizes:
    """The sizes of the audit of ``defence``: seconds in quick mode, heavier in full mode.

    The distributed defence encodes every contribution (rotation, rounding, integer noise
    of the padded dimension), so it runs fewer canaries in a smaller dimension. The
    dimension stays well above the canaries in a round, so that the other canaries'
    directions (each at cosine about ``1 / sqrt(d)``) add little to a canary's score.
    """
    if defence is AuditDefence.CENTRAL:
        if quick:
            return AuditSizes(
                canaries=1000, dimension=1 << 14, rounds=1, clients=8, noise_multiplier=1.0
            )
        return AuditSizes(
            canaries=4000, dimension=1 << 15, rounds=2, clients=32, noise_multiplier=1.0
        )
    if quick:
        return AuditSizes(
            canaries=500, dimension=1 << 12, rounds=1, clients=8, noise_multiplier=1.0
        )
    return AuditSizes(canaries=1000, dimension=1 << 14, rounds=2, clients=16, noise_multiplier=1.0)


@dataclass(frozen=True)
class CanaryRun:
    """One audited run: what the auditor found and what the accountant states.

    Attributes:
        defence: the DP defence of the run.
        sizes: its sizes.
        applied_noise_multiplier: ``z`` of the noise actually added.
        claimed_noise_multiplier: ``z`` the ledger's accountant was told.
        audit: the one-run audit of the canaries.
        accountant_epsilon: the ledger's worst per-client epsilon at the audit's delta.
        included: canaries that took part.
    """

    defence: AuditDefence
    sizes: AuditSizes
    applied_noise_multiplier: float
    claimed_noise_multiplier: float
    audit: OneRunAuditResult
    accountant_epsilon: float
    included: int


def _clipped(update: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norm = float(np.linalg.norm(update))
    return update * min(1.0, _CLIP / norm) if norm > 0 else update


def _central_round(
    updates: list[npt.NDArray[np.float64]],
    applied: float,
    claimed: float,
    seed: bytes,
) -> tuple[npt.NDArray[np.float64], dp_accounting.DpEvent]:
    """A central-DP release of the clipped sum and the event the accountant is told."""
    exact = np.sum([_clipped(u) for u in updates], axis=0)
    released = CentralGaussianMechanism(applied, _CLIP).add_noise(exact, seed=seed)
    return np.asarray(released.value, dtype=np.float64), CentralGaussianMechanism(
        claimed, _CLIP
    ).event


def _distributed_encoders(
    sizes: AuditSizes, applied: float, claimed: float, seed: bytes, rng: np.random.Generator
) -> tuple[DistributedDPEncoder, DistributedDPEncoder]:
    """The encoder whose noise is applied and the one whose events the accountant is told."""

    def parameters(noise_multiplier: float) -> DistributedDPParameters:
        return select_parameters(
            mechanism=DistributedMechanism.DISCRETE_GAUSSIAN,
            noise_multiplier=noise_multiplier,
            clip_norm=_CLIP,
            bits=_BITS,
            expected_clients=sizes.clients + sizes.canaries,
            dimension=sizes.dimension,
        )

    used, told = parameters(applied), parameters(claimed)
    return (
        DistributedDPEncoder(used, rotation_seed=seed, rounding_rng=rng),
        DistributedDPEncoder(told, rotation_seed=seed, rounding_rng=rng),
    )


def _distributed_round(
    updates: list[npt.NDArray[np.float64]],
    encoder: DistributedDPEncoder,
    told: DistributedDPEncoder,
) -> tuple[npt.NDArray[np.float64], dp_accounting.DpEvent]:
    """Every client encodes (clip, rotate, round, noise); the server decodes the ring sum."""
    total = np.zeros(encoder.parameters.padded_dimension, dtype=np.uint64)
    for update in updates:
        total += encoder.encode(update)  # uint64 wraps modulo 2^64, a multiple of 2^b
    total &= ring_mask(encoder.bits)
    released = encoder.decode_sum(total, len(updates))
    return released, told.dp_event(len(updates))


def canary_run(
    defence: AuditDefence,
    sizes: AuditSizes,
    *,
    seed: int,
    applied_noise_multiplier: float | None = None,
    claimed_noise_multiplier: float | None = None,
    delta: float = DELTA,
    significance: float = SIGNIFICANCE,
) -> CanaryRun:
    """Run ``sizes.rounds`` DP-FedAvg rounds with canaries under ``defence`` and audit them.

    Args:
        defence: which DP defence releases each round's sum.
        sizes: canaries, dimension, rounds, ordinary clients.
        seed: fixes the canaries' membership and directions, the ordinary clients'
            updates and the central noise (the distributed noise is always fresh).
        applied_noise_multiplier: ``z`` of the noise added (default
            ``sizes.noise_multiplier``).
        claimed_noise_multiplier: ``z`` the ledger is told (default: the applied one, the
            honest run; a larger one makes the positive control).
        delta: delta of the accountant's epsilon and of the audit's hypothesis.
        significance: of the audit's lower bound.
    """
    applied = (
        sizes.noise_multiplier if applied_noise_multiplier is None else applied_noise_multiplier
    )
    claimed = applied if claimed_noise_multiplier is None else claimed_noise_multiplier
    rng = np.random.default_rng([seed, 1])
    canaries = CanaryClients(sizes.canaries, sizes.dimension, norm=_CLIP, seed=seed)
    ledger = PrivacyLedger()
    encoders = (
        _distributed_encoders(sizes, applied, claimed, seed.to_bytes(32, "big"), rng)
        if defence is AuditDefence.DISTRIBUTED
        else None
    )
    for round_index in range(sizes.rounds):
        ordinary = {
            f"client-{i}": rng.standard_normal(sizes.dimension) for i in range(sizes.clients)
        }
        merged = canaries.inject(ordinary)
        updates = [np.asarray(u, dtype=np.float64) for u in merged.values()]
        if encoders is None:
            noise_seed = (seed * 1_000_003 + round_index).to_bytes(32, "big")
            released, event = _central_round(updates, applied, claimed, noise_seed)
        else:
            if round_index:
                fresh = (seed * 1_000_003 + round_index).to_bytes(32, "big")
                encoders = (encoders[0].for_new_round(fresh), encoders[1].for_new_round(fresh))
            released, event = _distributed_round(updates, *encoders)
        canaries.observe(released)
        ledger.spend(RoundRecord(event, ClientSampling.full(), participants=map(str, merged)))
    audit = canaries.audit(delta=delta, significance=significance)
    return CanaryRun(
        defence=defence,
        sizes=sizes,
        applied_noise_multiplier=float(applied),
        claimed_noise_multiplier=float(claimed),
        audit=audit,
        accountant_epsilon=ledger.worst_client_epsilon(delta),
        included=int(np.sum(canaries.included)),
    )


_PROTECTION = {
    AuditDefence.CENTRAL: Protection.DP,
    AuditDefence.DISTRIBUTED: Protection.SECURE_AGGREGATION_DP,
}


def audit_row(run: CanaryRun, *, positive_control: bool = False) -> Row:
    """The row of one audited run: metric ``epsilon_lower_bound``, baseline the accountant's
    epsilon, verdict :func:`~threat_models.evaluation.audit_rule.audit_refutes_accountant`.

    An honest run is expected not to refute its accountant; a positive control (the
    accountant told more noise than was applied) is expected to.
    """
    res = run.audit
    sizes = run.sizes
    if positive_control:
        defense = (
            f"{run.defence.value}, z = {run.applied_noise_multiplier:g} applied, "
            f"accountant told z = {run.claimed_noise_multiplier:g}"
        )
        protection = Protection.UNHARDENED
    else:
        defense = f"{run.defence.value}, z = {run.applied_noise_multiplier:g}"
        protection = _PROTECTION[run.defence]
    note = (
        f"{res.num_canaries} canaries ({run.included} included), {res.num_guesses} guesses "
        f"({res.num_correct} correct, best of {res.candidates} abstention levels, "
        f"Bonferroni); confidence {1 - res.significance:.0%}, delta {res.delta:g}"
    )
    return audit_bound_row(
        attack="one-run canary audit",
        defense=defense,
        setting=(
            f"{run.defence.value}: {sizes.rounds} round{'s' if sizes.rounds > 1 else ''}, "
            f"{sizes.clients} clients + canaries per round, dimension {sizes.dimension}, "
            f"clip {_CLIP:g}, full participation"
        ),
        audit=res,
        accountant_epsilon=run.accountant_epsilon,
        positive_control=positive_control,
        protection=protection,
        note=note,
        level=PrivacyLevel.USER,
    )


def cell_empirical_audit(ctx: EvaluationContext) -> CellOutput:
    """Canaries under central and distributed DP: the honest runs and their positive controls."""
    quick = ctx.config.quick
    rows: list[Row] = []
    # Scoring makes thousands of short BLAS calls; OpenBLAS threads waking for each of them
    # cost milliseconds apiece on a loaded machine (63 s instead of 3 s for the quick cell).
    with threadpool_limits(limits=ctx.config.threads, user_api="blas"):
        rows += _audited_rows(ctx.config.seed, quick)
        rows += dpsgd_audit_rows(ctx.config.seed, quick)
    return CellOutput(rows=tuple(rows))


def _audited_rows(run_seed: int, quick: bool) -> list[Row]:
    rows: list[Row] = []
    for salt, defence in enumerate(AuditDefence):
        sizes = audit_sizes(defence, quick)
        seed = run_seed * 1_000 + 700 + 2 * salt
        honest = canary_run(defence, sizes, seed=seed)
        control = canary_run(
            defence,
            sizes,
            seed=seed + 1,
            applied_noise_multiplier=sizes.weak_noise_multiplier,
            claimed_noise_multiplier=sizes.claimed_noise_multiplier,
        )
        rows += [audit_row(honest), audit_row(control, positive_control=True)]
    return rows
