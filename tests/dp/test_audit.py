"""Empirical audits: known answers, independent formulas, and validity over seeded trials."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from dp.accounting import gaussian_dp_epsilon
from dp.audit import (
    AuditMethod,
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
    default = one_run_audit(scores, included)
    assert default.num_guesses == 6 and default.num_correct == 6


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
    assert swept.significance == SIGNIFICANCE
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
