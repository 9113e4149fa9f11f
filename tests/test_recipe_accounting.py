"""The recipe feeds the accountants what actually happened, and says against whom each
epsilon holds."""

from __future__ import annotations

import math
import warnings

import dp_accounting
import numpy as np
import pytest
from scipy.stats import binom

import secagg.recipe.aggregator as recipe_aggregator
from dp.accounting import compute_epsilon
from dp.ledger import LocalDpSgd
from secagg import SecureAggregator
from secagg.errors import InvalidParameterError
from secagg.recipe import (
    AMPLIFICATION_ASSUMPTION,
    ClientNotInPopulationError,
    CohortTooSmallError,
    MissingLocalDpError,
    NoisyAggregateWarning,
    poisson_sample,
)
from threat_models.model import ServerClass, ThreatModel

CURIOUS = ThreatModel(
    server=ServerClass.CURIOUS
)  # the cheapest protocol run; accounting is the same


def ones(ids: object, d: int = 8) -> dict[object, np.ndarray]:
    return {c: np.full(d, 0.1) for c in ids}  # type: ignore[attr-defined]


def composed_gaussian(z: float, rounds: int, delta: float) -> float:
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(z), rounds)
    return compute_epsilon(event, delta, accountant="pld")


# -- 1. cohorts the recipe did not sample -----------------------------------------------


def test_a_cohort_the_recipe_did_not_sample_is_accounted_as_full_participation() -> None:
    aggregator = SecureAggregator(
        population=20,
        clients_per_round=4,
        protocol="secagg",
        dp="central",
        noise_multiplier=1,
        threat_model=CURIOUS,
    )
    for _ in range(5):
        aggregator.mean(ones(range(20)))
    # every client was in every round: five Gaussian rounds, no amplification (not 1.65)
    truth = composed_gaussian(1.0, 5, aggregator.delta)
    assert aggregator.delta == pytest.approx(5e-3)
    assert truth == pytest.approx(7.60, abs=0.01)
    assert aggregator.epsilon == pytest.approx(truth, rel=1e-6)
    assert aggregator.amplified_epsilon == pytest.approx(truth, rel=1e-6)
    assert all(r.sampling.rate == 1.0 for r in aggregator.ledger.rounds)
    assert not any(r.sampled for r in aggregator.history)


def test_only_a_subset_of_the_drawn_cohort_counts_amplification() -> None:
    aggregator = SecureAggregator(
        population=40,
        clients_per_round=20,
        protocol="secagg",
        dp="central",
        noise_multiplier=2.0,
        threat_model=CURIOUS,
    )
    cohort = aggregator.sample_cohort()
    while len(cohort) < aggregator.minimum_cohort + 1:  # a run round (rare otherwise)
        with pytest.raises(CohortTooSmallError):
            aggregator.mean(ones(cohort))
        cohort = aggregator.sample_cohort()
    charged = len(aggregator.ledger)
    assert aggregator.sample_cohort() == cohort  # one draw per round: no redrawing
    aggregator.mean(ones(cohort[1:]))  # a dropout only removes
    report = aggregator.last_round
    assert report is not None and report.sampled
    assert aggregator.ledger.rounds[-1].sampling.rate == pytest.approx(0.5)
    # the next round: a cohort that is not a subset of the draw is not amplified
    drawn = set(aggregator.sample_cohort())
    outsider = next(c for c in range(40) if c not in drawn)
    aggregator.mean(ones([outsider, *sorted(drawn)[:5]]))
    assert aggregator.ledger.rounds[-1].sampling.rate == 1.0
    assert aggregator.last_round is not None and not aggregator.last_round.sampled
    assert len(aggregator.ledger) == charged + 2


def test_ids_outside_the_population_are_refused_and_change_nothing() -> None:
    aggregator = SecureAggregator(
        population=100, clients_per_round=10, dp="central", threat_model=CURIOUS
    )
    with pytest.raises(ClientNotInPopulationError):
        aggregator.mean(ones([999, *range(9)]))
    small = SecureAggregator(population=4, dp="central", threat_model=CURIOUS)
    with pytest.raises(ClientNotInPopulationError):  # more clients than the population
        small.mean(ones(range(5)))
    assert len(aggregator.ledger) == len(small.ledger) == 0 and small.history == ()
    named = SecureAggregator(
        population=5, dp="none", client_ids=list("abcde"), threat_model=CURIOUS
    )
    named.mean(ones("abcde"))
    with pytest.raises(ClientNotInPopulationError):
        named.mean(ones([*"abcd", "z"]))
    with pytest.raises(ClientNotInPopulationError):  # range(population) is not the population here
        named.mean(ones(range(5)))


# -- 2. the sampler's law is the accountant's -------------------------------------------


def test_inclusion_frequencies_match_q_within_sampling_error() -> None:
    population, expected, draws = 1000, 2, 2000
    q = expected / population
    counts = np.zeros(population, dtype=np.int64)
    small = 0
    for _ in range(draws):
        cohort = poisson_sample(range(population), expected, population)
        counts[cohort] += 1
        small += len(cohort) < 2
    trials = population * draws
    lo, hi = binom.interval(1 - 1e-6, trials, q)
    assert lo <= counts.sum() <= hi  # a redraw below two clients gives ~0.0029 instead of 0.002
    # the cohorts that are too small to aggregate are returned, not redrawn
    assert small == pytest.approx(draws * binom.cdf(1, population, q), rel=0.25)


def test_sample_cohort_has_the_accounted_law() -> None:
    population, expected, aggregators = 1000, 2, 400
    total = 0
    for _ in range(aggregators):  # one draw per round, so one draw per fresh aggregator
        total += len(
            SecureAggregator(
                population=population, clients_per_round=expected, dp="none"
            ).sample_cohort()
        )
    lo, hi = binom.interval(1 - 1e-6, population * aggregators, expected / population)
    assert lo <= total <= hi


def test_a_too_small_sample_is_charged_and_releases_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aggregator = SecureAggregator(
        population=30,
        clients_per_round=10,
        protocol="secagg",
        dp="central",
        noise_multiplier=1.0,
        threat_model=CURIOUS,
    )
    monkeypatch.setattr(recipe_aggregator, "poisson_sample", lambda pool, num, den: [3])
    assert aggregator.sample_cohort() == [3]
    with pytest.raises(CohortTooSmallError):
        aggregator.mean(ones([3]))
    monkeypatch.setattr(recipe_aggregator, "poisson_sample", lambda pool, num, den: [])
    assert aggregator.sample_cohort() == []
    with pytest.raises(CohortTooSmallError):
        aggregator.mean({})
    assert len(aggregator.ledger) == 2 and aggregator.history == ()
    # nothing was released about anyone; the population figure charges both sampled rounds
    assert aggregator.epsilon == 0.0
    amplified = aggregator.amplified_epsilon
    assert amplified is not None and amplified > 0
    assert aggregator.privacy().sampled_rounds == 2
    # without a draw, a one-client cohort is refused outright and not charged
    with pytest.raises(InvalidParameterError):
        aggregator.mean(ones([3]))
    assert len(aggregator.ledger) == 2


# -- 3. local mode needs every client's DP record ---------------------------------------


@pytest.mark.parametrize("local_dp", [{0: None}, {}])
def test_local_mode_refuses_clients_without_a_dp_record(local_dp: dict[int, object]) -> None:
    steps = (LocalDpSgd(noise_multiplier=1.0, sample_rate=0.1, steps=50),)
    aggregator = SecureAggregator(population=5, dp="local", protocol="secagg", threat_model=CURIOUS)
    given = {c: steps for c in local_dp}
    with pytest.raises(MissingLocalDpError):
        aggregator.mean(ones(range(5)), local_dp=given)
    assert aggregator.history == () and len(aggregator.ledger) == 0
    assert aggregator.epsilon == 0.0


# -- 4. against whom -----------------------------------------------------------------


def test_the_headline_is_the_worst_clients_epsilon_and_the_amplified_one_names_its_assumption() -> (
    None
):
    aggregator = SecureAggregator(
        population=40,
        clients_per_round=20,
        protocol="secagg",
        dp="central",
        noise_multiplier=2.0,
        threat_model=CURIOUS,
    )
    runs = 0
    while runs < 3:
        cohort = aggregator.sample_cohort()
        try:
            aggregator.mean(ones(cohort))
            runs += 1
        except CohortTooSmallError:
            pass
    per_client = aggregator.ledger.client_epsilons(aggregator.delta)
    headline = aggregator.epsilon
    assert headline is not None
    assert headline == pytest.approx(max(per_client.values()), rel=1e-9)
    # some client took part in all three rounds with near certainty; its epsilon is
    # three unamplified Gaussian rounds
    assert headline <= composed_gaussian(2.0, len(aggregator.ledger), aggregator.delta) * (1 + 1e-9)
    amplified = aggregator.amplified_epsilon
    assert amplified is not None and amplified < headline
    statement = aggregator.privacy()
    assert statement.amplification_assumption == AMPLIFICATION_ASSUMPTION
    assert "neither chooses nor learns" in statement.amplification_assumption
    assert "server" in statement.per_client_assumption
    as_json = statement.to_dict()
    assert as_json["epsilon_per_client"] == pytest.approx(aggregator.epsilon)
    assert as_json["epsilon_amplified"] == pytest.approx(amplified)
    assert as_json["amplification_assumption"] == AMPLIFICATION_ASSUMPTION
    report = aggregator.last_round
    assert report is not None and report.epsilon == pytest.approx(aggregator.epsilon)
    assert report.epsilon_amplified == pytest.approx(amplified)


def test_target_epsilon_holds_for_a_client_in_every_round() -> None:
    target, rounds = 4.0, 3
    aggregator = SecureAggregator(
        population=10,
        clients_per_round=5,
        dp="central",
        target_epsilon=target,
        rounds=rounds,
        protocol="secagg",
        threat_model=CURIOUS,
    )
    for _ in range(rounds):
        aggregator.mean(ones(range(10)))  # every client, every round
    assert aggregator.epsilon is not None and 0.97 * target <= aggregator.epsilon <= target


# -- 6. Paillier with distributed DP runs any cohort the sampler can produce -----------------


def test_paillier_with_distributed_dp_runs_a_cohort_larger_than_expected() -> None:
    aggregator = SecureAggregator(
        population=100,
        clients_per_round=50,
        protocol="paillier",
        noise_multiplier=2.0,
        clip_norm=0.5,
        hazmat_paillier_key_bits=512,  # INSECURE size, to keep the test fast
    )
    aggregator.mean({c: np.full(5, 0.01) for c in range(52)})
    report = aggregator.last_round
    assert report is not None and len(report.survivors) == 52


# -- 7. a target that only buys noise ------------------------------------------------------


def test_a_target_epsilon_that_drowns_the_mean_warns() -> None:
    with pytest.warns(NoisyAggregateWarning, match="clip_norm"):
        aggregator = SecureAggregator(
            population=100, clients_per_round=50, dp="central", target_epsilon=1e-4, rounds=10
        )
    assert aggregator.noise_multiplier is not None and aggregator.noise_multiplier > 50
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoisyAggregateWarning)
        SecureAggregator(
            population=100, clients_per_round=50, dp="central", target_epsilon=8.0, rounds=10
        )


# -- 9. the sample-level figure uses the tightest accountant, or the one chosen ----------------


def test_local_sample_level_epsilon_uses_pld_unless_told_otherwise() -> None:
    steps = {c: (LocalDpSgd(noise_multiplier=1.0, sample_rate=0.1, steps=100),) for c in range(5)}
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.0)), 300
    )
    default = SecureAggregator(population=5, dp="local", protocol="secagg", threat_model=CURIOUS)
    chosen = SecureAggregator(
        population=5, dp="local", protocol="secagg", threat_model=CURIOUS, accountant="rdp"
    )
    for _ in range(3):
        default.mean(ones(range(5)), local_dp=steps)
        chosen.mean(ones(range(5)), local_dp=steps)
    pld = compute_epsilon(event, default.delta, accountant="pld")
    rdp = compute_epsilon(event, default.delta, accountant="rdp")
    assert pld < rdp
    assert default.epsilon == pytest.approx(pld, rel=1e-6)
    assert chosen.epsilon == pytest.approx(rdp, rel=1e-6)
    assert default.privacy(accountant="rdp").epsilon_per_client == pytest.approx(rdp, rel=1e-6)
    assert default.privacy().accountant == "pld"
    assert default.amplified_epsilon == math.inf  # no user-level noise


# -- 12. the distance to the un-noised sum stays on the trusted side ---------------------------


def test_verify_reports_the_un_noised_distance_only_when_asked_explicitly() -> None:
    updates = ones(range(6))
    safe = SecureAggregator(
        population=6, dp="central", verify=True, protocol="secagg", threat_model=CURIOUS
    )
    safe.mean(updates)
    assert safe.last_round is not None
    assert (
        safe.last_round.max_abs_difference is not None and safe.last_round.max_abs_dp_error is None
    )
    unsafe = SecureAggregator(
        population=6,
        dp="central",
        verify="unsafe-plaintext",
        protocol="secagg",
        threat_model=CURIOUS,
    )
    unsafe.mean(updates)
    assert unsafe.last_round is not None and unsafe.last_round.max_abs_dp_error is not None
    with pytest.raises(InvalidParameterError):
        SecureAggregator(population=6, verify="sometimes")
