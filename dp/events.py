"""DP events for the distributed discrete mechanisms, in dp-accounting's event vocabulary.

Every mechanism in :mod:`dp` describes what it applied as a ``dp_accounting.DpEvent``.
Standard mechanisms use dp-accounting's own events (``GaussianDpEvent``,
``PoissonSampledDpEvent``, ``SelfComposedDpEvent``, ``ComposedDpEvent`` ...). The two
distributed mechanisms below have no counterpart there and are defined here, following
dp-accounting's conventions: frozen, slotted ``attrs`` classes whose meaning never changes
(new parameters may only be added as optional ones).

Units: all quantities are in the *scaled integer domain* in which the noise is added,
i.e. after the client update was clipped to L2 norm ``c``, rotated, multiplied by the
scale ``s`` and randomly rounded. Sensitivities therefore include the rounding inflation
(Kairouz, Liu, Steinke 2021, Theorem 8 / REFERENCES.md)::

    Delta2 = min(c~ + sqrt(d), sqrt(c~^2 + d/4 + sqrt(2 ln(1/beta)) (c~ + sqrt(d)/2)))
    Delta1 = Delta2 * min(sqrt(d), Delta2)          with c~ = c * s

Accountants that understand these events live in :mod:`dp.accounting`.
"""

from __future__ import annotations

import attr
import dp_accounting

__all__ = ["DistributedDiscreteGaussianDpEvent", "DistributedSkellamDpEvent"]


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DistributedDiscreteGaussianDpEvent(dp_accounting.DpEvent):  # type: ignore[misc]
    """Sum of ``num_clients`` independent discrete Gaussians N_Z(0, local_sigma^2) per coordinate.

    Each of ``num_clients`` clients adds N_Z(0, local_sigma^2)^d to its scaled, rounded
    update; only the sum is released. Kairouz, Liu, Steinke (ICML 2021) bound its Renyi
    DP; with ``n = num_clients``, ``a2 = Delta2 / (sqrt(n) sigma)``,
    ``a1 = Delta1 / (sqrt(n) sigma)`` and
    ``tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1))``::

        RDP(alpha) = min( alpha a2^2 / 2 + tau d,
                          alpha (a2^2 + 2 a1 tau + tau^2 d) / 2,
                          alpha (a2 + tau sqrt(d))^2 / 2 )

    (the per-order bound their own accounting code uses, google-research/federated
    ``distributed_dp/accounting_utils.py``). :func:`dp.accounting.ddg_rdp` implements it.
    With ``local_sigma >= 1`` the sum is also provably close to a rounded Gaussian of
    variance ``n sigma^2``, which :func:`dp.accounting.distributed_pld_epsilon` turns into
    a Gaussian-PLD epsilon plus a correction (tighter when the scaled noise is large).

    Attributes:
        l2_sensitivity: Delta2 in the scaled integer domain.
        l1_sensitivity: Delta1 in the scaled integer domain.
        local_sigma: standard-deviation parameter of each client's discrete Gaussian.
        num_clients: number of clients whose noise is actually in the released sum
            (survivors, minus any clients assumed to collude with the server).
        dimension: number of coordinates d the noise was added to (after padding).
    """

    l2_sensitivity: float
    l1_sensitivity: float
    local_sigma: float
    num_clients: int
    dimension: int


@attr.s(frozen=True, slots=True, auto_attribs=True)
class DistributedSkellamDpEvent(dp_accounting.DpEvent):  # type: ignore[misc]
    """Sum of ``num_clients`` independent Skellam(local_mu) draws per coordinate.

    Each client adds Poisson(local_mu) - Poisson(local_mu) (variance ``2 local_mu``) per
    coordinate; the sum is Skellam with central variance ``mu = 2 num_clients local_mu``.
    Agarwal, Kairouz, Liu (NeurIPS 2021, Theorem 3.5) give, in the scaled domain::

        RDP(alpha) = alpha Delta2^2 / (2 mu)
                     + min( ((2 alpha - 1) Delta2^2 + 6 Delta1) / (4 mu^2),  3 Delta1 / (2 mu) )

    (REFERENCES.md writes the same bound in unscaled units with the scale s made
    explicit: substitute Delta -> s Delta and mu -> s^2 mu.)

    Attributes:
        l2_sensitivity: Delta2 in the scaled integer domain.
        l1_sensitivity: Delta1 in the scaled integer domain.
        local_mu: each client's Skellam parameter (per-client variance is ``2 local_mu``).
        num_clients: number of clients whose noise is actually in the released sum.
        dimension: number of coordinates the noise was added to.
    """

    l2_sensitivity: float
    l1_sensitivity: float
    local_mu: float
    num_clients: int
    dimension: int

    @property
    def central_variance(self) -> float:
        """Variance of the aggregate noise per coordinate, ``2 * num_clients * local_mu``."""
        return 2.0 * self.num_clients * self.local_mu
