"""Empirical audits: known answers, independent formulas, and validity over seeded trials."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dp.accounting import gaussian_dp_epsilon
from dp.audit import (
    DEFAULT_GUESS_FRACTIONS,
    AuditMethod,
    abstention_grid,
    clopper_pearson_epsilon_lower_bound,
    clopper_pearson_lower,
    clopper_pearson_upper,
    one_run_audit,
    one_run_audit_sweep,
    one_run_epsilon_lower_bound,
    one_run_p_value,
    threshold_audit,
)
from secagg.errors import InvalidParameterError

TRIALS = 400
SIGNIFICANCE = 0.05
# Exceedances over TRIALS independent trials are at most Binom(TRIALS, 0.05); this
# threshold is crossed by a valid bound with probability below 1e-4.
MAX_EXCEEDANCES = int(stats.binom.ppf(1 - 1e-4, TRIALS, SIGNIFICANCE))


@pytest.mark.parametrize("r", [1, 10, 100, 1000])
def test_all_correct_without_delta_is_logit_of_root(r: int) -> None:
    expected = max(
        0.0, math.log(SIGNIFICANCE ** (1 / r) / (1 - SIGNIFICANCE ** (1 / r)))
    )  # r = 1: below 0
    got = one_run_epsilon_lower_bound(
        num_canaries=2 * r, num_guesses=r, num_correct=r, significance=SIGNIFICANCE
    )
    assert got == pytest.approx(expected, abs=1e-5)


def _p_value_by_loop(eps: float, m: int, r: int, v: int, delta: float) -> float:
    """The paper's algorithm written out term by term (independent of the library code)."""
    q = math.exp(eps) / (1 + math.exp(eps))
    beta = sum(math.comb(r, j) * q**j * (1 - q) ** (r - j) for j in range(v, r + 1))
    alpha, running = 0.0, 0.0
    for i in range(1, v + 1):
        running += math.comb(r, v - i) * q ** (v - i) * (1 - q) ** (r - v + i)
        alpha = max(alpha, running / i)
    return min(1.0, beta + 2 * m * delta * alpha)


@pytest.mark.parametrize(
    ("m", "r", "v", "delta"), [(100, 40, 30, 0.0), (1000, 60, 50, 1e-4), (50, 50, 41, 1e-3)]
)
def test_p_value_matches_the_papers_formula(m: int, r: int, v: int, delta: float) -> None:
    for eps in (0.0, 0.5, 1.0, 2.0):
        got = one_run_p_value(eps, num_canaries=m, num_guesses=r, num_correct=v, delta=delta)
        assert got == pytest.approx(_p_value_by_loop(eps, m, r, v, delta), rel=1e-9, abs=1e-300)


def test_bound_is_the_largest_rejected_epsilon() -> None:
    kw = {"num_canaries": 1000, "num_guesses": 200, "num_correct": 170, "delta": 1e-5}
    eps = one_run_epsilon_lower_bound(**kw, significance=SIGNIFICANCE)  # type: ignore[arg-type]
    assert one_run_p_value(eps, **kw) < SIGNIFICANCE <= one_run_p_value(eps + 1e-4, **kw)  # type: ignore[arg-type]
    # the delta term only weakens the bound; abstaining data (v = r/2) gives nothing
    assert eps < one_run_epsilon_lower_bound(**{**kw, "delta": 0.0})  # type: ignore[arg-type]
    assert one_run_epsilon_lower_bound(num_canaries=1000, num_guesses=200, num_correct=100) == 0.0


def _randomized_response(
    rng: np.random.Generator, eps: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
    included = rng.random(size) < 0.5
    keep = rng.random(size) < math.exp(eps) / (1 + math.exp(eps))
    return included, np.where(keep, included, ~included)


def test_one_run_audit_is_valid_on_randomized_response() -> None:
    eps_true, m = 1.0, 500
    bounds = []
    for trial in range(TRIALS):
        included, output = _randomized_response(np.random.default_rng(1000 + trial), eps_true, m)
        ones = int(output.sum())
        res = one_run_audit(
            output.astype(float),
            included,
            num_positive_guesses=ones,
            num_negative_guesses=m - ones,
            significance=SIGNIFICANCE,
        )
        assert res.num_guesses == m and res.method is AuditMethod.ONE_RUN
        bounds.append(res.epsilon_lower_bound)
    bounds_arr = np.array(bounds)
    assert int(np.sum(bounds_arr > eps_true)) <= MAX_EXCEEDANCES
    assert np.mean(bounds_arr) > 0.6 * eps_true  # and the audit has power


def test_one_run_audit_with_delta_is_valid_on_the_gaussian_mechanism() -> None:
    sigma, delta, m, k = 0.5, 1e-5, 1000, 50
    eps_true = gaussian_dp_epsilon(1 / sigma, delta)  # one canary = one coordinate, sensitivity 1
    exceed, bounds = 0, []
    for trial in range(TRIALS // 4):
        rng = np.random.default_rng(5000 + trial)
        included = rng.random(m) < 0.5
        scores = included + sigma * rng.standard_normal(m)
        res = one_run_audit(
            scores,
            included,
            num_positive_guesses=k,
            num_negative_guesses=k,
            delta=delta,
            significance=SIGNIFICANCE,
        )
        exceed += res.epsilon_lower_bound > eps_true
        bounds.append(res.epsilon_lower_bound)
    assert exceed <= int(stats.binom.ppf(1 - 1e-4, TRIALS // 4, SIGNIFICANCE))
    assert 0.5 < np.mean(bounds) < eps_true


def test_guesses_use_scores_only() -> None:
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.5])
    included = np.array([True, False, True, False, True, False])
    res = one_run_audit(scores, included, num_positive_guesses=2, num_negative_guesses=2)
    assert (res.num_guesses, res.num_correct) == (4, 4)
    flipped = one_run_audit(-scores, included, num_positive_guesses=2, num_negative_guesses=2)
    assert flipped.num_correct == 0 and flipped.epsilon_lower_bound == 0.0
    guess_all = one_run_audit(scores, included, num_positive_guesses=3)
    assert guess_all.num_guesses == 6 and guess_all.num_correct == 6
    assert (guess_all.num_negative_guesses, guess_all.candidates) == (3, 1)
    abstaining = one_run_audit(scores, included)
    assert abstaining.candidates == len(abstention_grid(6)) > 1
    assert abstaining.num_correct == abstaining.num_guesses


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _separated(seed: int, m: int = 1000) -> np.ndarray:
    return np.random.default_rng(seed).random(m) < 0.5


def test_abstention_grid() -> None:
    grid = abstention_grid(1000)
    assert len(grid) == len(DEFAULT_GUESS_FRACTIONS) == 12
    assert grid[0] == (500, 500)  # guessing every canary is a candidate
    assert (475, 475) in grid and (10, 10) in grid
    assert abstention_grid(7)[0] == (4, 3)
    small = abstention_grid(4)  # r = round(f * 4) collapses: duplicates dropped, r >= 1
    assert len(set(small)) == len(small) and all(1 <= a + b <= 4 for a, b in small)
    assert abstention_grid(10, (0.5,)) == ((3, 2),)


def test_abstaining_on_perfectly_separated_scores() -> None:
    included = _separated(34)  # 484 of 1000 included
    assert int(included.sum()) == 484
    scores = included.astype(float)
    g = len(abstention_grid(1000))
    guess_all = one_run_audit(scores, included, num_positive_guesses=500)
    assert (guess_all.num_guesses, guess_all.num_correct) == (1000, 984)
    assert guess_all.epsilon_lower_bound == pytest.approx(3.70, abs=0.01)
    # fixed in advance: 250 highest and 250 lowest, all correct, level 0.05
    fixed = one_run_audit(scores, included, num_positive_guesses=250, num_negative_guesses=250)
    assert fixed.num_correct == 500
    assert fixed.epsilon_lower_bound == pytest.approx(_logit(SIGNIFICANCE ** (1 / 500)), abs=1e-5)
    assert fixed.epsilon_lower_bound >= 5.10
    # searched over the grid at level 0.05 / G: 475 + 475 guesses, all correct
    best = one_run_audit(scores, included, significance=SIGNIFICANCE)
    assert (best.num_positive_guesses, best.num_negative_guesses) == (475, 475)
    assert best.num_correct == best.num_guesses == 950 and best.candidates == g
    assert best.candidate_significance == pytest.approx(SIGNIFICANCE / g)
    expected = _logit((SIGNIFICANCE / g) ** (1 / 950))
    assert best.epsilon_lower_bound == pytest.approx(expected, abs=1e-5)
    assert best.epsilon_lower_bound >= 5.10 > guess_all.epsilon_lower_bound
    # with delta: the paper's p-value, written out, brackets the reported bound
    with_delta = one_run_audit(scores, included, delta=1e-5, significance=SIGNIFICANCE)
    assert with_delta.num_guesses == with_delta.num_correct == 950
    eps = with_delta.epsilon_lower_bound
    assert _p_value_by_loop(eps, 1000, 950, 950, 1e-5) < SIGNIFICANCE / g
    assert _p_value_by_loop(eps + 1e-4, 1000, 950, 950, 1e-5) >= SIGNIFICANCE / g
    assert 5.0 < eps < best.epsilon_lower_bound


@pytest.mark.parametrize(("sigma", "seed"), [(0.0, 34), (0.25, 1), (0.5, 2), (1.0, 3), (2.0, 4)])
def test_abstaining_is_never_worse_than_guessing_everything(sigma: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    included = rng.random(1000) < 0.5
    scores = included + sigma * rng.standard_normal(1000)
    g = len(abstention_grid(1000))
    best = one_run_audit(scores, included, delta=1e-5)
    everything = {"num_positive_guesses": 500, "num_negative_guesses": 500, "delta": 1e-5}
    # guessing everything is one of the G candidates: the search loses at most its Bonferroni cost
    at_split_level = one_run_audit(scores, included, **everything, significance=SIGNIFICANCE / g)  # type: ignore[arg-type]
    assert best.epsilon_lower_bound >= at_split_level.epsilon_lower_bound
    # and in these runs it is better than guessing everything even at the full level
    at_full_level = one_run_audit(scores, included, **everything)  # type: ignore[arg-type]
    assert best.epsilon_lower_bound > at_full_level.epsilon_lower_bound


def test_abstaining_audit_is_valid_on_the_gaussian_mechanism() -> None:
    """The searched bound never exceeds the true epsilon over many seeded runs."""
    sigma, delta, m = 1.0, 1e-5, 1000
    eps_true = gaussian_dp_epsilon(1 / sigma, delta)  # one canary = one coordinate, sensitivity 1
    bounds = []
    for trial in range(100):
        rng = np.random.default_rng(7000 + trial)
        included = rng.random(m) < 0.5
        scores = included + sigma * rng.standard_normal(m)
        bounds.append(
            one_run_audit(
                scores, included, delta=delta, significance=SIGNIFICANCE
            ).epsilon_lower_bound
        )
    assert max(bounds) < eps_true
    assert np.mean(bounds) > 1.0  # power: guessing everything averages about 0.7 here


def test_abstaining_audit_is_valid_on_randomized_response() -> None:
    """Pure eps-DP, where the one-run bound can come close to the truth: exceedances stay rare."""
    eps_true, m = 2.0, 300
    exceed, bounds = 0, []
    for trial in range(200):
        included, output = _randomized_response(np.random.default_rng(3000 + trial), eps_true, m)
        res = one_run_audit(output.astype(float), included, significance=SIGNIFICANCE)
        exceed += res.epsilon_lower_bound > eps_true
        bounds.append(res.epsilon_lower_bound)
    assert exceed <= int(stats.binom.ppf(1 - 1e-4, 200, SIGNIFICANCE))
    assert np.mean(bounds) > 0.5 * eps_true


def test_sweep_is_bonferroni_corrected() -> None:
    rng = np.random.default_rng(7)
    included = rng.random(400) < 0.5
    scores = included + 0.3 * rng.standard_normal(400)
    counts = [(10, 10), (50, 50), (100, 100)]
    swept = one_run_audit_sweep(scores, included, counts, significance=SIGNIFICANCE)
    individual = [
        one_run_audit(
            scores,
            included,
            num_positive_guesses=a,
            num_negative_guesses=b,
            significance=SIGNIFICANCE / 3,
        )
        for a, b in counts
    ]
    assert swept.epsilon_lower_bound == max(r.epsilon_lower_bound for r in individual)
    assert swept.significance == SIGNIFICANCE and swept.candidates == 3
    assert one_run_audit(scores, included, guess_counts=counts) == swept
    uncorrected = max(
        one_run_audit(
            scores, included, num_positive_guesses=a, num_negative_guesses=b
        ).epsilon_lower_bound
        for a, b in counts
    )
    assert swept.epsilon_lower_bound < uncorrected


@pytest.mark.parametrize(("k", "n"), [(0, 50), (3, 100), (40, 100), (100, 100)])
def test_clopper_pearson_matches_scipy_exact_interval(k: int, n: int) -> None:
    a = 0.025
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * a, method="exact")
    assert clopper_pearson_upper(k, n, a) == pytest.approx(ci.high, rel=1e-9)
    assert clopper_pearson_lower(k, n, a) == pytest.approx(ci.low, abs=1e-12)


def test_clopper_pearson_bound_formula() -> None:
    res = clopper_pearson_epsilon_lower_bound(
        false_positives=10,
        negatives=1000,
        false_negatives=100,
        positives=1000,
        delta=1e-5,
        significance=0.1,
    )
    fpr = stats.beta.ppf(0.95, 11, 990)
    fnr = stats.beta.ppf(0.95, 101, 900)
    expected = max(math.log((1 - 1e-5 - fnr) / fpr), math.log((1 - 1e-5 - fpr) / fnr))
    assert res.epsilon_lower_bound == pytest.approx(expected, rel=1e-9)
    assert (
        res.false_positive_rate_upper == pytest.approx(fpr)
        and res.method is AuditMethod.CLOPPER_PEARSON
    )
    useless = clopper_pearson_epsilon_lower_bound(
        false_positives=50, negatives=100, false_negatives=50, positives=100
    )
    assert useless.epsilon_lower_bound == 0.0


def test_clopper_pearson_audit_is_valid_on_randomized_response() -> None:
    eps_true, n = 2.0, 300
    flip = 1 / (1 + math.exp(eps_true))
    exceed, bounds = 0, []
    for trial in range(TRIALS):
        rng = np.random.default_rng(9000 + trial)
        fp = int(rng.binomial(n, flip))  # target absent, mechanism says "in"
        fn = int(rng.binomial(n, flip))
        res = clopper_pearson_epsilon_lower_bound(
            false_positives=fp,
            negatives=n,
            false_negatives=fn,
            positives=n,
            significance=SIGNIFICANCE,
        )
        exceed += res.epsilon_lower_bound > eps_true
        bounds.append(res.epsilon_lower_bound)
    assert exceed <= MAX_EXCEEDANCES
    assert np.mean(bounds) > 0.6 * eps_true


def test_threshold_audit_counts_errors() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.1, 0.2])
    included = np.array([1, 1, 1, 0, 0, 0])
    res = threshold_audit(scores, included, 0.5)
    assert (res.false_positives, res.negatives, res.false_negatives, res.positives) == (1, 3, 1, 3)


@pytest.mark.parametrize(
    "call",
    [
        lambda: one_run_p_value(-1.0, num_canaries=10, num_guesses=5, num_correct=3),
        lambda: one_run_p_value(1.0, num_canaries=10, num_guesses=5, num_correct=6),
        lambda: one_run_p_value(1.0, num_canaries=4, num_guesses=5, num_correct=3),
        lambda: one_run_p_value(1.0, num_canaries=10, num_guesses=5, num_correct=3, delta=2.0),
        lambda: one_run_epsilon_lower_bound(
            num_canaries=10, num_guesses=5, num_correct=3, significance=0.0
        ),
        lambda: one_run_audit([1.0, 2.0], [True]),
        lambda: one_run_audit([1.0, math.nan], [True, False]),
        lambda: one_run_audit([1.0, 2.0], [2, 0]),
        lambda: one_run_audit(
            [1.0, 2.0], [True, False], num_positive_guesses=2, num_negative_guesses=1
        ),
        lambda: one_run_audit_sweep([1.0, 2.0], [True, False], []),
        lambda: one_run_audit_sweep([1.0, 2.0], [True, False], [(1,)]),  # type: ignore[list-item]
        lambda: one_run_audit_sweep([1.0, 2.0], [True, False], [(2, 1)]),
        lambda: one_run_audit(
            [1.0, 2.0], [True, False], num_positive_guesses=1, guess_counts=[(1, 1)]
        ),
        lambda: abstention_grid(10, ()),
        lambda: abstention_grid(10, (1.5,)),
        lambda: clopper_pearson_upper(5, 4, 0.05),
        lambda: clopper_pearson_epsilon_lower_bound(
            false_positives=1, negatives=0, false_negatives=0, positives=1
        ),
        lambda: threshold_audit([1.0], [True], math.nan),
    ],
)
def test_invalid_input_is_refused(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError):
        call()
