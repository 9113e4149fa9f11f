"""Renyi DP: dp-accounting's RDP accountant, extended with the distributed mechanisms.

:class:`RdpAccountant` adds RDP curves for
:class:`~dp.events.DistributedDiscreteGaussianDpEvent` and
:class:`~dp.events.DistributedSkellamDpEvent`, alone or under Poisson subsampling;
:func:`rdp_to_epsilon` converts a curve into epsilon.

RDP bounds used for the distributed mechanisms (all quantities in the scaled integer
domain in which the noise is added, see :mod:`dp.events`):

* Distributed discrete Gaussian, Kairouz, Liu, Steinke (ICML 2021, arXiv 2102.06387),
  Proposition 14 / Eq. (17), as implemented by the authors in google-research/federated
  ``distributed_dp/accounting_utils.py``. With ``n`` clients each adding
  ``N_Z(0, sigma^2)``, ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1))``,
  ``a2 = Delta2 / (sqrt(n) sigma)`` and ``a1 = Delta1 / (sqrt(n) sigma)``::

      eps(alpha) = min( alpha a2^2 / 2 + tau d,
                        alpha (a2^2 + 2 a1 tau + tau^2 d) / 2,
                        alpha (a2 + tau sqrt(d))^2 / 2 )

  The bound is proven for ``sigma >= 1/2``; smaller local sigmas are refused.
* Skellam, Agarwal, Kairouz, Liu (NeurIPS 2021, arXiv 2110.04995), Theorem 3.5, with
  ``mu`` the variance of the aggregate noise per coordinate (``2 n local_mu``); proven for
  integer orders::

      eps(alpha) = alpha Delta2^2 / (2 mu)
                   + min( ((2 alpha - 1) Delta2^2 + 6 Delta1) / (4 mu^2), 3 Delta1 / (2 mu) )

* Poisson subsampling of any event whose RDP curve is known (the two above, or any
  composition the RDP accountant supports), Zhu and Wang (ICML 2019), Theorem 6 (general
  upper bound), for integer ``alpha >= 2`` and sampling rate ``q``::

      eps'(alpha) <= 1/(alpha-1) log( (1-q)^(alpha-1) (alpha q - q + 1)
                         + C(alpha,2) q^2 (1-q)^(alpha-2) e^{eps(2)}
                         + 3 sum_{l=3}^{alpha} C(alpha,l) q^l (1-q)^(alpha-l) e^{(l-1) eps(l)} )

  and ``eps'(alpha) <= eps(alpha)`` (subsampling never hurts), so the minimum is taken.
  A Poisson-sampled event that only contains Gaussians keeps dp-accounting's exact
  subsampled-Gaussian RDP.

RDP is non-decreasing in the order, so at a fractional order ``alpha`` the bounds that
only hold at integer orders are evaluated at ``ceil(alpha)``, an upper bound. RDP is
converted to (epsilon, delta) by dp-accounting (Canonne, Kamath, Steinke 2020,
Proposition 12; the same conversion as Opacus).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import dp_accounting
import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import special

from dp.accountants.base import (
    AccountantLimitError,
    CompositionErrorDetails,
    FloatArray,
    NeighboringRelation,
    ValidatingAccountant,
    validate_distributed,
)
from dp.events import DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent
from secagg.errors import InvalidParameterError
from secagg.validation import require_positive, require_real

__all__ = [
    "MAX_RDP_ORDER",
    "MAX_RDP_ORDERS",
    "RdpAccountant",
    "check_user_orders",
    "ddg_rdp",
    "poisson_subsampled_rdp",
    "rdp_to_epsilon",
    "skellam_rdp",
]

#: RDP orders: dp-accounting's subsampled-Gaussian RDP costs O(alpha) Python steps per order.
MAX_RDP_ORDERS = 512
MAX_RDP_ORDER = 4096


def _check_orders(orders: Sequence[float] | FloatArray) -> FloatArray:
    arr = np.asarray(orders, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 1):
        raise InvalidParameterError("RDP orders must be a non-empty list of finite numbers > 1")
    return arr


def check_user_orders(orders: Sequence[float] | FloatArray) -> FloatArray:
    """``orders`` as an array, refusing more or larger orders than the accountant evaluates.

    Raises:
        InvalidParameterError: the orders are not finite numbers ``> 1``.
        AccountantLimitError: more than :data:`MAX_RDP_ORDERS` orders, or one above
            :data:`MAX_RDP_ORDER`.
    """
    arr = _check_orders(orders)
    if arr.size > MAX_RDP_ORDERS or float(arr.max()) > MAX_RDP_ORDER:
        raise AccountantLimitError(
            f"{arr.size} RDP orders up to {float(arr.max()):g} are more than the RDP accountant "
            f"evaluates (at most {MAX_RDP_ORDERS} orders, each <= {MAX_RDP_ORDER}: the cost of "
            "the subsampled bounds grows with the order); use dp-accounting's default orders"
        )
    return arr


def ddg_rdp(
    event: DistributedDiscreteGaussianDpEvent, orders: Sequence[float] | FloatArray
) -> FloatArray:
    """RDP curve of one release of the distributed discrete Gaussian mechanism.

    Kairouz, Liu, Steinke (ICML 2021), Proposition 14 / Eq. (17); see the module
    docstring for the formula. ``n = 1`` gives the discrete Gaussian of Canonne, Kamath,
    Steinke (``tau = 0``): ``alpha Delta2^2 / (2 sigma^2)``.

    Args:
        event: the mechanism, quantities in the scaled integer domain.
        orders: RDP orders ``alpha > 1``.

    Returns:
        ``eps(alpha)`` for each order.

    Raises:
        InvalidParameterError: a parameter is out of range, including ``local_sigma < 1/2``
            where the bound is not proven.
    """
    validate_distributed(event)
    require_positive("local_sigma", event.local_sigma)
    if event.local_sigma < 0.5:
        raise InvalidParameterError(
            "the distributed discrete Gaussian bound needs local_sigma >= 1/2 in the scaled "
            f"domain, got {event.local_sigma}; increase the scale or the noise"
        )
    alphas = _check_orders(orders)
    n = int(event.num_clients)
    sigma = float(event.local_sigma)
    d = float(event.dimension)
    k = np.arange(1, n, dtype=np.float64)
    tau = 10.0 * float(np.sum(np.exp(-2.0 * math.pi**2 * sigma**2 * k / (k + 1.0))))
    a2 = event.l2_sensitivity / (math.sqrt(n) * sigma)
    a1 = event.l1_sensitivity / (math.sqrt(n) * sigma)
    term1 = alphas * a2**2 / 2.0 + tau * d
    term2 = alphas * (a2**2 + 2.0 * a1 * tau + tau**2 * d) / 2.0
    term3 = alphas * (a2 + tau * math.sqrt(d)) ** 2 / 2.0
    return np.minimum(np.minimum(term1, term2), term3)


def skellam_rdp(
    event: DistributedSkellamDpEvent, orders: Sequence[float] | FloatArray
) -> FloatArray:
    """RDP curve of one release of the (distributed) Skellam mechanism.

    Agarwal, Kairouz, Liu (NeurIPS 2021), Theorem 3.5, with ``mu`` the central variance
    ``2 num_clients local_mu``; the bound holds at integer orders, so a fractional order is
    evaluated at its ceiling (RDP is non-decreasing in the order).

    Args:
        event: the mechanism, quantities in the scaled integer domain.
        orders: RDP orders ``alpha > 1``.

    Returns:
        ``eps(alpha)`` for each order.

    Raises:
        InvalidParameterError: a parameter is out of range.
    """
    validate_distributed(event)
    require_positive("local_mu", event.local_mu)
    alphas = np.ceil(_check_orders(orders))
    mu = event.central_variance
    l2sq = float(event.l2_sensitivity) ** 2
    l1 = float(event.l1_sensitivity)
    correction = np.minimum(
        ((2.0 * alphas - 1.0) * l2sq + 6.0 * l1) / (4.0 * mu**2), 3.0 * l1 / (2.0 * mu)
    )
    return np.asarray(alphas * l2sq / (2.0 * mu) + correction, dtype=np.float64)


def poisson_subsampled_rdp(
    base_rdp: Callable[[FloatArray], FloatArray],
    sampling_rate: float,
    orders: Sequence[float] | FloatArray,
) -> FloatArray:
    """RDP of a Poisson-subsampled mechanism from the RDP curve of the mechanism.

    Zhu and Wang (ICML 2019), Theorem 6 (general upper bound, add/remove neighbours), at
    integer orders; a fractional order is evaluated at its ceiling. The result is also
    capped by the unsampled ``eps(alpha)``.

    Args:
        base_rdp: maps an array of integer orders (as floats, all >= 2) to the
            mechanism's RDP at those orders (may be ``inf``).
        sampling_rate: inclusion probability ``q`` in ``[0, 1]``.
        orders: RDP orders ``alpha > 1``.

    Returns:
        An upper bound on the subsampled mechanism's RDP at each order.
    """
    sampling_rate = require_real("sampling rate", sampling_rate, lo=0.0, hi=1.0)
    alphas = np.maximum(np.ceil(_check_orders(orders)), 2.0)
    if sampling_rate == 0.0:
        return np.zeros_like(alphas)
    max_order = int(alphas.max())
    ints = np.arange(2, max_order + 1, dtype=np.float64)
    eps_int = np.asarray(base_rdp(ints), dtype=np.float64)  # eps_int[l - 2] = eps(l)
    direct = eps_int[alphas.astype(np.int64) - 2]
    if sampling_rate == 1.0:
        return direct
    q = float(sampling_rate)
    log_q, log_1mq = math.log(q), math.log1p(-q)
    out = np.empty_like(alphas)
    for i, alpha_f in enumerate(alphas):
        alpha = int(alpha_f)
        terms = [(alpha - 1) * log_1mq + math.log(alpha * q - q + 1.0)]
        terms.append(
            float(special.gammaln(alpha + 1) - special.gammaln(3) - special.gammaln(alpha - 1))
            + 2 * log_q
            + (alpha - 2) * log_1mq
            + eps_int[0]
        )
        if alpha >= 3:
            ls = np.arange(3, alpha + 1, dtype=np.float64)
            log_comb = (
                special.gammaln(alpha + 1)
                - special.gammaln(ls + 1)
                - special.gammaln(alpha - ls + 1)
            )
            with np.errstate(invalid="ignore"):
                rest = (
                    math.log(3.0)
                    + log_comb
                    + ls * log_q
                    + (alpha - ls) * log_1mq
                    + (ls - 1) * eps_int[1 : alpha - 1]
                )
            terms.extend(rest.tolist())
        arr = np.asarray(terms)
        total = math.inf if np.any(np.isposinf(arr)) else float(special.logsumexp(arr))
        out[i] = total / (alpha - 1)
    return np.minimum(out, direct)


def _is_gaussian_only(event: dp_accounting.DpEvent) -> bool:
    if isinstance(event, dp_accounting.GaussianDpEvent):
        return True
    if isinstance(event, dp_accounting.SelfComposedDpEvent):
        return _is_gaussian_only(event.event)
    if isinstance(event, dp_accounting.ComposedDpEvent):
        return all(_is_gaussian_only(e) for e in event.events)
    return False


class RdpAccountant(ValidatingAccountant, rdp_privacy_accountant.RdpAccountant):  # type: ignore[misc]
    """dp-accounting's RDP accountant, extended with the distributed mechanisms.

    Adds :class:`~dp.events.DistributedDiscreteGaussianDpEvent` and
    :class:`~dp.events.DistributedSkellamDpEvent` (see :func:`ddg_rdp`,
    :func:`skellam_rdp`) and ``PoissonSampledDpEvent`` around any supported event that
    is not purely Gaussian (see :func:`poisson_subsampled_rdp`). Everything else is
    handled by dp-accounting unchanged.
    """

    _rdp: FloatArray
    _orders: FloatArray

    def _maybe_compose(
        self, event: dp_accounting.DpEvent, count: int, do_compose: bool
    ) -> CompositionErrorDetails | None:
        if isinstance(event, DistributedDiscreteGaussianDpEvent):
            curve = ddg_rdp(event, self._orders)  # validates even when only checking
            if do_compose:
                self._rdp = self._rdp + count * curve
            return None
        if isinstance(event, DistributedSkellamDpEvent):
            curve = skellam_rdp(event, self._orders)
            if do_compose:
                self._rdp = self._rdp + count * curve
            return None
        if isinstance(event, dp_accounting.PoissonSampledDpEvent) and not _is_gaussian_only(
            event.event
        ):
            if self.neighboring_relation not in (
                NeighboringRelation.ADD_OR_REMOVE_ONE,
                NeighboringRelation.REPLACE_SPECIAL,
            ):
                return CompositionErrorDetails(
                    invalid_event=event,
                    error_message="Poisson subsampling is accounted for add/remove neighbours "
                    "only; "
                    f"found {self.neighboring_relation}",
                )
            max_order = int(np.ceil(np.max(self._orders)))
            inner = RdpAccountant(
                orders=np.arange(2, max(max_order, 2) + 1, dtype=np.float64),
                neighboring_relation=self.neighboring_relation,
            )
            error = inner._maybe_compose(event.event, 1, False)
            if error is not None:
                return error
            if do_compose:
                inner._maybe_compose(event.event, 1, True)
                inner_curve = np.asarray(inner.rdp, dtype=np.float64)
                amplified = poisson_subsampled_rdp(
                    lambda ints: inner_curve[ints.astype(np.int64) - 2],
                    float(event.sampling_probability),
                    self._orders,
                )
                # Subsampling never hurts: cap by the unsampled curve at the exact orders
                # (the amplified bound is only available at their ceilings).
                unsampled = RdpAccountant(
                    orders=self._orders, neighboring_relation=self.neighboring_relation
                )
                unsampled._maybe_compose(event.event, 1, True)
                self._rdp = self._rdp + count * np.minimum(amplified, unsampled.rdp)
            return None
        return super()._maybe_compose(event, count, do_compose)


def rdp_to_epsilon(orders: FloatArray, rdp: FloatArray, delta: float) -> float:
    """epsilon at ``delta`` from an RDP curve (dp-accounting's conversion)."""
    delta = require_real("delta", delta, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    eps, _ = rdp_privacy_accountant.compute_epsilon(orders, rdp, delta)
    return max(0.0, float(eps))
