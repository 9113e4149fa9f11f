"""Privacy random variables: Opacus' PRV accountant in dp-accounting's interface.

:class:`PrvAccountant` (Gopi, Lee, Wutschitz 2021) handles the Gaussian and the
Poisson-subsampled Gaussian only, for add/remove neighbours. Opacus comes with the
``torch`` extra; without it, asking for an epsilon raises
:class:`~secagg.errors.MissingExtraError`. The mesh Opacus would discretise is sized
beforehand and refused with :class:`~dp.accountants.base.AccountantLimitError` above
:data:`~dp.accountants.base.MAX_ACCOUNTANT_MEMORY`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import dp_accounting
import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant

from dp.accountants.base import (
    MAX_ACCOUNTANT_MEMORY,
    AccountantLimitError,
    CompositionErrorDetails,
    NeighboringRelation,
    ValidatingAccountant,
    megabytes,
    quiet_absl,
)
from secagg.errors import raise_missing_extra
from secagg.validation import require_real

__all__ = ["MAX_PRV_DISTINCT_STEPS", "MAX_PRV_NOISE_MULTIPLIER", "PrvAccountant"]

#: while discretising, plus 8 per point for each distinct step kept for the convolution.
_PRV_BYTES_PER_POINT = 100
#: Opacus' RDP series for fractional orders (which its PRV domain sizing uses) converges
#: ever more slowly as the noise grows: seconds at z = 100, minutes at z = 1e6.
MAX_PRV_NOISE_MULTIPLIER = 100.0
#: Opacus sizes and discretises every distinct step separately (a fraction of a second each).
MAX_PRV_DISTINCT_STEPS = 20


class PrvAccountant(ValidatingAccountant):
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
            return CompositionErrorDetails(
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
            return CompositionErrorDetails(
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
        return CompositionErrorDetails(
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
                    f"the PRV accountant would discretise {points:.3g} points ({megabytes(need)}, "
                    f"limit {megabytes(MAX_ACCOUNTANT_MEMORY)}) for {int(total)} steps with noise "
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
        with quiet_absl(), np.errstate(all="ignore"), warnings.catch_warnings():
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
        """Opacus' upper estimate of epsilon at ``target_delta`` (``eps_error`` added).

        Raises:
            InvalidParameterError: ``target_delta`` is not in ``(0, 1)``.
            AccountantLimitError: the mesh would exceed the memory bound.
        """
        target_delta = require_real(
            "delta", target_delta, lo=0.0, hi=1.0, lo_open=True, hi_open=True
        )
        if self._non_private:
            return math.inf
        if not self._history:
            return 0.0
        self._check_size(target_delta / 1000)  # Opacus' default delta_error
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(self._opacus().get_epsilon(target_delta, eps_error=self._eps_error))

    def get_delta(self, target_epsilon: float) -> float:
        """An upper bound on delta at ``target_epsilon``.

        ``delta_hat(eps - eps_error) + delta_error``, with Opacus' estimate ``delta_hat``.

        Raises:
            InvalidParameterError: ``target_epsilon`` is not finite.
            AccountantLimitError: the mesh would exceed the memory bound.
        """
        if self._non_private:
            return 1.0
        if not self._history:
            return 0.0
        target_epsilon = require_real("epsilon", target_epsilon)
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
