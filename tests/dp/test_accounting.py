"""Accountants: golden values from dp-accounting and Opacus, the exact mu-GDP case, RDP bounds."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant
from opacus.accountants import PRVAccountant, RDPAccountant
from scipy import optimize
from scipy.stats import norm

from dp.accounting import (
    AccountantKind,
    compute_delta,
    compute_epsilon,
    ddg_rdp,
    event_from_dict,
    event_key,
    event_to_dict,
    gaussian_dp_delta,
    gaussian_dp_epsilon,
    make_accountant,
    poisson_subsampled_rdp,
    skellam_rdp,
    supports,
)
from dp.events import DistributedDiscreteGaussianDpEvent, DistributedSkellamDpEvent
from secagg.errors import InvalidParameterError, SecAggError, UnsupportedEventError

G = dp_accounting.GaussianDpEvent
PS = dp_accounting.PoissonSampledDpEvent
SC = dp_accounting.SelfComposedDpEvent

CONFIGS = [(0.05, 1.1, 100), (0.2, 2.0, 30), (1.0, 4.0, 20)]
PRV_CONFIGS = [(0.2, 2.0, 30), (0.1, 1.5, 50)]


def _dpfedavg(q: float, z: float, t: int) -> dp_accounting.DpEvent:
    step = G(z) if q == 1.0 else PS(q, G(z))
    return SC(step, t)


def _closed_form_gdp_epsilon(mu: float, delta: float) -> float:
    """Independent root of delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)."""

    def f(eps: float) -> float:
        return float(
            norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta
        )

    return float(optimize.brentq(f, 0.0, 200.0, xtol=1e-12))


@pytest.mark.parametrize(("q", "z", "t"), CONFIGS)
def test_pld_matches_dp_accounting(q: float, z: float, t: int) -> None:
    event = _dpfedavg(q, z, t)
    reference = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    reference.compose(event)
    assert compute_epsilon(event, 1e-5, accountant="pld", pld_discretization=1e-3) == pytest.approx(
        reference.get_epsilon(1e-5), rel=1e-12
    )
    assert compute_delta(event, 1.0, accountant="pld", pld_discretization=1e-3) == pytest.approx(
        reference.get_delta(1.0), rel=1e-12
    )


@pytest.mark.parametrize(
    "event", [PS(0.1, G(1.0)), G(1.0), SC(PS(0.1, G(1.0)), 2), SC(PS(0.3, G(0.8)), 3)]
)
def test_pld_matches_dp_accounting_for_one_and_few_rounds(event: dp_accounting.DpEvent) -> None:
    # one round is composed exactly as dp-accounting composes it (no densifying or
    # self-convolution of a PMF it keeps sparse), so the figures agree to rounding
    reference = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    reference.compose(event)
    assert compute_epsilon(event, 1e-5, accountant="pld", pld_discretization=1e-3) == pytest.approx(
        reference.get_epsilon(1e-5), rel=1e-12
    )


@pytest.mark.parametrize(("q", "z", "t"), CONFIGS)
def test_rdp_matches_opacus_and_dp_accounting(q: float, z: float, t: int) -> None:
    event = _dpfedavg(q, z, t)
    opacus = RDPAccountant()
    opacus.history = [(z, q, t)]
    ours = compute_epsilon(event, 1e-5, accountant="rdp", rdp_orders=RDPAccountant.DEFAULT_ALPHAS)
    assert ours == pytest.approx(opacus.get_epsilon(1e-5), rel=1e-4)
    reference = rdp_privacy_accountant.RdpAccountant()
    reference.compose(event)
    assert compute_epsilon(event, 1e-5, accountant=AccountantKind.RDP) == pytest.approx(
        reference.get_epsilon(1e-5), rel=1e-12
    )


@pytest.mark.parametrize(("q", "z", "t"), PRV_CONFIGS)
def test_prv_matches_opacus(q: float, z: float, t: int) -> None:
    opacus = PRVAccountant()
    opacus.history = [(z, q, t)]
    eps = compute_epsilon(_dpfedavg(q, z, t), 1e-5, accountant="prv")
    assert eps == pytest.approx(opacus.get_epsilon(1e-5), rel=1e-9)
    # delta at that (upper) epsilon is at most the target, up to the discretisation errors
    assert compute_delta(_dpfedavg(q, z, t), eps, accountant="prv") <= 1e-5 * 1.01


@pytest.mark.parametrize(("q", "z", "t"), PRV_CONFIGS[:1])
def test_pld_is_tighter_than_rdp_and_close_to_prv(q: float, z: float, t: int) -> None:
    event = _dpfedavg(q, z, t)
    pld = compute_epsilon(event, 1e-5, accountant="pld")
    assert pld < compute_epsilon(event, 1e-5, accountant="rdp")
    assert pld == pytest.approx(compute_epsilon(event, 1e-5, accountant="prv"), abs=0.05)


@pytest.mark.parametrize(("sigma", "rounds"), [(5.0, 25), (2.0, 16), (6.0, 100)])
def test_full_participation_gaussian_is_exactly_mu_gdp(sigma: float, rounds: int) -> None:
    mu = math.sqrt(rounds) / sigma
    exact = _closed_form_gdp_epsilon(mu, 1e-5)
    assert compute_epsilon(SC(G(sigma), rounds), 1e-5, accountant="pld") == pytest.approx(
        exact, abs=0.02
    )
    assert gaussian_dp_epsilon(mu, 1e-5) == pytest.approx(exact, abs=1e-8)
    assert gaussian_dp_delta(mu, exact) == pytest.approx(1e-5, rel=1e-6)


def test_epsilon_and_delta_are_inverse() -> None:
    event = _dpfedavg(0.2, 2.0, 30)
    eps = compute_epsilon(event, 1e-6, accountant="pld")
    assert compute_delta(event, eps, accountant="pld") == pytest.approx(1e-6, rel=0.05)
    assert (
        compute_delta(event, eps + 0.5, accountant="pld")
        < 1e-6
        < compute_delta(event, eps - 0.5, accountant="pld")
    )


def _ddg(
    sigma: float, n: int, d: int = 1000, l2: float = 30.0
) -> DistributedDiscreteGaussianDpEvent:
    return DistributedDiscreteGaussianDpEvent(
        l2_sensitivity=l2,
        l1_sensitivity=l2 * min(math.sqrt(d), l2),
        local_sigma=sigma,
        num_clients=n,
        dimension=d,
    )


def _skellam(
    central_variance: float, n: int, d: int = 1000, l2: float = 30.0
) -> DistributedSkellamDpEvent:
    return DistributedSkellamDpEvent(
        l2_sensitivity=l2,
        l1_sensitivity=l2 * min(math.sqrt(d), l2),
        local_mu=central_variance / (2 * n),
        num_clients=n,
        dimension=d,
    )


def test_single_discrete_gaussian_equals_gaussian_rdp() -> None:
    # n = 1: tau = 0 and the bound is alpha Delta^2 / (2 sigma^2), the Gaussian's RDP.
    event = _ddg(sigma=45.0, n=1)
    reference = rdp_privacy_accountant.RdpAccountant()
    reference.compose(G(45.0 / 30.0))
    np.testing.assert_allclose(ddg_rdp(event, reference.orders), reference.rdp, rtol=1e-12)


def test_distributed_discrete_gaussian_tends_to_gaussian_and_never_beats_it() -> None:
    n, sens = 10, 30.0
    for sigma, close in ((20.0, True), (0.6, False)):
        ddg = compute_epsilon(SC(_ddg(sigma, n), 20), 1e-5, accountant="rdp")
        gauss = compute_epsilon(SC(G(math.sqrt(n) * sigma / sens), 20), 1e-5, accountant="rdp")
        assert ddg >= gauss - 1e-9
        if close:  # tau is ~1e-3400: same as the continuous Gaussian of the same variance
            assert ddg == pytest.approx(gauss, rel=1e-9)
        else:  # tau is not negligible at sigma = 0.6 and d = 1000
            assert ddg > gauss * 1.01


def test_skellam_tends_to_gaussian_of_the_same_variance() -> None:
    z, sens = 1.5, 100.0
    event = _skellam((z * sens) ** 2, n=20, l2=sens)
    gauss = compute_epsilon(SC(G(z), 10), 1e-5, accountant="rdp")
    skellam = compute_epsilon(SC(event, 10), 1e-5, accountant="rdp")
    assert gauss <= skellam <= gauss * 1.01


def test_skellam_rdp_is_evaluated_at_integer_orders() -> None:
    event = _skellam(400.0, n=4)
    np.testing.assert_array_equal(skellam_rdp(event, [1.5, 2.0]), skellam_rdp(event, [2.0, 2.0]))
    assert np.all(np.diff(skellam_rdp(event, np.arange(2, 40))) > 0)


def test_zhu_wang_bound_upper_bounds_the_exact_subsampled_gaussian() -> None:
    sigma, q = 1.2, 0.05
    orders = np.arange(2, 64, dtype=np.float64)
    exact = rdp_privacy_accountant.RdpAccountant(orders=orders)
    exact.compose(PS(q, G(sigma)))
    bound = poisson_subsampled_rdp(lambda a: a / (2 * sigma**2), q, orders)
    assert np.all(bound >= exact.rdp * (1 - 1e-9))
    assert np.all(bound <= orders / (2 * sigma**2) + 1e-12)
    assert bound[0] < 0.1 * orders[0] / (2 * sigma**2)  # amplification is real at small orders


@pytest.mark.parametrize("factory", [lambda: _ddg(12.0, 8), lambda: _skellam(30000.0, 8)])
def test_subsampled_distributed_mechanisms(factory) -> None:  # type: ignore[no-untyped-def]
    mech = factory()
    unsampled = compute_epsilon(SC(mech, 50), 1e-5, accountant="rdp")
    eps = [compute_epsilon(SC(PS(q, mech), 50), 1e-5, accountant="rdp") for q in (0.01, 0.1, 0.5)]
    assert eps[0] < eps[1] < eps[2] <= unsampled
    assert compute_epsilon(SC(PS(1.0, mech), 50), 1e-5, accountant="rdp") == pytest.approx(
        unsampled, rel=1e-9
    )
    # never better than the exact subsampled Gaussian with the same variance
    if isinstance(mech, DistributedDiscreteGaussianDpEvent):
        z = math.sqrt(mech.num_clients) * mech.local_sigma / mech.l2_sensitivity
    else:
        z = math.sqrt(mech.central_variance) / mech.l2_sensitivity
    assert eps[1] >= compute_epsilon(SC(PS(0.1, G(z)), 50), 1e-5, accountant="rdp")


def test_mixed_composition_under_rdp() -> None:
    mixed = dp_accounting.ComposedDpEvent([SC(PS(0.1, _ddg(3.0, 8)), 10), SC(PS(0.1, G(1.0)), 10)])
    eps_mixed = compute_epsilon(mixed, 1e-5, accountant="rdp")
    assert eps_mixed > compute_epsilon(SC(PS(0.1, G(1.0)), 10), 1e-5, accountant="rdp")
    assert supports(mixed, "rdp") and not supports(mixed, "pld") and not supports(mixed, "prv")


def test_unsupported_events_raise_a_typed_error_naming_them() -> None:
    with pytest.raises(UnsupportedEventError, match="DistributedDiscreteGaussianDpEvent"):
        compute_epsilon(SC(_ddg(3.0, 8), 2), 1e-5, accountant="pld")
    with pytest.raises(UnsupportedEventError, match="LaplaceDpEvent"):
        compute_epsilon(dp_accounting.LaplaceDpEvent(1.0), 1e-5, accountant="prv")
    with pytest.raises(UnsupportedEventError, match="DistributedSkellamDpEvent"):
        compute_epsilon(PS(0.1, _skellam(100.0, 2)), 1e-5, accountant="prv")
    with pytest.raises(SecAggError):
        compute_epsilon(dp_accounting.UnsupportedDpEvent(), 1e-5, accountant="rdp")


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="1/2"):
        compute_epsilon(_ddg(0.3, 4), 1e-5, accountant="rdp")
    with pytest.raises(InvalidParameterError):
        compute_epsilon(_dpfedavg(0.1, 1.0, 3), 0.0)
    with pytest.raises(InvalidParameterError):
        compute_delta(_dpfedavg(0.1, 1.0, 3), -1.0)
    with pytest.raises(InvalidParameterError):
        make_accountant("moments")
    with pytest.raises(InvalidParameterError):
        compute_epsilon("gaussian", 1e-5)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        ddg_rdp(_ddg(3.0, 4), [0.5])


def test_non_private_event_has_infinite_epsilon() -> None:
    for kind in AccountantKind:
        assert compute_epsilon(dp_accounting.NonPrivateDpEvent(), 1e-5, accountant=kind) == math.inf


EVENTS = [
    G(1.3),
    PS(0.01, G(0.9)),
    SC(PS(0.1, G(1.0)), 1000),
    dp_accounting.ComposedDpEvent([G(2.0), SC(dp_accounting.LaplaceDpEvent(0.5), 3)]),
    dp_accounting.SampledWithoutReplacementDpEvent(1000, 10, G(1.0)),
    dp_accounting.dp_event.MixtureOfGaussiansDpEvent(1.0, [0.0, 1.0], [0.5, 0.5]),
    dp_accounting.NoOpDpEvent(),
    dp_accounting.NonPrivateDpEvent(),
    _ddg(3.0, 8),
    PS(0.05, _skellam(400.0, 3)),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_serialisation_round_trip(event: dp_accounting.DpEvent) -> None:
    import json

    data = json.loads(json.dumps(event_to_dict(event)))
    back = event_from_dict(data)
    assert back == event
    assert event_key(back) == event_key(event)


def test_event_deserialisation_refuses_unknown_and_malformed_input() -> None:
    with pytest.raises(InvalidParameterError, match="unknown event type"):
        event_from_dict({"@type": "os.system"})
    with pytest.raises(InvalidParameterError, match="unexpected fields"):
        event_from_dict({"@type": "GaussianDpEvent", "noise_multiplier": 1.0, "extra": 1})
    with pytest.raises(InvalidParameterError):
        event_from_dict({"@type": "GaussianDpEvent"})
    with pytest.raises(InvalidParameterError, match="non-finite"):
        event_to_dict(G(math.inf))


def test_accountant_kind_parse_accepts_members_and_names() -> None:
    for kind in AccountantKind:
        assert AccountantKind.parse(kind) is kind
        assert AccountantKind.parse(kind.value) is kind


@pytest.mark.parametrize("bad", ["PLD", "gdp", "", 3, None])
def test_accountant_kind_parse_refusal_names_the_allowed_values(bad: object) -> None:
    with pytest.raises(InvalidParameterError, match="choose one of 'pld', 'rdp', 'prv'"):
        AccountantKind.parse(bad)  # type: ignore[arg-type]


def test_every_accountant_option_is_refused_the_same_way() -> None:
    from dp.ledger import PrivacyLedger
    from secagg import SecureAggregator
    from secagg.cli.audit import parameter_curve

    event = dp_accounting.GaussianDpEvent(2.0)
    refusals = [
        lambda: compute_epsilon(event, 1e-5, accountant="gdp"),
        lambda: supports(event, "gdp"),
        lambda: PrivacyLedger(accountant="gdp"),
        lambda: parameter_curve(1.0, 0.5, 3, 1e-5, accountant="gdp", points=2),
        lambda: SecureAggregator(
            population=4, dp="central", accountant="gdp", noise_multiplier=1.0
        ),
    ]
    for refuse in refusals:
        with pytest.raises(InvalidParameterError, match="unknown accountant 'gdp'; choose one of"):
            refuse()
