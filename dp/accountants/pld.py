"""Privacy loss distributions: dp-accounting's PLD accountant, sized before it builds.

:class:`PldAccountant` is tight for the (subsampled) Gaussian, Laplace and randomized
response. It does **not** handle the distributed discrete Gaussian or Skellam events and
refuses them with :class:`~secagg.errors.UnsupportedEventError` (the distributed discrete
Gaussian has its own PLD route, :mod:`dp.accountants.distributed_pld`). Every
distribution is sized from dp-accounting's own truncation bounds before it is built, and
anything above :data:`~dp.accountants.base.MAX_ACCOUNTANT_MEMORY` is refused with
:class:`~dp.accountants.base.AccountantLimitError`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import dp_accounting
from dp_accounting import dp_event
from dp_accounting.pld import common, pld_privacy_accountant
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from dp_accounting.pld import privacy_loss_mechanism as plm

from dp.accountants.base import (
    MAX_ACCOUNTANT_MEMORY,
    AccountantLimitError,
    CompositionErrorDetails,
    NeighboringRelation,
    ValidatingAccountant,
    megabytes,
)
from dp.accountants.gaussian import gaussian_dp_epsilon

__all__ = ["MAX_PLD_BUILD_POINTS", "PldAccountant", "gaussian_epsilon"]

#: construction costs about 170 bytes and 15 microseconds per point, so this caps one
#: build at about 70 MB and a few seconds.
MAX_PLD_BUILD_POINTS = 400_000
_PLD_BUILD_BYTES_PER_POINT = 170
#: A composed PMF is convolved by FFT: about 64 bytes per point at the peak.
_PLD_COMPOSE_BYTES_PER_POINT = 64
_TAIL_MASS_TRUNCATION = 1e-15  # dp-accounting's default for PLD composition


#: Distinct Gaussian PLDs kept built (a ledger composes the same per-round PLDs again each
#: time it is asked; a distribution is a few hundred kB).
_GAUSSIAN_PLD_CACHE = 512


@functools.lru_cache(maxsize=_GAUSSIAN_PLD_CACHE)
def _gaussian_pld(
    sigma: float, interval: float, sampling_prob: float, relation: NeighboringRelation
) -> Any:
    """dp-accounting's PLD of the (subsampled) Gaussian, built once per parameter set.

    Privacy loss distributions are immutable (composing returns a new one), so a ledger
    that composes the same round's mechanism again reuses the distribution instead of
    rebuilding it (the build is the costly step: about 10,000 grid points, each through
    dp-accounting's inverse privacy loss).
    """
    return pld_lib.from_gaussian_mechanism(
        standard_deviation=sigma,
        value_discretization_interval=interval,
        sampling_prob=sampling_prob,
        neighboring_relation=relation,
    )


def gaussian_epsilon(
    sigma: float,
    delta: float,
    *,
    neighboring_relation: NeighboringRelation = NeighboringRelation.ADD_OR_REMOVE_ONE,
) -> float:
    """Epsilon at ``delta`` of the Gaussian mechanism with noise multiplier ``sigma``, exactly.

    The Gaussian mechanism without sampling is exactly ``mu``-GDP with ``mu = 1 / sigma``
    (``2 / sigma`` when a neighbour replaces a record, the sensitivity dp-accounting uses
    for that relation), whose epsilon is known in closed form
    (:func:`~dp.accountants.gaussian.gaussian_dp_epsilon`: an upper end of a bisection to
    ``1e-12``). The result is then checked with dp-accounting's own
    ``GaussianPrivacyLoss.get_delta_for_epsilon``: its delta is at most ``delta`` by
    dp-accounting's arithmetic too (if that check failed, dp-accounting's binary search
    would decide). It is at most the PLD accountant's figure for the same event, which
    discretises the same curve pessimistically (by about ``1e-6`` at the default
    discretization), and costs about a millisecond instead of a PLD build. Composed
    Gaussians without sampling are one Gaussian, ``sigma = (sum_i 1 / sigma_i^2)^(-1/2)``
    (Gaussian DP composes exactly: Dong, Roth and Su 2019).
    """
    replace = neighboring_relation is NeighboringRelation.REPLACE_ONE
    adjacency = plm.AdjacencyType.REPLACE if replace else plm.AdjacencyType.REMOVE
    loss = plm.GaussianPrivacyLoss(float(sigma), adjacency_type=adjacency)
    exact = gaussian_dp_epsilon((2.0 if replace else 1.0) / float(sigma), float(delta))
    candidate = exact + 1e-12 * max(1.0, exact)
    if float(loss.get_delta_for_epsilon(candidate)) <= delta:
        return candidate
    found = common.inverse_monotone_function(
        loss.get_delta_for_epsilon,
        float(delta),
        common.BinarySearchParameters(0.0, math.inf, initial_guess=1.0, tolerance=1e-9),
    )
    return math.inf if found is None else float(found)


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


class PldAccountant(ValidatingAccountant, pld_privacy_accountant.PLDAccountant):  # type: ignore[misc]
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
                f"need {points:.3g} points ({megabytes(need)}, limit "
                f"{megabytes(MAX_ACCOUNTANT_MEMORY)}); use the rdp accountant "
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

    def _losses(self, mechanism: dp_accounting.DpEvent, sampling_prob: float) -> list[Any]:
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
        pmfs = [pld._pmf_remove] if pld._symmetric else [pld._pmf_remove, pld._pmf_add]
        if count is not None:
            dense = []
            for pmf in pmfs:
                span = _pmf_span(pmf)
                # dp-accounting composes small sparse PMFs pairwise while size**count
                # stays under 1000; anything larger goes to the dense FFT path below.
                if count > 1 and count * math.log(max(getattr(pmf, "size", span), 2)) > math.log(
                    1000
                ):
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
        if isinstance(
            event,
            (dp_event.MixtureOfGaussiansDpEvent, dp_event.TruncatedSubsampledGaussianDpEvent),
        ):
            return CompositionErrorDetails(
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
                pld = _gaussian_pld(
                    sigma,
                    float(self._value_discretization_interval),
                    1.0,
                    self.neighboring_relation,
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
            if isinstance(
                inner, dp_accounting.LaplaceDpEvent
            ) and self.neighboring_relation not in (
                NeighboringRelation.ADD_OR_REMOVE_ONE,
                NeighboringRelation.REPLACE_SPECIAL,
            ):
                return super()._maybe_compose(event, count, do_compose)  # refused there
            if do_compose:
                name = (
                    "noise multiplier"
                    if isinstance(inner, dp_accounting.GaussianDpEvent)
                    else "Laplace parameter"
                )
                what = f"{name} {float(inner.noise_multiplier):g}" + (
                    f" at q = {q:g}" if sampled else ""
                )
                self._check_build(what, self._losses(inner, q))
                if isinstance(inner, dp_accounting.GaussianDpEvent):
                    pld = _gaussian_pld(
                        float(inner.noise_multiplier),
                        float(self._value_discretization_interval),
                        q,
                        self.neighboring_relation,
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
