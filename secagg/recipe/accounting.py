"""The recipe's ledger bookkeeping: the ledger of a run and the record of each round.

A round is charged before anything leaves a client: :func:`round_record` describes it
(the mechanism, how its cohort was drawn, its participants and, with local DP, each
client's DP-SGD steps) and the ledger refuses it if it would exceed the budget.
:func:`client_sampling` says whether the round counts amplification by sampling,
:func:`sampling_gate_delta` what the size gate of a sampled round adds to delta, and
:func:`privacy_statement` reads every epsilon of the run off the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

import dp_accounting
from scipy.stats import binom

from dp.budget import BudgetScope, PrivacyBudget
from dp.ledger import PrivacyLedger
from dp.ledger_entries import (
    ClientSampling,
    LocalDpSgd,
    RoundRecord,
    local_dp_sgd_from_opacus,
)
from secagg.errors import InvalidParameterError
from secagg.recipe.options import ClientId, DPMode, MissingLocalDpError
from secagg.recipe.privacy import (
    AMPLIFICATION_ASSUMPTION,
    PER_CLIENT_ASSUMPTION,
    PrivacyStatement,
)

_K = TypeVar("_K", bound=ClientId)

__all__ = [
    "check_local_dp",
    "client_sampling",
    "make_ledger",
    "privacy_statement",
    "round_record",
    "sampling_gate_delta",
]


def make_ledger(
    dp: DPMode, *, epsilon_budget: float | None, delta: float, accountant: str
) -> PrivacyLedger:
    """The ledger of a run: the budget (if any) limits the headline figure.

    That is each participant's own epsilon: per client at the user level, the
    sample-level figure with ``dp="local"``.
    """
    budgets = []
    if epsilon_budget is not None:
        scope = BudgetScope.SAMPLE_LEVEL if dp is DPMode.LOCAL else BudgetScope.PER_CLIENT
        budgets.append(PrivacyBudget(epsilon=epsilon_budget, delta=delta, scope=scope))
    return PrivacyLedger(budgets=budgets, accountant=accountant)


def client_sampling(amplified: bool, clients_per_round: int, population: int) -> ClientSampling:
    """Poisson sampling at ``clients_per_round / population`` for a round that counts
    amplification, full participation of the clients it names otherwise."""
    if amplified:
        return ClientSampling.from_counts(clients_per_round, population)
    return ClientSampling.full(population)


def sampling_gate_delta(gate: int, population: int, rate: float) -> float:
    """What the size gate of one sampled round adds to delta.

    Whether a round runs depends on the cohort size: adding one client to a sample of
    ``gate - 1`` others turns a skipped round into a run one. Conditioning on the other
    clients' coins, that is the only case the amplified bound misses, so its probability
    is added to delta (a union bound over the rounds).
    """
    return float(binom.pmf(gate - 1, population - 1, rate))


def check_local_dp(
    dp: DPMode, ids: Sequence[ClientId], local_dp: Mapping[_K, object] | None
) -> None:
    """Check that ``local_dp`` gives exactly the round's clients their DP-SGD records.

    Raises:
        InvalidParameterError: ``local_dp`` without ``dp="local"``, not a mapping, or
            naming a client that sent no update.
        MissingLocalDpError: with ``dp="local"``, no ``local_dp`` or a client without its
            record.
    """
    if local_dp is not None and dp is not DPMode.LOCAL:
        raise InvalidParameterError("local_dp is only meaningful with dp='local'")
    if dp is not DPMode.LOCAL:
        return
    if local_dp is None:
        raise MissingLocalDpError(
            "dp='local' needs local_dp: each client's Opacus accountant after its training"
        )
    if not isinstance(local_dp, Mapping):
        raise InvalidParameterError(
            "local_dp must map client ids to accountants or LocalDpSgd steps"
        )
    known = set(ids)
    for cid in local_dp:
        if cid not in known:
            raise InvalidParameterError(f"local_dp names client {cid!r}, which sent no update")
    missing = [c for c in ids if c not in local_dp]
    if missing:
        raise MissingLocalDpError(
            f"client {missing[0]!r} sent an update without its DP-SGD record in local_dp "
            f"({len(missing)} of {len(ids)} clients lack one); nothing was aggregated"
        )


def round_record(
    dp: DPMode,
    ids: Sequence[ClientId],
    event: dp_accounting.DpEvent,
    *,
    sampling: ClientSampling,
    local_dp: Mapping[_K, object] | None,
    local_seen: dict[ClientId, object],
    note: str,
) -> RoundRecord | None:
    """The ledger record of a round (``None`` without DP).

    With ``dp="local"``, each client's DP-SGD steps of this round: the
    :class:`~dp.ledger.LocalDpSgd` steps it gave, or those its Opacus accountant took
    since the one seen in ``local_seen`` (which is updated).
    """
    if dp is DPMode.NONE:
        return None
    steps: dict[ClientId, tuple[LocalDpSgd, ...]] = {}
    if dp is DPMode.LOCAL:
        for cid, value in (local_dp or {}).items():
            if isinstance(value, (list, tuple)) and all(isinstance(s, LocalDpSgd) for s in value):
                steps[cid] = tuple(value)
            else:
                steps[cid] = local_dp_sgd_from_opacus(value, since=local_seen.get(cid))
                history = getattr(value, "history", None)
                local_seen[cid] = list(history) if history is not None else value
    return RoundRecord(
        mechanism=event,
        sampling=sampling,
        participants=tuple(ids),
        local_dp_sgd=steps,
        note=note,
    )


def privacy_statement(
    ledger: PrivacyLedger,
    dp: DPMode,
    *,
    delta: float,
    accountant: str,
    recompute: bool,
    sampled_rounds: int,
    gate_delta: float,
    simulation_seed: int | None,
) -> PrivacyStatement:
    """Every epsilon of a run so far, each with the adversary it holds against.

    Args:
        ledger: the run's ledger.
        dp: the run's DP mode (``none``: no figures; ``local``: sample-level).
        delta: the run's delta.
        accountant: the accountant of the figures.
        recompute: whether ``accountant`` is another than the run's (the per-client figure
            is then recomputed client by client).
        sampled_rounds: rounds whose cohort the library's sampler drew.
        gate_delta: what the size gates of the sampled rounds added to delta (the
            amplified figure is evaluated at ``delta`` minus it; ``inf`` once it reaches
            ``delta``).
        simulation_seed: the seed of a simulation, ``None`` for a private run.
    """
    rounds = len(ledger)

    def statement(
        level: str | None, per_client: float | None, amplified: float | None
    ) -> PrivacyStatement:
        return PrivacyStatement(
            level=level,
            epsilon_per_client=per_client,
            epsilon_amplified=amplified,
            delta=None if dp is DPMode.NONE else delta,
            accountant=accountant,
            per_client_assumption=PER_CLIENT_ASSUMPTION,
            amplification_assumption=AMPLIFICATION_ASSUMPTION,
            rounds=rounds,
            sampled_rounds=sampled_rounds,
            simulation_seed=simulation_seed,
        )

    if dp is DPMode.NONE:
        return statement(None, None, None)
    if dp is DPMode.LOCAL:
        if not rounds:
            return statement("sample", 0.0, 0.0)
        levels = ledger.sample_level_epsilons(delta, accountant=accountant)
        return statement("sample", float(max(levels.values(), default=0.0)), math.inf)
    if not rounds:
        return statement("user", 0.0, 0.0)
    if recompute:
        epsilons = ledger.client_epsilons(delta, accountant=accountant)
        per_client = float(max(epsilons.values(), default=0.0))
    else:
        per_client = float(ledger.worst_client_epsilon(delta) or 0.0)
    remaining = delta - gate_delta
    amplified = (
        float(ledger.population_epsilon(remaining, accountant=accountant))
        if remaining > 0
        else math.inf
    )
    return statement("user", per_client, amplified)
