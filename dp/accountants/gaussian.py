"""The exact privacy curve of mu-GDP, the yardstick of the Gaussian mechanism.

The Gaussian mechanism with noise multiplier ``sigma`` composed ``T`` times is exactly
``sqrt(T) / sigma``-GDP (Dong, Roth, Su 2019), so :func:`gaussian_dp_delta` and
:func:`gaussian_dp_epsilon` give its (epsilon, delta) without discretization: the
reference every accountant's answer for the Gaussian is checked against.
"""

from __future__ import annotations

import math

from scipy import special

from secagg.validation import require_positive, require_real

__all__ = ["gaussian_dp_delta", "gaussian_dp_epsilon"]


def gaussian_dp_delta(mu: float, epsilon: float) -> float:
    """Exact delta(epsilon) of mu-GDP (Dong, Roth, Su 2019, Corollary 2.13).

    ``delta = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)``. The Gaussian mechanism
    with noise multiplier ``sigma`` composed ``T`` times is exactly ``sqrt(T)/sigma``-GDP.
    """
    require_positive("mu", mu)
    # scipy.special's ndtr / log_ndtr: what scipy.stats.norm's cdf / logcdf evaluate,
    # without the distribution machinery (the bisection below calls this ~40 times)
    log_second = epsilon + float(special.log_ndtr(-epsilon / mu - mu / 2.0))
    return float(special.ndtr(-epsilon / mu + mu / 2.0) - math.exp(log_second))


def gaussian_dp_epsilon(mu: float, delta: float) -> float:
    """Exact epsilon(delta) of mu-GDP: the root of :func:`gaussian_dp_delta` (bisection)."""
    require_positive("mu", mu)
    delta = require_real("delta", delta, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if gaussian_dp_delta(mu, 0.0) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while gaussian_dp_delta(mu, hi) > delta:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if gaussian_dp_delta(mu, mid) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return hi
