"""Privacy accountants: (epsilon, delta) of composed DP events, with three back ends.

Every mechanism is described by a ``dp_accounting.DpEvent`` (dp-accounting's own events
and the two distributed events of :mod:`dp.events`). An accountant composes events and
converts the result into ``epsilon`` for a ``delta`` (or ``delta`` for an ``epsilon``):

* ``AccountantKind.PLD`` -- dp-accounting's privacy-loss-distribution accountant
  (``dp_accounting.pld.PLDAccountant``, through :class:`PldAccountant`, which sizes each
  distribution before building it). Tight for the (subsampled) Gaussian, Laplace and
  randomized response; it does **not** handle the distributed discrete Gaussian or Skellam
  events and refuses them with :class:`~secagg.errors.UnsupportedEventError`.
* ``AccountantKind.RDP`` -- dp-accounting's Renyi accountant extended with RDP bounds for
  :class:`~dp.events.DistributedDiscreteGaussianDpEvent` and
  :class:`~dp.events.DistributedSkellamDpEvent`, alone or under Poisson subsampling.
* ``AccountantKind.PRV`` -- Opacus' privacy-random-variable accountant (Gopi et al. 2021),
  for the Gaussian and the Poisson-subsampled Gaussian only.

The distributed discrete Gaussian has, besides its RDP bound, a much tighter route:
:func:`distributed_pld_epsilon` accounts the Gaussian mechanism with the same noise
multiplier by PLD and adds a proven closeness correction (:func:`ddg_gaussian_closeness`;
the theorem and its proof are in that docstring). At the demo's 32-bit ring the correction
is ``~1e-3`` in epsilon: 5.10 where the RDP bound gives 7.58. The ledger reports the
smaller of the two for every composition with such events (under its ``pld`` and ``rdp``
accountants alike); :func:`distributed_epsilon` computes the same figure for one event.

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

Every accountant validates the events before any work (:func:`validate_event`: finite,
non-negative noise, sampling rates in ``[0, 1]``, integer counts ``>= 1``) and sizes the
work beforehand, refusing with :class:`AccountantLimitError` (an
:class:`~secagg.errors.InvalidParameterError`) anything above
:data:`MAX_ACCOUNTANT_MEMORY`: the PLD from dp-accounting's own truncation bounds
(:class:`PldAccountant`), the PRV from Opacus' mesh formula, the RDP from the number and
size of the orders. The message says which accountant or parameter to change.

Events are plain data; :func:`event_to_dict` and :func:`event_from_dict` serialise them
(ours included) to JSON-compatible dictionaries, restricted to a whitelist of event
classes so that loading a file never imports arbitrary code.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any

import attr
import dp_accounting
import numpy as np
import numpy.typing as npt
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.privacy_accountant import NeighboringRelation
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import special

from dp.events import DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent
from secagg.errors import (
    InvalidParameterError,
    SecAggError,
    UnsupportedEventError,
    raise_missing_extra,
)

__all__ = [
    "AccountantKind",
    "AccountantLimitError",
    "PldAccountant",
    "validate_event",
    "MAX_ACCOUNTANT_MEMORY",
    "NeighboringRelation",
    "RdpAccountant",
    "PrvAccountant",
    "make_accountant",
    "compute_epsilon",
    "compute_delta",
    "supports",
    "check_supported",
    "rdp_curve",
    "rdp_to_epsilon",
    "ddg_rdp",
    "skellam_rdp",
    "poisson_subsampled_rdp",
    "event_to_dict",
    "event_from_dict",
    "event_key",
    "gaussian_dp_delta",
    "gaussian_dp_epsilon",
    "ddg_gaussian_closeness",
    "distributed_pld_epsilon",
    "distributed_epsilon",
    "contains_distributed_discrete_gaussian",
    "DEFAULT_PLD_DISCRETIZATION",
]

FloatArray = npt.NDArray[np.float64]
DEFAULT_PLD_DISCRETIZATION = 1e-3
_CompositionErrorDetails = dp_accounting.PrivacyAccountant.CompositionErrorDetails

#: Memory any one accountant call may use, in bytes (estimated before any work is done).
MAX_ACCOUNTANT_MEMORY = 320 * 2**20
#: Points a single privacy loss distribution may be *built* with: dp-accounting's
#: construction costs about 170 bytes and 15 microseconds per point, so this caps one
#: build at about 70 MB and a few seconds.
MAX_PLD_BUILD_POINTS = 400_000
_PLD_BUILD_BYTES_PER_POINT = 170
#: A composed PMF is convolved by FFT: about 64 bytes per point at the peak.
_PLD_COMPOSE_BYTES_PER_POINT = 64
#: Opacus' PRV discretises every distinct step on one mesh: about 100 bytes per point
#: while discretising, plus 8 per point for each distinct step kept for the convolution.
_PRV_BYTES_PER_POINT = 100
#: Opacus' RDP series for fractional orders (which its PRV domain sizing uses) converges
#: ever more slowly as the noise grows: seconds at z = 100, minutes at z = 1e6.
MAX_PRV_NOISE_MULTIPLIER = 100.0
#: Opacus sizes and discretises every distinct step separately (a fraction of a second each).
MAX_PRV_DISTINCT_STEPS = 20
#: RDP orders: dp-accounting's subsampled-Gaussian RDP costs O(alpha) Python steps per order.
MAX_RDP_ORDERS = 512
MAX_RDP_ORDER = 4096
#: Nodes of an event tree an accountant walks (a ledger compresses its rounds far below).
MAX_EVENT_NODES = 100_000
_TAIL_MASS_TRUNCATION = 1e-15  # dp-accounting's default for PLD composition


class AccountantLimitError(InvalidParameterError):
    """An accountant refused work it cannot do within its memory and time bounds.

    Raised *before* the work starts; the message says what would be needed and what to
    change (another accountant, more noise, a coarser discretization, fewer orders).
    """


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl.setLevel(level)


def _megabytes(nbytes: float) -> str:
    if nbytes >= 2**30:
        return f"~{nbytes / 2**30:.3g} GB"
    return f"~{nbytes / 2**20:.3g} MB"


class AccountantKind(str, Enum):
    """Which accountant converts a composition of events into (epsilon, delta)."""

    PLD = "pld"
    RDP = "rdp"
    PRV = "prv"

    @classmethod
    def parse(cls, value: AccountantKind | str) -> AccountantKind:
        """The accountant named by ``value`` (a member or its name, e.g. ``"pld"``).

        Raises:
            InvalidParameterError: ``value`` names no accountant; the message lists the
                allowed names.
        """
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(k.value) for k in cls)
            raise InvalidParameterError(f"unknown accountant {value!r}; choose one of {allowed}") from None


# --------------------------------------------------------------------------------------
# RDP curves of the distributed mechanisms and of Poisson subsampling
# --------------------------------------------------------------------------------------


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InvalidParameterError(f"{name} must be a positive finite number, got {value!r}")


def _check_orders(orders: Sequence[float] | FloatArray) -> FloatArray:
    arr = np.asarray(orders, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 1):
        raise InvalidParameterError("RDP orders must be a non-empty list of finite numbers > 1")
    return arr


def _check_user_orders(orders: Sequence[float] | FloatArray) -> FloatArray:
    arr = _check_orders(orders)
    if arr.size > MAX_RDP_ORDERS or float(arr.max()) > MAX_RDP_ORDER:
        raise AccountantLimitError(
            f"{arr.size} RDP orders up to {float(arr.max()):g} are more than the RDP accountant "
            f"evaluates (at most {MAX_RDP_ORDERS} orders, each <= {MAX_RDP_ORDER}: the cost of "
            "the subsampled bounds grows with the order); use dp-accounting's default orders"
        )
    return arr


def _validate_distributed(
    event: DistributedDiscreteGaussianDpEvent | DistributedSkellamDpEvent,
) -> None:
    _check_positive("l2_sensitivity", event.l2_sensitivity)
    _check_positive("l1_sensitivity", event.l1_sensitivity)
    if not isinstance(event.num_clients, (int, np.integer)) or event.num_clients < 1:
        raise InvalidParameterError(
            f"num_clients must be an integer >= 1, got {event.num_clients!r}"
        )
    if not isinstance(event.dimension, (int, np.integer)) or event.dimension < 1:
        raise InvalidParameterError(f"dimension must be an integer >= 1, got {event.dimension!r}")


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
    _validate_distributed(event)
    _check_positive("local_sigma", event.local_sigma)
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
    _validate_distributed(event)
    _check_positive("local_mu", event.local_mu)
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
    if not (isinstance(sampling_rate, (int, float)) and 0.0 <= sampling_rate <= 1.0):
        raise InvalidParameterError(f"sampling rate must lie in [0, 1], got {sampling_rate!r}")
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


# --------------------------------------------------------------------------------------
# Event validation (every accountant, before any work)
# --------------------------------------------------------------------------------------


def _finite_nonnegative(what: str, value: object, event: dp_accounting.DpEvent) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidParameterError(f"{what} of {type(event).__name__} must be a number, got {value!r}")
    if not math.isfinite(float(value)) or float(value) < 0.0:
        hint = (
            "; an event that releases nothing is NoOpDpEvent()"
            if isinstance(value, float) and value == math.inf
            else ""
        )
        raise InvalidParameterError(
            f"{what} of {type(event).__name__} must be a finite number >= 0, got {value!r}{hint}"
        )


def validate_event(event: dp_accounting.DpEvent) -> None:
    """Check the parameters of every event in a tree before an accountant touches it.

    Refuses what no accountant can give a meaningful answer for: non-finite or negative
    noise multipliers, sampling probabilities outside ``[0, 1]``, composition counts that
    are not integers ``>= 1`` (zero rounds release nothing: leave the event out), and trees
    of more than :data:`MAX_EVENT_NODES` nodes.

    Raises:
        InvalidParameterError: the message names the event and the bad parameter.
    """
    stack = [event]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_EVENT_NODES:
            raise AccountantLimitError(
                f"the event has more than {MAX_EVENT_NODES} nodes; compose repeated events "
                "with SelfComposedDpEvent(event, count) instead of listing them"
            )
        if not isinstance(node, dp_accounting.DpEvent):
            raise InvalidParameterError(f"expected a dp_accounting.DpEvent, got {type(node).__name__}")
        if isinstance(node, dp_accounting.SelfComposedDpEvent):
            count = node.count
            if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
                hint = " (zero rounds release nothing: leave the event out)" if count == 0 else ""
                raise InvalidParameterError(
                    f"SelfComposedDpEvent count must be an integer >= 1, got {count!r}{hint}"
                )
            stack.append(node.event)
        elif isinstance(node, dp_accounting.ComposedDpEvent):
            if not isinstance(node.events, Sequence):
                raise InvalidParameterError("ComposedDpEvent.events must be a list of events")
            if len(node.events) > MAX_EVENT_NODES:
                raise AccountantLimitError(
                    f"ComposedDpEvent lists {len(node.events)} events, more than "
                    f"{MAX_EVENT_NODES}; compose repeated events with SelfComposedDpEvent"
                )
            stack.extend(node.events)
        elif isinstance(node, dp_accounting.PoissonSampledDpEvent):
            q = node.sampling_probability
            _finite_nonnegative("sampling_probability", q, node)
            if float(q) > 1.0:
                raise InvalidParameterError(
                    f"sampling_probability of PoissonSampledDpEvent must lie in [0, 1], got {q!r}"
                )
            stack.append(node.event)
        elif isinstance(node, dp_accounting.SampledWithoutReplacementDpEvent):
            stack.append(node.event)
        elif isinstance(node, dp_accounting.GaussianDpEvent):
            _finite_nonnegative("noise_multiplier", node.noise_multiplier, node)
        elif isinstance(node, dp_accounting.LaplaceDpEvent):
            _finite_nonnegative("noise_multiplier", node.noise_multiplier, node)


class _ValidatingAccountant(dp_accounting.PrivacyAccountant):  # type: ignore[misc]
    """Validates every event (:func:`validate_event`) before composing it."""

    def compose(self, event: dp_accounting.DpEvent, count: int = 1) -> Any:
        validate_event(event)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise InvalidParameterError(f"count must be an integer >= 1, got {count!r}")
        return super().compose(event, int(count))


# --------------------------------------------------------------------------------------
# Accountants
# --------------------------------------------------------------------------------------


def _is_gaussian_only(event: dp_accounting.DpEvent) -> bool:
    if isinstance(event, dp_accounting.GaussianDpEvent):
        return True
    if isinstance(event, dp_accounting.SelfComposedDpEvent):
        return _is_gaussian_only(event.event)
    if isinstance(event, dp_accounting.ComposedDpEvent):
        return all(_is_gaussian_only(e) for e in event.events)
    return False


class RdpAccountant(_ValidatingAccountant, rdp_privacy_accountant.RdpAccountant):  # type: ignore[misc]
    """dp-accounting's RDP accountant, extended with the distributed mechanisms.

    Adds :class:`~dp.events.DistributedDiscreteGaussianDpEvent` and
    :class:`~dp.events.DistributedSkellamDpEvent` (see :func:`ddg_rdp`,
    :func:`skellam_rdp`) and ``PoissonSampledDpEvent`` around any supported event that
    is not purely Gaussian (see :func:`poisson_subsampled_rdp`). Everything else is
    handled by dp-accounting unchanged.
    """

    _rdp: FloatArray
    _orders: FloatArray

    def _maybe_compose(self, event: dp_accounting.DpEvent, count: int, do_compose: bool) -> Any:
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
                return _CompositionErrorDetails(
                    invalid_event=event,
                    error_message="Poisson subsampling is accounted for add/remove neighbours only; "
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


# --------------------------------------------------------------------------------------
# PLD accountant with memory and time bounds
# --------------------------------------------------------------------------------------


def _pmf_span(pmf: Any) -> int:
    """Number of grid points a PMF occupies once dense."""
    probs = getattr(pmf, "_probs", None)
    if probs is not None:
        return int(len(probs))
    losses = getattr(pmf, "_loss_probs", None) or {0: 1.0}
    return int(max(losses) - min(losses) + 1)


def _loss_span(loss: Any, interval: float) -> float:
    """Grid points of the PMF dp-accounting builds for a monotone privacy loss."""
    bounds = loss.connect_dots_bounds()
    if bounds.epsilon_upper is not None and bounds.epsilon_lower is not None:
        return float(bounds.epsilon_upper - bounds.epsilon_lower) / interval + 2.0
    return float(bounds.upper_x - bounds.lower_x + 1)


class PldAccountant(_ValidatingAccountant, pld_privacy_accountant.PLDAccountant):  # type: ignore[misc]
    """dp-accounting's PLD accountant that sizes every distribution before building it.

    The distributions, the composition and the answers are dp-accounting's own (the
    same calls with the same arguments); what this class adds is a refusal, with
    :class:`AccountantLimitError`, of any step that would exceed
    :data:`MAX_ACCOUNTANT_MEMORY`:

    * building: a Gaussian (Laplace) PLD spans ``(eps_upper - eps_lower) / interval``
      points, where ``eps_upper``/``eps_lower`` are the privacy losses at dp-accounting's
      truncation points (tail mass ``e^-50``; for the Gaussian ``x = +-sigma
      Phi^-1(1 - e^-50 / 2)`` shifted by the sensitivity, then mapped through the
      subsampled loss ``log(1 - q + q e^l)``). These come from the same
      ``connect_dots_bounds`` dp-accounting then builds from, so the count is exact.
      Small noise multipliers make the span ~ ``1 / (sigma^2 interval)``: ``z = 1e-3`` at
      ``interval = 1e-4`` would need ~``10^10`` points.
    * self-composition ``T`` times: the output length is computed beforehand with the
      same Chernoff bound dp-accounting truncates with
      (``common.compute_self_convolve_bounds``), and composing two PMFs needs the sum of
      their lengths.

    Events it cannot size beforehand (mixtures of Gaussians, truncated subsampled
    Gaussians) are refused as unsupported.
    """

    _pld: Any
    _value_discretization_interval: float

    def _refuse(self, what: str, points: float, per_point: int) -> None:
        need = points * per_point
        if need > MAX_ACCOUNTANT_MEMORY or not math.isfinite(need):
            raise AccountantLimitError(
                f"{what} is too much for the PLD accountant at discretization "
                f"{self._value_discretization_interval:g}: the privacy loss distribution would "
                f"need {points:.3g} points ({_megabytes(need)}, limit "
                f"{_megabytes(MAX_ACCOUNTANT_MEMORY)}); use the rdp accountant "
                "(--accountant rdp), a larger noise multiplier or a coarser discretization"
            )

    def _check_build(self, what: str, losses: Sequence[Any]) -> None:
        interval = float(self._value_discretization_interval)
        try:
            points = sum(_loss_span(loss, interval) for loss in losses)
        except (ValueError, OverflowError, ZeroDivisionError, FloatingPointError) as exc:
            raise AccountantLimitError(
                f"{what}: cannot size its privacy loss distribution ({exc}); use the rdp accountant"
            ) from exc
        self._refuse(what, points, _PLD_BUILD_BYTES_PER_POINT)
        if points > MAX_PLD_BUILD_POINTS:
            raise AccountantLimitError(
                f"{what} is too much for the PLD accountant at discretization {interval:g}: "
                f"building its privacy loss distribution takes {points:.3g} points (limit "
                f"{MAX_PLD_BUILD_POINTS}, a few seconds); use the rdp accountant "
                "(--accountant rdp), a larger noise multiplier or a coarser discretization"
            )

    def _losses(
        self, mechanism: dp_accounting.DpEvent, sampling_prob: float
    ) -> list[Any]:
        from dp_accounting.pld import privacy_loss_mechanism as plm

        adjacencies = (
            [plm.AdjacencyType.REPLACE]
            if self.neighboring_relation is NeighboringRelation.REPLACE_ONE
            else [plm.AdjacencyType.REMOVE, plm.AdjacencyType.ADD]
        )
        out = []
        for adjacency in adjacencies:
            if isinstance(mechanism, dp_accounting.GaussianDpEvent):
                out.append(
                    plm.GaussianPrivacyLoss(
                        float(mechanism.noise_multiplier),
                        sampling_prob=sampling_prob,
                        adjacency_type=adjacency,
                    )
                )
            elif isinstance(mechanism, dp_accounting.LaplaceDpEvent):
                out.append(
                    plm.LaplacePrivacyLoss(
                        float(mechanism.noise_multiplier),
                        sampling_prob=sampling_prob,
                        adjacency_type=adjacency,
                    )
                )
        return out

    def _compose_checked(self, pld: Any, count: int | None, what: str) -> None:
        """``self._pld <- self._pld o pld.self_compose(count)`` (no self-composition for
        ``None``, as dp-accounting does for the Gaussian), refusing outsized steps beforehand."""
        from dp_accounting.pld import common
        from dp_accounting.pld import privacy_loss_distribution as pld_lib

        pmfs = [pld._pmf_remove] if pld._symmetric else [pld._pmf_remove, pld._pmf_add]
        if count is not None:
            dense = []
            for pmf in pmfs:
                span = _pmf_span(pmf)
                # dp-accounting composes small sparse PMFs pairwise while size**count
                # stays under 1000; anything larger goes to the dense FFT path below.
                if count > 1 and count * math.log(max(getattr(pmf, "size", span), 2)) > math.log(1000):
                    pmf = pmf.to_dense_pmf() if hasattr(pmf, "to_dense_pmf") else pmf
                if hasattr(pmf, "_probs"):
                    lower, upper = common.compute_self_convolve_bounds(
                        pmf._probs, count, _TAIL_MASS_TRUNCATION
                    )
                    self._refuse(
                        f"{what} composed {count} times",
                        float(upper - lower + 1),
                        _PLD_COMPOSE_BYTES_PER_POINT,
                    )
                dense.append(pmf)
            if len(dense) == 1:
                pld = pld_lib.PrivacyLossDistribution(dense[0])
            else:
                pld = pld_lib.PrivacyLossDistribution(dense[0], dense[1])
            pld = pld.self_compose(count)
        current: Any = self._pld
        total = max(
            _pmf_span(current._pmf_remove) + _pmf_span(pld._pmf_remove),
            _pmf_span(current._pmf_add) + _pmf_span(pld._pmf_add),
        )
        self._refuse(f"composing {what}", float(total), _PLD_COMPOSE_BYTES_PER_POINT)
        self._pld = self._pld.compose(pld)

    def _maybe_compose(self, event: dp_accounting.DpEvent, count: int, do_compose: bool) -> Any:
        from dp_accounting.pld import privacy_loss_distribution as pld_lib

        if isinstance(
            event,
            (dp_event.MixtureOfGaussiansDpEvent, dp_event.TruncatedSubsampledGaussianDpEvent),
        ):
            return _CompositionErrorDetails(
                invalid_event=event,
                error_message="this library's PLD accountant cannot size it before building; "
                "use the rdp accountant",
            )
        if isinstance(event, dp_accounting.GaussianDpEvent) and event.noise_multiplier > 0:
            if do_compose:
                # dp-accounting composes count Gaussians as one with sigma / sqrt(count).
                sigma = float(event.noise_multiplier) / math.sqrt(count)
                what = f"noise multiplier {float(event.noise_multiplier):g}" + (
                    f" over {count} rounds" if count > 1 else ""
                )
                self._check_build(what, self._losses(dp_accounting.GaussianDpEvent(sigma), 1.0))
                pld = pld_lib.from_gaussian_mechanism(
                    standard_deviation=sigma,
                    value_discretization_interval=self._value_discretization_interval,
                    neighboring_relation=self.neighboring_relation,
                )
                self._compose_checked(pld, None, what)
            return None
        sampled = isinstance(event, dp_accounting.PoissonSampledDpEvent)
        inner = event.event if sampled else event
        q = float(event.sampling_probability) if sampled else 1.0
        if (
            isinstance(inner, (dp_accounting.GaussianDpEvent, dp_accounting.LaplaceDpEvent))
            and inner.noise_multiplier > 0
            and q > 0
            and (sampled or isinstance(inner, dp_accounting.LaplaceDpEvent))
        ):
            if isinstance(inner, dp_accounting.LaplaceDpEvent) and self.neighboring_relation not in (
                NeighboringRelation.ADD_OR_REMOVE_ONE,
                NeighboringRelation.REPLACE_SPECIAL,
            ):
                return super()._maybe_compose(event, count, do_compose)  # refused there
            if do_compose:
                name = "noise multiplier" if isinstance(inner, dp_accounting.GaussianDpEvent) else "Laplace parameter"
                what = f"{name} {float(inner.noise_multiplier):g}" + (f" at q = {q:g}" if sampled else "")
                self._check_build(what, self._losses(inner, q))
                if isinstance(inner, dp_accounting.GaussianDpEvent):
                    pld = pld_lib.from_gaussian_mechanism(
                        standard_deviation=float(inner.noise_multiplier),
                        value_discretization_interval=self._value_discretization_interval,
                        sampling_prob=q,
                        neighboring_relation=self.neighboring_relation,
                    )
                else:
                    pld = pld_lib.from_laplace_mechanism(
                        parameter=float(inner.noise_multiplier),
                        value_discretization_interval=self._value_discretization_interval,
                        sampling_prob=q,
                    )
                self._compose_checked(pld, count, what)
            return None
        if isinstance(event, dp_event.DiscreteLaplaceDpEvent) and do_compose:
            span = 2.0 * float(event.noise_parameter) * float(event.sensitivity)
            self._refuse(
                "the discrete Laplace mechanism",
                max(span / float(self._value_discretization_interval), float(event.sensitivity)),
                _PLD_BUILD_BYTES_PER_POINT,
            )
        return super()._maybe_compose(event, count, do_compose)


class PrvAccountant(_ValidatingAccountant):
    """Opacus' PRV accountant (Gopi, Lee, Wutschitz 2021) in dp-accounting's interface.

    Supports ``GaussianDpEvent`` and ``PoissonSampledDpEvent(q, GaussianDpEvent)`` (plus
    ``NoOp``, ``NonPrivate``, ``Composed`` and ``SelfComposed`` structure) for add/remove
    neighbours, which is what Opacus' PRV implements. ``get_epsilon`` returns Opacus' upper
    estimate (``eps_error`` added); ``get_delta`` returns
    ``delta_hat(eps - eps_error) + delta_error``, the matching upper bound.
    """

    def __init__(
        self,
        neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
        *,
        eps_error: float = 0.01,
    ) -> None:
        super().__init__(neighboring_relation)
        self._history: list[tuple[float, float, int]] = []
        self._non_private = False
        self._eps_error = eps_error

    def _record(self, noise_multiplier: float, sampling_rate: float, count: int) -> None:
        if sampling_rate == 0.0 or count == 0:
            return
        if noise_multiplier == 0.0:
            self._non_private = True
            return
        for i, (nm, q, steps) in enumerate(self._history):
            if nm == noise_multiplier and q == sampling_rate:
                self._history[i] = (nm, q, steps + count)
                return
        self._history.append((float(noise_multiplier), float(sampling_rate), int(count)))

    def _maybe_compose(self, event: dp_accounting.DpEvent, count: int, do_compose: bool) -> Any:
        if self.neighboring_relation is not NeighboringRelation.ADD_OR_REMOVE_ONE:
            return _CompositionErrorDetails(
                invalid_event=event,
                error_message="Opacus' PRV accountant supports add/remove neighbours only",
            )
        if isinstance(event, dp_accounting.NoOpDpEvent):
            return None
        if isinstance(event, dp_accounting.NonPrivateDpEvent):
            if do_compose:
                self._non_private = True
            return None
        if isinstance(event, dp_accounting.SelfComposedDpEvent):
            return self._maybe_compose(event.event, event.count * count, do_compose)
        if isinstance(event, dp_accounting.ComposedDpEvent):
            for sub in event.events:
                error = self._maybe_compose(sub, count, do_compose)
                if error is not None:
                    return error
            return None
        gaussian = event.event if isinstance(event, dp_accounting.PoissonSampledDpEvent) else event
        if (
            isinstance(gaussian, dp_accounting.GaussianDpEvent)
            and gaussian.noise_multiplier > MAX_PRV_NOISE_MULTIPLIER
        ):
            return _CompositionErrorDetails(
                invalid_event=event,
                error_message=f"noise multipliers above {MAX_PRV_NOISE_MULTIPLIER:g} make Opacus' "
                "domain sizing run for minutes; use the pld accountant",
            )
        if isinstance(event, dp_accounting.GaussianDpEvent):
            if do_compose:
                self._record(float(event.noise_multiplier), 1.0, count)
            return None
        if isinstance(event, dp_accounting.PoissonSampledDpEvent) and isinstance(
            event.event, dp_accounting.GaussianDpEvent
        ):
            if do_compose:
                self._record(
                    float(event.event.noise_multiplier), float(event.sampling_probability), count
                )
            return None
        return _CompositionErrorDetails(
            invalid_event=event,
            error_message="Opacus' PRV accountant handles only the (Poisson-subsampled) Gaussian",
        )

    def _opacus(self) -> Any:
        try:
            from opacus.accountants import PRVAccountant
        except ImportError as exc:  # Opacus comes with the torch extra
            raise_missing_extra(exc, "torch", "the PRV accountant")

        acc = PRVAccountant()
        acc.history = list(self._history)
        return acc

    def _check_size(self, delta_error: float) -> None:
        """Refuse a PRV mesh above :data:`MAX_ACCOUNTANT_MEMORY`, sized as Opacus sizes it.

        Opacus discretises on ``[-L, L]`` with mesh ``eps_error / sqrt(T log(12 /
        delta_error) / 2)`` (``T`` the total number of steps) and ``L = 3 + max(eps_RDP of
        the composition at delta_error / 4, eps_RDP of one step at delta_error / (8 T))``
        (Gopi et al., Remark 5.6, as Opacus implements it); ``L`` is estimated here with
        dp-accounting's RDP accountant, which is fast at any noise multiplier, so the mesh
        has about ``2 L / mesh`` points.
        """
        steps = [s for _, _, s in self._history]
        total = float(sum(steps))
        mesh = self._eps_error / math.sqrt(total * math.log(12.0 / delta_error) / 2.0)
        per_point = _PRV_BYTES_PER_POINT + 8 * len(self._history)
        smallest = min(nm for nm, _, _ in self._history)

        def refuse(points: float) -> None:
            need = points * per_point
            if not math.isfinite(need) or need > MAX_ACCOUNTANT_MEMORY:
                raise AccountantLimitError(
                    f"the PRV accountant would discretise {points:.3g} points ({_megabytes(need)}, "
                    f"limit {_megabytes(MAX_ACCOUNTANT_MEMORY)}) for {int(total)} steps with noise "
                    f"multipliers down to {smallest:g}; use the pld accountant (--accountant pld), "
                    "the rdp accountant, or a larger noise multiplier"
                )

        refuse(2.0 * 3.0 / mesh)  # the half-width is at least 3: refuse early, cheaply
        if len(self._history) > MAX_PRV_DISTINCT_STEPS:
            raise AccountantLimitError(
                f"the PRV accountant discretises each distinct (noise multiplier, sampling rate) "
                f"pair separately; {len(self._history)} pairs are more than "
                f"{MAX_PRV_DISTINCT_STEPS} (seconds each); use the pld accountant"
            )

        def step(nm: float, q: float) -> dp_accounting.DpEvent:
            gaussian = dp_accounting.GaussianDpEvent(nm)
            return gaussian if q == 1.0 else dp_accounting.PoissonSampledDpEvent(q, gaussian)

        # dp-accounting logs a warning per order for the -1e-313 RDP of a tiny q
        with _quiet_absl(), np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            whole = rdp_privacy_accountant.RdpAccountant()
            for nm, q, count in self._history:
                whole.compose(step(nm, q), count)
            half_width = float(whole.get_epsilon(delta_error / 4.0))
            for nm, q, _ in self._history:
                one = rdp_privacy_accountant.RdpAccountant()
                one.compose(step(nm, q))
                half_width = max(half_width, float(one.get_epsilon(delta_error / (8.0 * total))))
        refuse(2.0 * (max(half_width, self._eps_error) + 3.0) / mesh + 2.0)

    def get_epsilon(self, target_delta: float) -> float:
        if not (isinstance(target_delta, (int, float)) and 0.0 < target_delta < 1.0):
            raise InvalidParameterError(f"delta must lie in (0, 1), got {target_delta!r}")
        if self._non_private:
            return math.inf
        if not self._history:
            return 0.0
        self._check_size(target_delta / 1000)  # Opacus' default delta_error
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(self._opacus().get_epsilon(target_delta, eps_error=self._eps_error))

    def get_delta(self, target_epsilon: float) -> float:
        if self._non_private:
            return 1.0
        if not self._history:
            return 0.0
        if not (isinstance(target_epsilon, (int, float)) and math.isfinite(target_epsilon)):
            raise InvalidParameterError(f"epsilon must be finite, got {target_epsilon!r}")
        delta_error = 1e-12
        self._check_size(delta_error)
        with (
            np.errstate(divide="ignore", invalid="ignore", over="ignore"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", RuntimeWarning)
            dprv = self._opacus()._get_dprv(eps_error=self._eps_error, delta_error=delta_error)
            estimate = float(
                dprv.compute_delta_estimate(max(0.0, target_epsilon - self._eps_error))
            )
        return min(1.0, max(0.0, estimate) + delta_error)


def make_accountant(
    kind: AccountantKind | str = AccountantKind.PLD,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
    rdp_orders: Sequence[float] | None = None,
) -> dp_accounting.PrivacyAccountant:
    """A fresh accountant of the given kind.

    Args:
        kind: ``pld``, ``rdp`` or ``prv``.
        neighboring_relation: the neighbouring relation of the DP guarantee (add/remove
            one record -- one user, for user-level DP -- by default).
        pld_discretization: value discretization interval of the PLD. dp-accounting
            discretizes pessimistically, so every interval gives an upper bound; smaller
            is tighter and slower (the default ``1e-3`` is within about ``1e-4`` of
            ``1e-4`` in epsilon and several times faster).
        rdp_orders: RDP orders (default: dp-accounting's).

    Returns:
        A ``dp_accounting.PrivacyAccountant``.
    """
    kind = AccountantKind.parse(kind)
    if kind is AccountantKind.PLD:
        _check_positive("pld_discretization", pld_discretization)
        return PldAccountant(
            neighboring_relation=neighboring_relation,
            value_discretization_interval=pld_discretization,
        )
    if kind is AccountantKind.RDP:
        orders = None if rdp_orders is None else _check_user_orders(rdp_orders)
        return RdpAccountant(orders=orders, neighboring_relation=neighboring_relation)
    return PrvAccountant(neighboring_relation)


def _unsupported(
    accountant: dp_accounting.PrivacyAccountant, kind: AccountantKind, event: dp_accounting.DpEvent
) -> UnsupportedEventError | None:
    validate_event(event)
    try:
        details = accountant._maybe_compose(event, 1, False)
    except SecAggError:
        raise
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidParameterError(f"malformed event {event!r}: {exc}") from exc
    if details is None:
        return None
    bad = details.invalid_event
    name = type(bad).__name__ if bad is not None else type(event).__name__
    return UnsupportedEventError(
        f"the {kind.value} accountant cannot handle {name} ({bad!r}): {details.error_message}"
    )


def supports(
    event: dp_accounting.DpEvent,
    kind: AccountantKind | str = AccountantKind.PLD,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
) -> bool:
    """Whether the accountant of ``kind`` can handle ``event``."""
    kind = AccountantKind.parse(kind)
    acc = make_accountant(kind, neighboring_relation=neighboring_relation)
    return _unsupported(acc, kind, event) is None


def check_supported(
    event: dp_accounting.DpEvent,
    kind: AccountantKind | str = AccountantKind.PLD,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
) -> None:
    """Raise :class:`~secagg.errors.UnsupportedEventError` (naming the event) unless supported.

    Only the structure and the parameters are checked; nothing is computed.
    """
    if not isinstance(event, dp_accounting.DpEvent):
        raise InvalidParameterError(f"expected a dp_accounting.DpEvent, got {type(event).__name__}")
    kind = AccountantKind.parse(kind)
    error = _unsupported(
        make_accountant(kind, neighboring_relation=neighboring_relation), kind, event
    )
    if error is not None:
        raise error


def _composed(
    event: dp_accounting.DpEvent,
    kind: AccountantKind | str,
    neighboring_relation: NeighboringRelation,
    pld_discretization: float,
    rdp_orders: Sequence[float] | None,
) -> dp_accounting.PrivacyAccountant:
    if not isinstance(event, dp_accounting.DpEvent):
        raise InvalidParameterError(f"expected a dp_accounting.DpEvent, got {type(event).__name__}")
    kind = AccountantKind.parse(kind)
    acc = make_accountant(
        kind,
        neighboring_relation=neighboring_relation,
        pld_discretization=pld_discretization,
        rdp_orders=rdp_orders,
    )
    error = _unsupported(acc, kind, event)
    if error is not None:
        raise error
    try:
        acc.compose(event)
    except SecAggError:
        raise
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
        raise InvalidParameterError(f"cannot account for {event!r}: {exc}") from exc
    return acc


def compute_epsilon(
    event: dp_accounting.DpEvent,
    delta: float,
    *,
    accountant: AccountantKind | str = AccountantKind.PLD,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
    rdp_orders: Sequence[float] | None = None,
) -> float:
    """Smallest epsilon such that ``event`` is (epsilon, delta)-DP, per the accountant.

    Args:
        event: the composed mechanism (any structure of ``Composed``/``SelfComposed``/
            ``PoissonSampled`` events).
        delta: target delta in ``(0, 1)``.
        accountant: ``pld``, ``rdp`` or ``prv``.
        neighboring_relation: neighbouring relation of the guarantee.
        pld_discretization: PLD value discretization interval.
        rdp_orders: RDP orders for the ``rdp`` accountant.

    Returns:
        epsilon (``inf`` for a non-private event).

    Raises:
        UnsupportedEventError: the accountant cannot handle (a part of) the event; the
            message names the offending event.
        InvalidParameterError: ``delta`` or an event parameter is out of range.
    """
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise InvalidParameterError(f"delta must lie in (0, 1), got {delta!r}")
    acc = _composed(event, accountant, neighboring_relation, pld_discretization, rdp_orders)
    try:
        eps = float(acc.get_epsilon(float(delta)))
    except SecAggError:
        raise
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        raise InvalidParameterError(f"cannot compute epsilon for delta={delta}: {exc}") from exc
    return max(0.0, eps)


def compute_delta(
    event: dp_accounting.DpEvent,
    epsilon: float,
    *,
    accountant: AccountantKind | str = AccountantKind.PLD,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
    rdp_orders: Sequence[float] | None = None,
) -> float:
    """Smallest delta such that ``event`` is (epsilon, delta)-DP, per the accountant.

    Same arguments and errors as :func:`compute_epsilon`, with ``epsilon >= 0``.
    """
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon >= 0.0):
        raise InvalidParameterError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    acc = _composed(event, accountant, neighboring_relation, pld_discretization, rdp_orders)
    try:
        value = float(acc.get_delta(float(epsilon)))
    except SecAggError:
        raise
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        raise InvalidParameterError(f"cannot compute delta for epsilon={epsilon}: {exc}") from exc
    return min(1.0, max(0.0, value))


def rdp_curve(
    event: dp_accounting.DpEvent,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    rdp_orders: Sequence[float] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """``(orders, rdp)`` of ``event`` under the ``rdp`` accountant.

    RDP composes by addition, so curves of many rounds can be built by summing these
    vectors and converted with :func:`rdp_to_epsilon`.
    """
    acc = _composed(
        event, AccountantKind.RDP, neighboring_relation, DEFAULT_PLD_DISCRETIZATION, rdp_orders
    )
    return np.asarray(acc.orders, dtype=np.float64), np.asarray(acc.rdp, dtype=np.float64)


def rdp_to_epsilon(orders: FloatArray, rdp: FloatArray, delta: float) -> float:
    """epsilon at ``delta`` from an RDP curve (dp-accounting's conversion)."""
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise InvalidParameterError(f"delta must lie in (0, 1), got {delta!r}")
    eps, _ = rdp_privacy_accountant.compute_epsilon(orders, rdp, float(delta))
    return max(0.0, float(eps))


def gaussian_dp_delta(mu: float, epsilon: float) -> float:
    """Exact delta(epsilon) of mu-GDP (Dong, Roth, Su 2019, Corollary 2.13).

    ``delta = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)``. The Gaussian mechanism
    with noise multiplier ``sigma`` composed ``T`` times is exactly ``sqrt(T)/sigma``-GDP.
    """
    _check_positive("mu", mu)
    from scipy.stats import norm

    log_second = epsilon + float(norm.logcdf(-epsilon / mu - mu / 2.0))
    return float(norm.cdf(-epsilon / mu + mu / 2.0) - math.exp(log_second))


def gaussian_dp_epsilon(mu: float, delta: float) -> float:
    """Exact epsilon(delta) of mu-GDP: the root of :func:`gaussian_dp_delta` (bisection)."""
    _check_positive("mu", mu)
    if not 0.0 < delta < 1.0:
        raise InvalidParameterError(f"delta must lie in (0, 1), got {delta!r}")
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


# --------------------------------------------------------------------------------------
# Distributed discrete Gaussian through the Gaussian PLD (closeness transfer)
# --------------------------------------------------------------------------------------


def _logaddexp(*terms: float) -> float:
    return float(special.logsumexp(np.asarray(terms, dtype=np.float64)))


def ddg_gaussian_closeness(
    event: DistributedDiscreteGaussianDpEvent, log_tail: float
) -> tuple[float, float] | None:
    """``(Lambda, log Beta)``: how close one DDG release is to a rounded Gaussian release.

    Theorem (proved below; it uses only Poisson summation). Let ``X_1..X_n`` be
    independent ``N_Z(0, sigma^2)`` with ``sigma >= 1``, ``Z = sum X_i``, ``s^2 = n
    sigma^2``, and ``R = round(G)`` with ``G ~ N(0, s^2)``. For ``B > 1/2`` let

    * ``eta = e^{t1} + e^{t2} + e^{t3}`` with ``t1 = log(max(3n e^{-sigma^2 pi^2 / 2},
      expm1(3n e^{-sigma^2 pi^2}))) - log(sqrt(2 pi) s)``, ``t2 = n log 2 - s^2 pi^2 / 8``,
      ``t3 = -s^2 pi^2 / 2 - log(pi^2 s^2)``;
    * ``lambda = (B + 1/4) / (2 s^2) - log(1 - eta / phi_s(B))`` (``phi_s`` the
      ``N(0, s^2)`` density), defined when ``eta < phi_s(B)``;
    * ``beta = 2 exp(-(B - 1/2)^2 / (2 s^2))``.

    Then ``e^-lambda <= P[Z = x] / P[R = x] <= e^lambda`` for every integer ``|x| <= B``,
    and ``P[|Z| > B], P[|R| > B] <= beta``. Hence for ``d`` independent coordinates and
    any integer shift ``v``, the released ``v + Z^d`` and ``v + R^d`` satisfy, for every
    set ``S``, ``P(S) <= e^{d lambda} Q(S) + d beta`` and vice versa.

    Proof. Poisson summation gives ``E[e^{itX}] = theta(t) / theta(0)`` with ``theta(t) =
    sum_k exp(-sigma^2 (t + 2 pi k)^2 / 2)``. For ``|t| <= pi/2`` every ``k != 0`` term is
    at most ``exp(-sigma^2 pi^2 (2|k| - 1/2)^2 / 2)``, so ``theta(t) = e^{-sigma^2 t^2 / 2}
    (1 + r(t))`` with ``0 <= r <= 3 e^{-sigma^2 pi^2}``, and ``1 <= theta(0) <= 1 + 3
    e^{-sigma^2 pi^2 / 2}`` (``sigma >= 1``); for ``pi/2 <= |t| <= pi``, ``|E e^{itX}| <= 2
    e^{-sigma^2 pi^2 / 8}``. Inverting, ``P[Z = x] = (1/2pi) int_{-pi}^{pi} E[e^{itX}]^n
    e^{-itx} dt`` differs from ``(1/2pi) int_{-pi}^{pi} e^{-s^2 t^2 / 2} e^{-itx} dt`` by at
    most ``e^{t1} + e^{t2}``, which differs from ``phi_s(x)`` by at most ``e^{t3}`` (the
    Gaussian mass of ``|t| > pi``). So ``|P[Z = x] - phi_s(x)| <= eta``. Next
    ``P[R = x] / phi_s(x) = int_{-1/2}^{1/2} exp(-(2xh + h^2) / (2 s^2)) dh`` lies in
    ``[e^{-(|x| + 1/4) / (2 s^2)}, e^{|x| / (2 s^2)}]``; with ``phi_s(x) >= phi_s(B)`` on
    ``|x| <= B`` the ratio bound follows. Tails: ``N_Z(0, sigma^2)`` is
    ``sigma^2``-sub-Gaussian (``E e^{uX} = e^{u^2 sigma^2 / 2} sum_x e^{-(x - u
    sigma^2)^2 / 2 sigma^2} / sum_x e^{-x^2 / 2 sigma^2} <= e^{u^2 sigma^2 / 2}`` by
    Poisson summation), so ``Z`` is ``s^2``-sub-Gaussian; ``|R| > B`` needs ``|G| > B -
    1/2``. Coordinates: on ``[-B, B]^d`` the density ratio is a product of ``d`` ratios,
    and the complement has mass ``<= d beta`` under either law. QED.

    ``B`` is chosen so that ``log beta = log_tail``.

    Returns:
        ``(d lambda, log(d beta))``, or ``None`` where the theorem gives nothing
        (``sigma < 1`` or ``eta >= phi_s(B) / 2``).
    """
    _validate_distributed(event)
    n, sigma, d = int(event.num_clients), float(event.local_sigma), int(event.dimension)
    if not sigma >= 1.0:
        return None
    s = math.sqrt(n) * sigma
    pi2 = math.pi**2
    big = 3.0 * n * math.exp(-(sigma**2) * pi2)
    if big > 1.0:
        return None
    log_small = math.log(3.0 * n) - sigma**2 * pi2 / 2.0
    log_expm1 = (math.log(3.0 * n) - sigma**2 * pi2 + big) if big > 0 else -math.inf
    t1 = max(log_small, log_expm1) - math.log(math.sqrt(2.0 * math.pi) * s)
    t2 = n * math.log(2.0) - s**2 * pi2 / 8.0
    t3 = -(s**2) * pi2 / 2.0 - math.log(pi2 * s**2)
    log_eta = _logaddexp(t1, t2, t3)
    half_width = 0.5 + s * math.sqrt(2.0 * (math.log(2.0) - log_tail))
    log_phi_b = -(half_width**2) / (2.0 * s**2) - math.log(math.sqrt(2.0 * math.pi) * s)
    ratio = math.exp(log_eta - log_phi_b) if log_eta - log_phi_b < 0 else 1.0
    if ratio >= 0.5:
        return None
    lam = (half_width + 0.25) / (2.0 * s**2) - math.log1p(-ratio)
    return d * lam, math.log(d) + log_tail


def _substitute_ddg(
    event: dp_accounting.DpEvent, multiplicity: int, found: list[tuple[Any, int]]
) -> dp_accounting.DpEvent:
    if isinstance(event, DistributedDiscreteGaussianDpEvent):
        _validate_distributed(event)
        found.append((event, multiplicity))
        z = math.sqrt(event.num_clients) * event.local_sigma / event.l2_sensitivity
        return dp_accounting.GaussianDpEvent(z)
    if isinstance(event, DistributedSkellamDpEvent):
        raise UnsupportedEventError(
            "the Gaussian-PLD transfer covers the distributed discrete Gaussian only; "
            f"{type(event).__name__} is accounted by RDP"
        )
    if isinstance(event, dp_accounting.SelfComposedDpEvent):
        return dp_accounting.SelfComposedDpEvent(
            _substitute_ddg(event.event, multiplicity * int(event.count), found), event.count
        )
    if isinstance(event, dp_accounting.ComposedDpEvent):
        return dp_accounting.ComposedDpEvent(
            [_substitute_ddg(e, multiplicity, found) for e in event.events]
        )
    if isinstance(event, dp_accounting.PoissonSampledDpEvent):
        # a round releases its noisy sum whether or not a given client was sampled
        return dp_accounting.PoissonSampledDpEvent(
            event.sampling_probability, _substitute_ddg(event.event, multiplicity, found)
        )
    return event


def distributed_pld_epsilon(
    event: dp_accounting.DpEvent,
    delta: float,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
) -> float:
    """epsilon at ``delta`` of an event with distributed discrete Gaussians, via the Gaussian PLD.

    Each :class:`~dp.events.DistributedDiscreteGaussianDpEvent` (``n`` honest clients,
    local ``sigma``, sensitivity ``Delta2``, ``d`` coordinates) is replaced by the
    Gaussian mechanism with noise multiplier ``z = sqrt(n) sigma / Delta2`` and the
    composition is accounted by the PLD accountant (the ideal mechanism ``Q``). This is
    valid for the real mechanism ``P`` by two steps:

    1. ``Q``'s release ``v + round(N(0, s^2 I))`` (``v`` the integer sum, ``s^2 = n
       sigma^2``) is a post-processing of the Gaussian mechanism, since ``round(v + G) = v
       + round(G)`` for integer ``v``; sampling, adaptivity and the modular reduction are
       the same in both worlds.
    2. Per release ``P`` and ``Q`` are ``(Lambda_i, Beta_i)``-close in both directions
       (:func:`ddg_gaussian_closeness`); conditionally on the history this holds in every
       round, so over all releases ``P(S) <= e^Lambda Q(S) + Beta`` and vice versa with
       ``Lambda = sum Lambda_i``, ``Beta = sum Beta_i``. If ``Q`` is ``(eps_Q,
       delta_Q)``-DP then ``P(D)(S) <= e^{eps_Q + 2 Lambda} P(D')(S) + e^Lambda delta_Q +
       Beta (1 + e^{eps_Q + Lambda})``.

    ``Beta`` is set to at most ``1e-12 delta`` (through each release's ``B``; once more
    with ``Beta e^{eps_Q + Lambda + 1} <= 1e-12 delta`` if that is not enough), ``delta_Q =
    (1 - 1e-9) delta e^-Lambda``, and the result ``eps_Q + 2 Lambda`` is returned after
    checking that the final delta is at most ``delta``.

    Raises:
        UnsupportedEventError: the event contains Skellam noise, or a discrete Gaussian
            for which the closeness theorem gives nothing (``sigma < 1``, or too few
            clients' noise for ``eta`` to be small).
    """
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise InvalidParameterError(f"delta must lie in (0, 1), got {delta!r}")
    validate_event(event)
    found: list[tuple[Any, int]] = []
    ideal = _substitute_ddg(event, 1, found)
    releases = sum(m for _, m in found)
    if releases == 0:
        return compute_epsilon(
            ideal,
            delta,
            accountant=AccountantKind.PLD,
            neighboring_relation=neighboring_relation,
            pld_discretization=pld_discretization,
        )
    margin = 0.0
    for _attempt in range(2):
        # Beta <= 1e-12 delta e^-margin; margin grows once to cover e^{eps_Q + Lambda}
        log_budget = math.log(delta) + math.log(1e-12) - margin
        lam_total, log_betas = 0.0, []
        for ddg, count in found:
            log_tail = log_budget - math.log(2.0 * releases * ddg.dimension)
            closeness = ddg_gaussian_closeness(ddg, log_tail)
            if closeness is None:
                raise UnsupportedEventError(
                    f"{ddg!r}: too little noise per client for the sum to be provably close to "
                    "a rounded Gaussian; accounted by RDP"
                )
            lam_total += count * closeness[0]
            log_betas.append(math.log(count) + closeness[1])
        log_beta = _logaddexp(*log_betas)
        delta_q = (1.0 - 1e-9) * delta * math.exp(-lam_total)
        eps_q = compute_epsilon(
            ideal,
            delta_q,
            accountant=AccountantKind.PLD,
            neighboring_relation=neighboring_relation,
            pld_discretization=pld_discretization,
        )
        if not math.isfinite(eps_q):
            return math.inf
        log_extra = log_beta + _logaddexp(0.0, eps_q + lam_total)
        if math.exp(lam_total) * delta_q + math.exp(log_extra) <= delta:
            return eps_q + 2.0 * lam_total
        margin = eps_q + lam_total + 1.0
    raise UnsupportedEventError(
        "the closeness terms do not fit in delta for this event; accounted by RDP"
    )


def contains_distributed_discrete_gaussian(event: dp_accounting.DpEvent) -> bool:
    """Whether ``event`` has a :class:`~dp.events.DistributedDiscreteGaussianDpEvent` anywhere."""
    if isinstance(event, DistributedDiscreteGaussianDpEvent):
        return True
    if isinstance(event, dp_accounting.ComposedDpEvent):
        return any(contains_distributed_discrete_gaussian(e) for e in event.events)
    inner = getattr(event, "event", None)
    return isinstance(inner, dp_accounting.DpEvent) and contains_distributed_discrete_gaussian(inner)


def distributed_epsilon(
    event: dp_accounting.DpEvent,
    delta: float,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
    pld_discretization: float = DEFAULT_PLD_DISCRETIZATION,
) -> float:
    """epsilon at ``delta`` of an event with distributed noise: the smaller of two valid bounds.

    The RDP bound (``compute_epsilon(..., accountant="rdp")``) and, where it applies,
    :func:`distributed_pld_epsilon` (the Gaussian PLD with the closeness correction; it
    is skipped for Skellam noise, too little noise per client, or work beyond the PLD
    accountant's bounds). This is the figure :class:`~dp.ledger.PrivacyLedger` reports
    for compositions with distributed discrete Gaussians under its ``pld`` and ``rdp``
    accountants, so noise calibrated with it meets the ledger's budget.
    """
    rdp = compute_epsilon(
        event, delta, accountant=AccountantKind.RDP, neighboring_relation=neighboring_relation
    )
    try:
        pld = distributed_pld_epsilon(
            event,
            delta,
            neighboring_relation=neighboring_relation,
            pld_discretization=pld_discretization,
        )
    except (AccountantLimitError, UnsupportedEventError):
        return rdp
    return min(rdp, pld)


# --------------------------------------------------------------------------------------
# JSON (de)serialisation of events
# --------------------------------------------------------------------------------------

TYPE_KEY = "@type"


def _event_classes() -> dict[str, type[dp_accounting.DpEvent]]:
    classes: dict[str, type[dp_accounting.DpEvent]] = {}
    for name in dir(dp_event):
        obj = getattr(dp_event, name)
        if isinstance(obj, type) and issubclass(obj, dp_event.DpEvent):
            classes[name] = obj
    for cls in (DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent):
        classes[cls.__name__] = cls
    return classes


_EVENT_CLASSES = _event_classes()


def _value_to_json(value: Any) -> Any:
    if isinstance(value, dp_accounting.DpEvent):
        return event_to_dict(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not math.isfinite(f):
            raise InvalidParameterError(f"cannot serialise the non-finite value {f!r}")
        return f
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return [_value_to_json(v) for v in value]
    raise InvalidParameterError(f"cannot serialise a field of type {type(value).__name__}")


def event_to_dict(event: dp_accounting.DpEvent) -> dict[str, Any]:
    """JSON-compatible dictionary of an event: ``{"@type": class name, field: value, ...}``.

    Nested events become nested dictionaries; sequences become lists.

    Raises:
        InvalidParameterError: the event is not one of the known event classes or has a
            non-finite or unserialisable field.
    """
    cls = type(event)
    if _EVENT_CLASSES.get(cls.__name__) is not cls:
        raise InvalidParameterError(f"cannot serialise the unknown event class {cls.__qualname__}")
    out: dict[str, Any] = {TYPE_KEY: cls.__name__}
    for field in attr.fields(cls):
        out[field.name] = _value_to_json(getattr(event, field.name))
    return out


def _value_from_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return event_from_dict(value)
    if isinstance(value, list):
        return [_value_from_json(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise InvalidParameterError(f"unexpected value in a serialised event: {value!r}")


def event_from_dict(data: Mapping[str, Any]) -> dp_accounting.DpEvent:
    """Inverse of :func:`event_to_dict`; only known event classes are instantiated.

    Raises:
        InvalidParameterError: unknown class, missing or unexpected fields.
    """
    if not isinstance(data, Mapping):
        raise InvalidParameterError("a serialised event must be a JSON object")
    name = data.get(TYPE_KEY)
    cls = _EVENT_CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidParameterError(f"unknown event type {name!r}")
    fields = {f.name: f for f in attr.fields(cls)}
    extra = set(data) - set(fields) - {TYPE_KEY}
    if extra:
        raise InvalidParameterError(f"unexpected fields {sorted(extra)} for {name}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key != TYPE_KEY:
            kwargs[key] = _value_from_json(value)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InvalidParameterError(f"cannot build {name}: {exc}") from exc


def event_key(event: dp_accounting.DpEvent) -> str:
    """Canonical string of an event (sorted-key JSON), usable as a dictionary key."""
    import json

    return json.dumps(event_to_dict(event), sort_keys=True, separators=(",", ":"))
