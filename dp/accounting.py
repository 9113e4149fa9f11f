"""Privacy accountants: (epsilon, delta) of composed DP events, with three back ends.

Every mechanism is described by a ``dp_accounting.DpEvent`` (dp-accounting's own events
and the two distributed events of :mod:`dp.events`). An accountant composes events and
converts the result into ``epsilon`` for a ``delta`` (or ``delta`` for an ``epsilon``):

* ``AccountantKind.PLD`` -- dp-accounting's privacy-loss-distribution accountant
  (``dp_accounting.pld.PLDAccountant``). Tight for the (subsampled) Gaussian, Laplace and
  randomized response; it does **not** handle the distributed discrete Gaussian or Skellam
  events and refuses them with :class:`~secagg.errors.UnsupportedEventError`.
* ``AccountantKind.RDP`` -- dp-accounting's Renyi accountant extended with RDP bounds for
  :class:`~dp.events.DistributedDiscreteGaussianDpEvent` and
  :class:`~dp.events.DistributedSkellamDpEvent`, alone or under Poisson subsampling.
* ``AccountantKind.PRV`` -- Opacus' privacy-random-variable accountant (Gopi et al. 2021),
  for the Gaussian and the Poisson-subsampled Gaussian only.

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

Events are plain data; :func:`event_to_dict` and :func:`event_from_dict` serialise them
(ours included) to JSON-compatible dictionaries, restricted to a whitelist of event
classes so that loading a file never imports arbitrary code.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
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
from secagg.errors import InvalidParameterError, UnsupportedEventError

__all__ = [
    "AccountantKind",
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
    "DEFAULT_PLD_DISCRETIZATION",
]

FloatArray = npt.NDArray[np.float64]
DEFAULT_PLD_DISCRETIZATION = 1e-3
_CompositionErrorDetails = dp_accounting.PrivacyAccountant.CompositionErrorDetails


class AccountantKind(str, Enum):
    """Which accountant converts a composition of events into (epsilon, delta)."""

    PLD = "pld"
    RDP = "rdp"
    PRV = "prv"


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


class RdpAccountant(rdp_privacy_accountant.RdpAccountant):  # type: ignore[misc]
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


class PrvAccountant(dp_accounting.PrivacyAccountant):  # type: ignore[misc]
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
        from opacus.accountants import PRVAccountant

        acc = PRVAccountant()
        acc.history = list(self._history)
        return acc

    def get_epsilon(self, target_delta: float) -> float:
        if self._non_private:
            return math.inf
        if not self._history:
            return 0.0
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(self._opacus().get_epsilon(target_delta, eps_error=self._eps_error))

    def get_delta(self, target_epsilon: float) -> float:
        if self._non_private:
            return 1.0
        if not self._history:
            return 0.0
        delta_error = 1e-12
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
    kind = _kind(kind)
    if kind is AccountantKind.PLD:
        _check_positive("pld_discretization", pld_discretization)
        return pld_privacy_accountant.PLDAccountant(
            neighboring_relation=neighboring_relation,
            value_discretization_interval=pld_discretization,
        )
    if kind is AccountantKind.RDP:
        orders = None if rdp_orders is None else _check_orders(rdp_orders)
        return RdpAccountant(orders=orders, neighboring_relation=neighboring_relation)
    return PrvAccountant(neighboring_relation)


def _kind(kind: AccountantKind | str) -> AccountantKind:
    try:
        return AccountantKind(kind)
    except ValueError:
        raise InvalidParameterError(
            f"unknown accountant {kind!r}; choose one of {[k.value for k in AccountantKind]}"
        ) from None


def _unsupported(
    accountant: dp_accounting.PrivacyAccountant, kind: AccountantKind, event: dp_accounting.DpEvent
) -> UnsupportedEventError | None:
    try:
        details = accountant._maybe_compose(event, 1, False)
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
    kind = _kind(kind)
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
    kind = _kind(kind)
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
    kind = _kind(kind)
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
