"""The accountants' shortcuts give the figures of the long way round, never smaller ones.

Three shortcuts keep a ledger's epsilons cheap round after round: the exact epsilon of a
Gaussian without sampling (:func:`dp.accountants.pld.gaussian_epsilon`), composed
Gaussians without sampling merged into one (a client's own rounds of distributed noise),
and a PLD composition extended by its new part instead of rebuilt. Each is checked
against dp-accounting's own PLD accountant composing the same events from scratch.
"""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.pld import privacy_loss_mechanism as plm

from dp.accountants.base import NeighboringRelation
from dp.accountants.distributed_pld import distributed_pld_epsilon
from dp.accountants.factory import compute_epsilon
from dp.accountants.pld import gaussian_epsilon
from dp.events import DistributedDiscreteGaussianDpEvent

G = dp_accounting.GaussianDpEvent
PS = dp_accounting.PoissonSampledDpEvent


def _reference(event: dp_accounting.DpEvent, delta: float, relation: NeighboringRelation) -> float:
    """dp-accounting's PLD accountant, composing ``event`` from scratch."""
    acc = pld_privacy_accountant.PLDAccountant(neighboring_relation=relation)
    return float(acc.compose(event).get_epsilon(delta))


RELATIONS = [NeighboringRelation.ADD_OR_REMOVE_ONE, NeighboringRelation.REPLACE_ONE]


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize("sigma", [0.4, 1.0, 3.0, 20.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-10])
def test_exact_gaussian_is_valid_and_matches_the_pld(
    sigma: float, delta: float, relation: NeighboringRelation
) -> None:
    eps = gaussian_epsilon(sigma, delta, neighboring_relation=relation)
    reference = _reference(G(sigma), delta, relation)
    # never above the pessimistic PLD, and within its discretization of it
    assert eps <= reference
    assert reference - eps < 1e-3 * max(1.0, reference)
    # valid by dp-accounting's own arithmetic, and tight: a little less is not
    adjacency = (
        plm.AdjacencyType.REPLACE
        if relation is NeighboringRelation.REPLACE_ONE
        else plm.AdjacencyType.REMOVE
    )
    loss = plm.GaussianPrivacyLoss(sigma, adjacency_type=adjacency)
    assert loss.get_delta_for_epsilon(eps) <= delta
    assert loss.get_delta_for_epsilon(eps - 1e-6 * max(1.0, eps)) > delta


def test_distinct_unsampled_gaussians_compose_as_one() -> None:
    """A client's rounds with different cohorts: DDGs whose noise multipliers differ."""
    rng = np.random.default_rng(3)
    for _ in range(4):
        cohorts = rng.integers(20, 60, size=int(rng.integers(2, 8)))
        events = [
            DistributedDiscreteGaussianDpEvent(
                l2_sensitivity=1e8,
                l1_sensitivity=3.2e9,
                local_sigma=3e7,
                num_clients=int(n),
                dimension=650,
            )
            for n in cohorts
        ]
        composed = dp_accounting.ComposedDpEvent(list(events))
        eps = distributed_pld_epsilon(composed, 1e-5)
        # the long way: each release's Gaussian composed by dp-accounting, same correction
        ideal = dp_accounting.ComposedDpEvent(
            [G(math.sqrt(e.num_clients) * e.local_sigma / e.l2_sensitivity) for e in events]
        )
        long_way = _reference(ideal, 1e-5 * (1 - 1e-3), NeighboringRelation.ADD_OR_REMOVE_ONE)
        plain = _reference(ideal, 1e-5, NeighboringRelation.ADD_OR_REMOVE_ONE)
        # the correction terms are ~1e-3 here; the merged Gaussian must not undercut them
        assert plain - 1e-6 <= eps <= long_way + 0.01
        # a wrong merge (adding the noise multipliers, not the precisions) would be far off
        wrong = gaussian_epsilon(sum(float(np.sqrt(n)) * 0.3 for n in cohorts), 1e-5)
        assert wrong < 0.5 * eps


def test_pld_composition_extended_equals_rebuilt() -> None:
    rounds = [PS(q, G(z)) for q, z in [(0.5, 1.1), (0.4, 1.3), (0.55, 0.9), (0.45, 1.7)]]
    for upto in range(2, len(rounds) + 1):
        # in the order a ledger asks: the history, then the history and one more round
        composed = dp_accounting.ComposedDpEvent(rounds[:upto])
        for delta in (1e-5, 1e-7):
            eps = compute_epsilon(composed, delta)
            reference = _reference(composed, delta, NeighboringRelation.ADD_OR_REMOVE_ONE)
            assert eps == pytest.approx(reference, rel=1e-6)
    # asked again in another order: the same composition, the same answer
    shuffled = dp_accounting.ComposedDpEvent(list(reversed(rounds)))
    assert compute_epsilon(shuffled, 1e-5) == pytest.approx(
        _reference(shuffled, 1e-5, NeighboringRelation.ADD_OR_REMOVE_ONE), rel=1e-6
    )
    # the same parts but one fewer is another composition: not answered from the cache
    assert compute_epsilon(dp_accounting.ComposedDpEvent(rounds[:3]), 1e-5) < compute_epsilon(
        dp_accounting.ComposedDpEvent(rounds), 1e-5
    )
