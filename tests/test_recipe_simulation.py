"""The recipe's seeded simulation mode: reproducible, labelled as not private, never the default."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from secagg.errors import InvalidParameterError
from secagg.primitives.simulation import SIMULATION_WARNING, SimulationRandomness
from secagg.recipe import SecureAggregator, UnsafeSimulationWarning, poisson_sample

UPDATES = {c: np.random.default_rng(c).normal(0, 0.1, 24) for c in range(10)}


def seeded_run(
    seed: int | None,
    *,
    dp: str = "distributed",
    protocol: str = "secagg+",
    rounds: int = 2,
    cohorts: list[tuple[object, ...]] | None = None,
) -> tuple[SecureAggregator, list[np.ndarray]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafeSimulationWarning)
        aggregator = SecureAggregator(
            population=10,
            clients_per_round=9,
            dp=dp,
            protocol=protocol,
            noise_multiplier=1.0,
            clip_norm=0.5,
            simulation_seed=seed,
            hazmat_paillier_key_bits=512,
            paillier_committee=4,
        )
    means = []
    for rnd in range(rounds):
        cohort = aggregator.sample_cohort() if cohorts is None else list(cohorts[rnd])
        means.append(aggregator.mean({c: UPDATES[c] for c in cohort}))
    return aggregator, means


def curve(aggregator: SecureAggregator) -> list[tuple[object, ...]]:
    return [(r.cohort, r.epsilon, r.epsilon_amplified) for r in aggregator.history]


@pytest.mark.parametrize("dp", ["distributed", "central"])
def test_same_seed_gives_the_same_cohorts_noise_and_epsilons(dp: str) -> None:
    first, first_means = seeded_run(11, dp=dp)
    second, second_means = seeded_run(11, dp=dp)
    assert curve(first) == curve(second)
    assert all(np.array_equal(a, b) for a, b in zip(first_means, second_means))
    # another seed: other cohorts or other noise (the means differ)
    other, other_means = seeded_run(12, dp=dp)
    assert not all(np.array_equal(a, b) for a, b in zip(first_means, other_means))
    # without a seed the noise is fresh: the same cohorts give another mean
    fresh, fresh_means = seeded_run(None, dp=dp, rounds=1, cohorts=[first.history[0].cohort])
    assert not np.array_equal(fresh_means[0], first_means[0])


def test_paillier_with_the_same_seed_releases_the_same_noised_mean() -> None:
    (first, first_means), (second, second_means) = (
        seeded_run(5, protocol="paillier", rounds=1) for _ in range(2)
    )
    assert curve(first) == curve(second)
    # the Paillier keys and the encryption randomness are fresh each run; the decrypted
    # noised sum is not
    assert np.array_equal(first_means[0], second_means[0])


def test_default_mode_draws_cohorts_from_the_os_csprng() -> None:
    # 10 clients at rate 7/10: two independent draws agree on 5 rounds with probability < 1e-8
    a = SecureAggregator(population=10, clients_per_round=7, dp="none")
    b = SecureAggregator(population=10, clients_per_round=7, dp="none")
    cohorts_a, cohorts_b = [], []
    for _ in range(5):
        cohorts_a.append(tuple(a.sample_cohort()))
        cohorts_b.append(tuple(b.sample_cohort()))
        a._pending_cohort = b._pending_cohort = None  # next round's draw, without aggregating
    assert cohorts_a != cohorts_b
    assert a.simulation_seed is None and a.privacy().private
    assert a.privacy().to_dict()["simulation_warning"] is None


def test_seeded_mode_warns_and_marks_the_ledger_and_the_statement() -> None:
    with pytest.warns(UnsafeSimulationWarning, match="NOT private"):
        aggregator = SecureAggregator(
            population=10, clients_per_round=7, noise_multiplier=1.0, simulation_seed=3
        )
    cohort = aggregator.sample_cohort()
    aggregator.mean({c: UPDATES[c] for c in cohort})
    statement = aggregator.privacy()
    assert statement.simulation_seed == 3 and not statement.private
    assert statement.to_dict()["simulation_warning"] == SIMULATION_WARNING
    assert all(
        "simulation_seed=3" in r.note and "NOT private" in r.note for r in aggregator.ledger.rounds
    )
    assert "simulation_seed=3" in aggregator.ledger.to_json()


def test_seeded_noise_has_the_configured_spread() -> None:
    """The seeded shares go through the same sampler: the decoded noise of a sum of zeros
    matches."""
    from secagg.recipe.encoders import SeededNoiseEncoder
    from secagg.recipe.planning import distributed_encoder
    from threat_models.model import ThreatModel

    threat_model = ThreatModel()
    inner = distributed_encoder(
        threat_model,
        noise_multiplier=1.0,
        clip_norm=1.0,
        bits=32,
        cohort=8,
        dimension=1024,
        rotation_seed=bytes(32),
    )
    params = inner.parameters
    randomness = SimulationRandomness(0)
    encoder = SeededNoiseEncoder(
        inner, noise=randomness.stream("n"), rounding=randomness.stream("r").numpy_generator()
    )
    summed = sum(encoder.encode(np.zeros(1024)) for _ in range(8)) & np.uint64((1 << 32) - 1)
    noise = encoder.decode_sum(summed, 8)
    expected = params.aggregate_error_stddev(8)
    assert 0.85 * expected < float(np.std(noise)) < 1.15 * expected


def test_poisson_sample_takes_a_byte_source_and_simulation_streams_are_deterministic() -> None:
    pool = list(range(50))
    a = poisson_sample(pool, 1, 2, random_bytes=SimulationRandomness(9).stream("cohorts").read)
    b = poisson_sample(pool, 1, 2, random_bytes=SimulationRandomness(9).stream("cohorts").read)
    c = poisson_sample(pool, 1, 2, random_bytes=SimulationRandomness(9).stream("other").read)
    assert a == b and a != c
    with pytest.raises(InvalidParameterError):
        SimulationRandomness(-1)
    with pytest.raises(InvalidParameterError):
        SecureAggregator(population=10, paillier_committee=11)
