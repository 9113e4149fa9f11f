"""The PLD, RDP and PRV accountants each pass the conformance suite.

Each subclass states its back end's slack against the exact Gaussian curve and the
events it handles and refuses; the tests are those of
``AccountantConformance`` (``tests/dp/accountant_conformance.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import dp_accounting
import pytest
from accountant_conformance import AccountantConformance

from dp.accounting import AccountantKind
from dp.events import DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent

G = dp_accounting.GaussianDpEvent
PS = dp_accounting.PoissonSampledDpEvent

DDG = DistributedDiscreteGaussianDpEvent(
    l2_sensitivity=1.0, l1_sensitivity=8.0, local_sigma=2.0, num_clients=10, dimension=64
)
SKELLAM = DistributedSkellamDpEvent(
    l2_sensitivity=1.0, l1_sensitivity=8.0, local_mu=4.0, num_clients=10, dimension=64
)


class TestPldConformance(AccountantConformance):
    """Privacy loss distributions: tight up to the value discretization (``1e-3``)."""

    kind = AccountantKind.PLD
    gaussian_abs_slack = 1e-3
    round_trip_rtol = 1e-6
    composition_rtol = 1e-5  # k convolutions against one Gaussian of sigma / sqrt(k)
    also_supported = (PS(0.1, G(1.0)), dp_accounting.LaplaceDpEvent(1.0))
    also_unsupported = (DDG, SKELLAM)


class TestRdpConformance(AccountantConformance):
    """Renyi DP: the RDP-to-(epsilon, delta) conversion costs up to ~15% on the Gaussian."""

    kind = AccountantKind.RDP
    gaussian_rel_slack = 0.2
    round_trip_rtol = 1e-6
    composition_rtol = 1e-12  # RDP curves add exactly
    also_supported = (PS(0.1, G(1.0)), DDG, SKELLAM, PS(0.1, DDG))
    also_unsupported = ()


@pytest.fixture(scope="module")
def opacus_imported() -> Iterator[None]:
    """Import Opacus (and torch) once, outside the timing of the first PRV test."""
    pytest.importorskip("opacus.accountants")
    yield


@pytest.mark.usefixtures("opacus_imported")
class TestPrvConformance(AccountantConformance):
    """Privacy random variables: Opacus' estimate plus its ``eps_error`` of 0.01."""

    kind = AccountantKind.PRV
    gaussian_abs_slack = 0.02
    round_trip_rtol = 2e-3  # delta_error and the eps_error shift of Opacus' bounds
    composition_rtol = 1e-12  # one history entry per (noise, rate), whatever the order
    also_supported = ()
    also_unsupported = (dp_accounting.LaplaceDpEvent(1.0), DDG, SKELLAM)
