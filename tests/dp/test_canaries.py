"""Canary clients in a simulated federated run, audited in one run."""

from __future__ import annotations

import dp_accounting
import numpy as np
import pytest

from dp.accounting import compute_epsilon
from dp.audit import abstention_grid
from dp.canaries import CanaryClients
from secagg.errors import InvalidParameterError


def _fedavg_with_canaries(
    noise_multiplier: float,
    seed: int,
    *,
    rounds: int = 5,
    dimension: int = 2000,
    num_canaries: int = 200,
    clip: float = 1.0,
    server_lr: float = 0.5,
) -> tuple[CanaryClients, np.ndarray]:
    """DP-FedAvg (full participation): clip, sum, add Gaussian noise, update the model."""
    rng = np.random.default_rng(seed)
    canaries = CanaryClients(num_canaries, dimension, norm=clip, seed=seed)
    model0 = rng.standard_normal(dimension)
    model = model0.copy()
    for _ in range(rounds):
        updates = {f"client-{i}": rng.standard_normal(dimension) for i in range(20)}
        updates = canaries.inject(updates)
        total = np.zeros(dimension)
        for upd in updates.values():
            vec = np.asarray(upd, dtype=np.float64)
            total += vec * min(1.0, clip / np.linalg.norm(vec))
        released = total + noise_multiplier * clip * rng.standard_normal(dimension)
        canaries.observe(released)
        model = model + server_lr * released / len(updates)
    return canaries, model - model0


def test_membership_and_updates() -> None:
    canaries = CanaryClients(64, 50, norm=2.5, seed=3)
    again = CanaryClients(64, 50, norm=2.5, seed=3)
    assert np.array_equal(canaries.included, again.included)
    assert np.array_equal(canaries.update("canary-7"), again.update("canary-7"))
    assert 10 < int(canaries.included.sum()) < 54
    assert len(canaries) == 64 and len(set(canaries.canary_ids)) == 64
    assert canaries.included_ids == tuple(
        c for c, i in zip(canaries.canary_ids, canaries.included) if i
    )
    for cid in canaries.canary_ids[:5]:
        assert np.linalg.norm(canaries.update(cid)) == pytest.approx(2.5, rel=1e-12)
    with pytest.raises(ValueError):
        canaries.included[0] = not canaries.included[0]
    # unseeded membership comes from the CSPRNG: two sets differ (probability 2^-64 otherwise)
    a, b = CanaryClients(64, 50, norm=1.0), CanaryClients(64, 50, norm=1.0)
    assert not np.array_equal(a.included, b.included)


def test_directions_are_nearly_orthogonal() -> None:
    canaries = CanaryClients(20, 5000, norm=1.0, seed=1)
    vecs = np.stack([canaries.update(c) for c in canaries.canary_ids])
    gram = vecs @ vecs.T
    off = gram[~np.eye(20, dtype=bool)]
    assert np.max(np.abs(off)) < 0.1


def test_inject_adds_only_included_canaries() -> None:
    canaries = CanaryClients(30, 10, norm=1.0, seed=2)
    real = {0: np.zeros(10), 1: np.ones(10)}
    merged = canaries.inject(real)
    assert set(merged) == {0, 1, *canaries.included_ids}
    sampled = canaries.inject(real, sampling_rate=0.5, rng=np.random.default_rng(0))
    extra = set(sampled) - {0, 1}
    assert extra < set(canaries.included_ids) and len(extra) > 0
    with pytest.raises(InvalidParameterError, match="collides"):
        canaries.inject({"canary-0": np.zeros(10)})
    with pytest.raises(InvalidParameterError, match="expected 10"):
        canaries.inject({0: np.zeros(9)})


def test_audit_of_a_non_private_run_finds_a_large_epsilon() -> None:
    canaries, _ = _fedavg_with_canaries(0.0, seed=11)
    res = canaries.audit(delta=1e-5, num_positive_guesses=40, num_negative_guesses=40)
    assert res.num_correct == res.num_guesses == 80
    assert res.epsilon_lower_bound > 2.5
    # by default the auditor abstains, choosing the number of guesses over a Bonferroni grid
    searched = canaries.audit(delta=1e-5)
    assert searched.candidates == len(abstention_grid(200)) > 1
    assert searched.num_correct == searched.num_guesses > 80
    assert searched.epsilon_lower_bound > res.epsilon_lower_bound


def test_audit_of_a_private_run_stays_below_the_accounted_epsilon() -> None:
    z, rounds, delta = 4.0, 5, 1e-5
    accounted = compute_epsilon(
        dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), rounds),
        delta,
        pld_discretization=1e-3,
    )
    for seed in (21, 22, 23):
        canaries, model_delta = _fedavg_with_canaries(z, seed=seed, rounds=rounds)
        res = canaries.audit(delta=delta, num_positive_guesses=30, num_negative_guesses=30)
        assert 0.0 < res.epsilon_lower_bound <= accounted
        # scoring what the model reveals gives the same scores (cosine is scale-free)
        np.testing.assert_allclose(canaries.scores(model_delta), canaries.scores(), atol=1e-9)


def test_scores_need_an_observation_of_the_right_size() -> None:
    canaries = CanaryClients(4, 8, norm=1.0, seed=0)
    with pytest.raises(InvalidParameterError, match="nothing observed"):
        canaries.scores()
    with pytest.raises(InvalidParameterError):
        canaries.observe(np.zeros(7))
    with pytest.raises(InvalidParameterError):
        canaries.observe(np.full(8, np.inf))
    canaries.observe(np.zeros(8))
    assert canaries.observations == 1
    assert np.array_equal(canaries.scores(), np.zeros(4))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_canaries": 1, "dimension": 10, "norm": 1.0},
        {"num_canaries": 10, "dimension": 1, "norm": 1.0},
        {"num_canaries": 10, "dimension": 10, "norm": 0.0},
        {"num_canaries": 10, "dimension": 10, "norm": 1.0, "seed": -1},
    ],
)
def test_invalid_parameters(kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError):
        CanaryClients(**kwargs)
