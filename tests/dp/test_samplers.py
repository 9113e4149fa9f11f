"""Statistical and exactness tests of the CSPRNG-driven noise samplers (fixed seeds: no flakes)."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from dp import samplers
from dp.samplers import (
    discrete_gaussian_pmf,
    discrete_gaussian_variance,
    sample_discrete_gaussian,
    sample_gaussian,
    sample_poisson,
    sample_skellam,
)
from secagg.errors import InvalidParameterError


def _seed(tag: int) -> bytes:
    return bytes([tag]) * 32


def _chi_square_pvalue(
    draws: npt.NDArray[np.int64], pmf: npt.NDArray[np.float64], lo: int
) -> float:
    """Chi-square goodness of fit; ``pmf[i]`` is P[X = lo + i]; tails merged until >= 5 expected."""
    n = draws.shape[0]
    expected = pmf * n
    keep = np.flatnonzero(expected >= 5.0)
    first, last = int(keep[0]), int(keep[-1])
    support = np.arange(lo + first, lo + last + 1)
    counts = np.array([np.count_nonzero(draws == k) for k in support], dtype=np.float64)
    exp_in = expected[first : last + 1].copy()
    # merge everything below / above into the end bins
    counts[0] += np.count_nonzero(draws < support[0])
    counts[-1] += np.count_nonzero(draws > support[-1])
    exp_in[0] += expected[:first].sum() + n * max(0.0, 1.0 - pmf.sum()) / 2
    exp_in[-1] += expected[last + 1 :].sum() + n * max(0.0, 1.0 - pmf.sum()) / 2
    exp_in *= n / exp_in.sum()
    return float(stats.chisquare(counts, exp_in).pvalue)


@pytest.mark.parametrize(("sigma", "tag"), [(0.4, 1), (1.0, 2), (3.7, 3), (25.0, 4)])
def test_discrete_gaussian_matches_pmf(sigma: float, tag: int) -> None:
    draws = sample_discrete_gaussian(sigma, 200_000, seed=_seed(tag))
    assert draws.dtype == np.int64
    half = int(math.ceil(12 * sigma)) + 2
    support = np.arange(-half, half + 1)
    pvalue = _chi_square_pvalue(draws, discrete_gaussian_pmf(sigma, support), -half)
    assert pvalue > 1e-4
    # variance within 5 standard errors of the exact discrete-Gaussian variance
    var = discrete_gaussian_variance(sigma)
    kurt_factor = 2.0 if sigma >= 1 else 3.0
    assert abs(float(draws.var()) - var) < 5 * var * math.sqrt(kurt_factor / draws.shape[0])
    assert abs(float(draws.mean())) < 5 * math.sqrt(var / draws.shape[0])


def test_discrete_gaussian_large_sigma_moments() -> None:
    sigma = 1.5e6
    draws = sample_discrete_gaussian(sigma, 200_000, seed=_seed(5)).astype(np.float64)
    assert abs(draws.var() / sigma**2 - 1.0) < 5 * math.sqrt(2 / draws.shape[0])
    assert abs(draws.mean()) < 5 * sigma / math.sqrt(draws.shape[0])
    # Gaussian shape: Kolmogorov-Smirnov against N(0, sigma^2) (lattice step is negligible)
    assert stats.kstest(draws / sigma, "norm").pvalue > 1e-4


def test_discrete_gaussian_variance_helper_matches_theory() -> None:
    # Poisson summation: Var = sigma^2 (1 - 8 pi^2 sigma^2 exp(-2 pi^2 sigma^2) + ...)
    for sigma in (1.0, 1.2):
        deficit = 8 * math.pi**2 * sigma**2 * math.exp(-2 * math.pi**2 * sigma**2)
        assert discrete_gaussian_variance(sigma) == pytest.approx(
            sigma**2 * (1 - deficit), rel=1e-12
        )
    assert discrete_gaussian_variance(2.0) == pytest.approx(4.0, rel=1e-15)
    # small sigma: variance is far below sigma^2 (mass concentrates on {-1, 0, 1})
    p1 = math.exp(-1 / (2 * 0.3**2))
    p2 = math.exp(-4 / (2 * 0.3**2))
    expected = (2 * p1 + 8 * p2) / (1 + 2 * p1 + 2 * p2)
    assert discrete_gaussian_variance(0.3) == pytest.approx(expected, rel=1e-6)


def test_exact_path_gives_the_same_law() -> None:
    """Force almost every decision through the arbitrary-precision fallback."""
    stream = samplers._WordStream(_seed(6))
    sigma = 2.5
    draws = samplers._discrete_gaussian(sigma, 3_000, stream, 2.0**51)
    half = 12
    support = np.arange(-half, half + 1)
    assert _chi_square_pvalue(draws, discrete_gaussian_pmf(sigma, support), -half) > 1e-4


def test_lazy_uniform_decides_at_the_boundary() -> None:
    """A prefix equal to floor(e^-gamma 2^53) is decided by further bits, exactly."""
    gamma = Fraction(1, 2)
    with localcontext() as ctx:
        ctx.prec = 80
        p = Decimal(-0.5).exp()
    prefix = int(p * (Decimal(2) ** 53))  # floor: W's interval contains e^-1/2
    for tag in range(20):
        stream = samplers._WordStream(_seed(100 + tag))
        lazy = samplers._LazyUniform(prefix, 53, stream)
        decided = lazy.less_than_exp_neg(gamma)
        # independent derivation: the same stream's next word extends the prefix
        nxt = int(samplers._WordStream(_seed(100 + tag)).words(1)[0])
        with localcontext() as ctx:
            ctx.prec = 80
            truth = Decimal((prefix << 64) | nxt) + Decimal("0.5") < p * (Decimal(2) ** 117)
        assert decided is truth
        assert lazy.bits >= 117


def test_lazy_geometric_matches_high_precision_log() -> None:
    rng = np.random.default_rng(7)  # test data only
    for tag, prefix in enumerate([0, 1, 5, 2**20, *rng.integers(1, 2**53, 30).tolist()]):
        stream = samplers._WordStream(_seed(tag))
        lazy = samplers._LazyUniform(int(prefix), 53, stream)
        v = lazy.geometric()
        with localcontext() as ctx:
            ctx.prec = 120
            w = (Decimal(lazy.prefix) + Decimal("0.5")) / (Decimal(2) ** lazy.bits)
            assert v == int((-w.ln()).to_integral_value(rounding="ROUND_FLOOR"))


def test_lazy_uniform_frequency() -> None:
    stream = samplers._WordStream(_seed(8))
    gamma = Fraction(2, 3)
    hits = sum(samplers._LazyUniform(0, 0, stream).less_than_exp_neg(gamma) for _ in range(4000))
    p = math.exp(-2 / 3)
    assert abs(hits / 4000 - p) < 5 * math.sqrt(p * (1 - p) / 4000)


@pytest.mark.parametrize(("mu", "tag"), [(0.3, 9), (4.0, 10), (150.0, 11), (2500.0, 12)])
def test_skellam_matches_pmf(mu: float, tag: int) -> None:
    draws = sample_skellam(mu, 200_000, seed=_seed(tag))
    assert draws.dtype == np.int64
    half = int(12 * math.sqrt(2 * mu)) + 10
    support = np.arange(-half, half + 1)
    pmf = stats.skellam.pmf(support, mu, mu)
    assert _chi_square_pvalue(draws, pmf, -half) > 1e-4
    assert abs(float(draws.var()) / (2 * mu) - 1) < 5 * math.sqrt(2.5 / draws.shape[0])


@pytest.mark.parametrize(("mu", "tag"), [(7.5, 13), (5000.0, 14)])
def test_poisson_matches_pmf(mu: float, tag: int) -> None:
    draws = sample_poisson(mu, 100_000, seed=_seed(tag))
    hi = int(mu + 12 * math.sqrt(mu)) + 10
    support = np.arange(0, hi + 1)
    assert _chi_square_pvalue(draws, stats.poisson.pmf(support, mu), 0) > 1e-4
    assert draws.min() >= 0


def test_gaussian_is_normal() -> None:
    draws = sample_gaussian(3.0, 100_001, seed=_seed(15))
    assert draws.shape == (100_001,)
    assert stats.kstest(draws / 3.0, "norm").pvalue > 1e-4


def test_seeds_replay_and_default_is_fresh() -> None:
    a = sample_discrete_gaussian(10.0, 1000, seed=_seed(16))
    b = sample_discrete_gaussian(10.0, 1000, seed=_seed(16))
    assert np.array_equal(a, b)
    np.random.seed(0)  # numpy's global generator plays no part
    c = sample_discrete_gaussian(10.0, 1000)
    np.random.seed(0)
    d = sample_discrete_gaussian(10.0, 1000)
    assert not np.array_equal(c, d)
    assert not np.array_equal(sample_skellam(10.0, 1000), sample_skellam(10.0, 1000))


def test_shapes_and_degenerate_parameters() -> None:
    assert sample_discrete_gaussian(2.0, (3, 4)).shape == (3, 4)
    assert sample_skellam(2.0, (2, 5)).shape == (2, 5)
    assert not sample_discrete_gaussian(0.0, 10).any()
    assert not sample_skellam(0.0, 10).any()
    assert sample_discrete_gaussian(3.0, 0).shape == (0,)


@pytest.mark.parametrize(
    "call",
    [
        lambda: sample_discrete_gaussian(-1.0, 3),
        lambda: sample_discrete_gaussian(float("nan"), 3),
        lambda: sample_discrete_gaussian(2.0**41, 3),
        lambda: sample_discrete_gaussian(1.0, -1),
        lambda: sample_discrete_gaussian(1.0, (2, -1)),
        lambda: sample_discrete_gaussian(1.0, 3, seed=b"short"),
        lambda: sample_skellam(float("inf"), 3),
        lambda: sample_skellam(-0.5, 3),
        lambda: sample_gaussian(-1.0, 3),
    ],
)
def test_bad_parameters_raise(call: object) -> None:
    with pytest.raises(InvalidParameterError):
        call()  # type: ignore[operator]


def test_large_rate_log_pmf_matches_high_precision() -> None:
    """The cancellation-free log-pmf used by PTRS, against mpmath at 50 digits."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    for mu in (1000.0, 3.0e6, 2.0**40):
        ks = np.array(
            [mu - 7 * math.sqrt(mu), mu - 1, mu, mu + 0.5 * math.sqrt(mu), mu + 9 * math.sqrt(mu)]
        )
        ks = np.floor(ks)
        ours = samplers._log_poisson_pmf(ks, mu, math.log(mu))
        for k, value in zip(ks, ours):
            exact = (
                -mpmath.mpf(mu) + int(k) * mpmath.log(mpmath.mpf(mu)) - mpmath.loggamma(int(k) + 1)
            )
            assert abs(value - float(exact)) < 1e-9


def test_skellam_huge_rate_variance() -> None:
    mu = 2.0**40
    draws = sample_skellam(mu, 100_000, seed=_seed(17)).astype(np.float64)
    assert abs(draws.var() / (2 * mu) - 1) < 5 * math.sqrt(2 / draws.shape[0])
    assert stats.kstest(draws / math.sqrt(2 * mu), "norm").pvalue > 1e-4
