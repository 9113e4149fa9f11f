"""What every privacy accountant must do: a conformance suite each back end subclasses.

Like dp-accounting's ``PrivacyAccountantTest``: :class:`AccountantConformance` holds the
tests, a subclass per accountant (``tests/dp/test_accountant_conformance.py``) says which
accountant it is, the slack it states against the exact Gaussian curve and which events
it handles and refuses. The accountants are the real ones (dp-accounting and Opacus, no
mocks); every check composes a handful of events so that each test stays well under a
second.

The properties:

* no events (or only no-ops) give epsilon 0 and delta 0; a non-private event gives
  epsilon ``inf`` and delta 1;
* epsilon grows with the number of composed events and falls with the noise;
  epsilon(delta) does not increase with delta, and delta(epsilon) does not with epsilon;
* on the Gaussian mechanism the accountant is an upper bound on the exact mu-GDP epsilon
  (:func:`dp.accounting.gaussian_dp_epsilon`) within the back end's stated slack;
* composing an event ``k`` times in one call, ``k`` times one by one, or as
  ``SelfComposedDpEvent(event, k)`` gives the same epsilon;
* ``get_delta(get_epsilon(delta))`` is ``delta`` again, within the stated tolerance;
* bad inputs raise the library's typed errors (:class:`~secagg.errors.InvalidParameterError`,
  :class:`~secagg.errors.UnsupportedEventError`), never a bare ``ValueError``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import dp_accounting
import pytest
from dp_accounting import dp_event

from dp.accounting import (
    AccountantKind,
    check_supported,
    compute_delta,
    compute_epsilon,
    gaussian_dp_epsilon,
    make_accountant,
    supports,
)
from secagg.errors import InvalidParameterError, SecAggError, UnsupportedEventError

G = dp_accounting.GaussianDpEvent
PS = dp_accounting.PoissonSampledDpEvent
SC = dp_accounting.SelfComposedDpEvent

DELTA = 1e-5


class UnknownDpEvent(dp_accounting.DpEvent):  # type: ignore[misc]
    """An event no accountant has heard of."""


class AccountantConformance:
    """The tests every accountant passes; subclass it and set the class attributes.

    Not collected by itself (its name does not start with ``Test``).
    """

    #: The accountant under test.
    kind: ClassVar[AccountantKind]
    #: How far above the exact Gaussian epsilon the back end may be: ``abs + rel * exact``.
    gaussian_abs_slack: ClassVar[float] = 0.0
    gaussian_rel_slack: ClassVar[float] = 0.0
    #: Relative tolerance of ``get_delta(get_epsilon(delta)) == delta``.
    round_trip_rtol: ClassVar[float] = 1e-6
    #: Relative tolerance between one-call, one-by-one and self-composed compositions.
    composition_rtol: ClassVar[float] = 1e-9
    #: Events the back end handles besides the Gaussian (each composed once).
    also_supported: ClassVar[tuple[dp_accounting.DpEvent, ...]] = ()
    #: Events the back end refuses besides the unknown ones.
    also_unsupported: ClassVar[tuple[dp_accounting.DpEvent, ...]] = ()

    def make(self) -> dp_accounting.PrivacyAccountant:
        """A fresh accountant of :attr:`kind`."""
        return make_accountant(self.kind)

    def epsilon(self, event: dp_accounting.DpEvent, count: int = 1, delta: float = DELTA) -> float:
        accountant = self.make()
        accountant.compose(event, count)
        return float(accountant.get_epsilon(delta))

    # ------------------------------------------------------------ nothing, no-op, everything
    def test_no_events_give_epsilon_zero(self) -> None:
        accountant = self.make()
        assert accountant.get_epsilon(DELTA) == 0.0
        assert accountant.get_delta(1.0) == 0.0
        assert compute_epsilon(dp_accounting.NoOpDpEvent(), DELTA, accountant=self.kind) == 0.0

    def test_no_op_events_give_epsilon_zero(self) -> None:
        for event in (
            dp_accounting.NoOpDpEvent(),
            dp_accounting.ComposedDpEvent([dp_accounting.NoOpDpEvent()] * 3),
            SC(dp_accounting.NoOpDpEvent(), 10),
        ):
            accountant = self.make()
            accountant.compose(event)
            assert accountant.get_epsilon(DELTA) == 0.0
            assert accountant.get_delta(0.5) == 0.0

    def test_non_private_event_gives_infinite_epsilon(self) -> None:
        for event in (
            dp_accounting.NonPrivateDpEvent(),
            dp_accounting.ComposedDpEvent([G(1.0), dp_accounting.NonPrivateDpEvent()]),
            SC(dp_accounting.NonPrivateDpEvent(), 3),
        ):
            assert supports(event, self.kind)
            accountant = self.make()
            accountant.compose(event)
            assert accountant.get_epsilon(DELTA) == math.inf
            assert accountant.get_delta(10.0) == 1.0

    # ------------------------------------------------------------ monotonicity
    def test_epsilon_grows_with_the_number_of_events(self) -> None:
        epsilons = [self.epsilon(G(4.0), count) for count in (1, 2, 4, 8)]
        assert all(a < b for a, b in zip(epsilons, epsilons[1:], strict=False)), epsilons

    def test_epsilon_falls_with_the_noise(self) -> None:
        epsilons = [self.epsilon(G(z), 4) for z in (1.0, 2.0, 4.0, 8.0)]
        assert all(a > b for a, b in zip(epsilons, epsilons[1:], strict=False)), epsilons

    def test_epsilon_does_not_increase_with_delta(self) -> None:
        accountant = self.make()
        accountant.compose(G(1.5), 4)
        epsilons = [accountant.get_epsilon(delta) for delta in (1e-9, 1e-7, 1e-5, 1e-3, 1e-1)]
        assert all(a >= b for a, b in zip(epsilons, epsilons[1:], strict=False)), epsilons

    def test_delta_does_not_increase_with_epsilon(self) -> None:
        accountant = self.make()
        accountant.compose(G(1.5), 4)
        deltas = [accountant.get_delta(eps) for eps in (0.5, 1.0, 2.0, 4.0, 8.0)]
        assert all(a >= b for a, b in zip(deltas, deltas[1:], strict=False)), deltas
        assert all(0.0 <= d <= 1.0 for d in deltas)

    # ------------------------------------------------------------ the Gaussian mechanism
    @pytest.mark.parametrize(("z", "rounds"), [(1.0, 1), (2.0, 10), (4.0, 50)])
    @pytest.mark.parametrize("delta", [1e-5, 1e-3])
    def test_gaussian_agrees_with_the_exact_curve(
        self, z: float, rounds: int, delta: float
    ) -> None:
        exact = gaussian_dp_epsilon(math.sqrt(rounds) / z, delta)
        epsilon = self.epsilon(G(z), rounds, delta)
        assert epsilon >= exact - 1e-6  # an accountant's answer is an upper bound
        assert epsilon <= exact + self.gaussian_abs_slack + self.gaussian_rel_slack * exact

    # ------------------------------------------------------------ composition
    def test_self_composition_equals_repeated_composition(self) -> None:
        event, k = G(3.0), 4
        at_once = self.epsilon(event, k)
        one_by_one = self.make()
        for _ in range(k):
            one_by_one.compose(event)
        self_composed = self.epsilon(SC(event, k))
        assert one_by_one.get_epsilon(DELTA) == pytest.approx(at_once, rel=self.composition_rtol)
        assert self_composed == pytest.approx(at_once, rel=self.composition_rtol)

    def test_composed_event_equals_its_parts_composed(self) -> None:
        parts = [G(1.0), G(2.0), G(3.0)]
        whole = self.epsilon(dp_accounting.ComposedDpEvent(parts))
        accountant = self.make()
        for part in parts:
            accountant.compose(part)
        assert accountant.get_epsilon(DELTA) == pytest.approx(whole, rel=self.composition_rtol)

    # ------------------------------------------------------------ epsilon <-> delta
    @pytest.mark.parametrize("delta", [1e-7, 1e-5, 1e-3])
    def test_get_epsilon_get_delta_round_trip(self, delta: float) -> None:
        accountant = self.make()
        accountant.compose(G(2.0), 4)
        epsilon = accountant.get_epsilon(delta)
        assert accountant.get_delta(epsilon) == pytest.approx(delta, rel=self.round_trip_rtol)
        event = SC(G(2.0), 4)
        assert compute_delta(
            event, compute_epsilon(event, delta, accountant=self.kind), accountant=self.kind
        ) == pytest.approx(delta, rel=self.round_trip_rtol)

    # ------------------------------------------------------------ support
    def test_supported_events_are_accounted(self) -> None:
        for event in (G(1.0), *self.also_supported):
            assert supports(event, self.kind), event
            check_supported(event, self.kind)
            epsilon = compute_epsilon(event, DELTA, accountant=self.kind)
            assert 0.0 < epsilon < math.inf, event

    def test_unsupported_events_raise_the_typed_error(self) -> None:
        unknown = (dp_event.UnsupportedDpEvent(), UnknownDpEvent())
        for bad in (*unknown, *self.also_unsupported):
            for event in (bad, dp_accounting.ComposedDpEvent([G(1.0), bad]), SC(bad, 3)):
                assert not supports(event, self.kind), event
                with pytest.raises(UnsupportedEventError, match=type(bad).__name__):
                    check_supported(event, self.kind)
                with pytest.raises(UnsupportedEventError, match=type(bad).__name__):
                    compute_epsilon(event, DELTA, accountant=self.kind)
                with pytest.raises(dp_accounting.UnsupportedEventError):
                    self.make().compose(event)

    # ------------------------------------------------------------ bad inputs
    @pytest.mark.parametrize(
        "event",
        [
            G(-1.0),
            G(math.nan),
            G(math.inf),
            PS(1.5, G(1.0)),
            PS(-0.1, G(1.0)),
            SC(G(1.0), 0),
            SC(G(1.0), 1.5),
        ],
        ids=repr,
    )
    def test_bad_event_parameters_raise_the_typed_error(self, event: dp_accounting.DpEvent) -> None:
        with pytest.raises(InvalidParameterError):
            compute_epsilon(event, DELTA, accountant=self.kind)
        with pytest.raises(InvalidParameterError):
            compute_delta(event, 1.0, accountant=self.kind)
        with pytest.raises(InvalidParameterError):
            self.make().compose(event)

    @pytest.mark.parametrize("count", [0, -1, 1.5, True])
    def test_bad_counts_raise_the_typed_error(self, count: object) -> None:
        with pytest.raises(InvalidParameterError, match="count must be an integer >= 1"):
            self.make().compose(G(1.0), count)  # type: ignore[arg-type]

    @pytest.mark.parametrize("delta", [0.0, 1.0, -1e-5, 2.0, math.nan, "1e-5"])
    def test_bad_delta_raises_the_typed_error(self, delta: object) -> None:
        with pytest.raises(InvalidParameterError, match="delta"):
            compute_epsilon(G(1.0), delta, accountant=self.kind)  # type: ignore[arg-type]

    @pytest.mark.parametrize("epsilon", [-1.0, math.nan, math.inf, "1"])
    def test_bad_epsilon_raises_the_typed_error(self, epsilon: object) -> None:
        with pytest.raises(InvalidParameterError, match="epsilon"):
            compute_delta(G(1.0), epsilon, accountant=self.kind)  # type: ignore[arg-type]

    def test_a_non_event_raises_the_typed_error(self) -> None:
        for not_an_event in (None, 1.0, "GaussianDpEvent(1.0)", [G(1.0)]):
            with pytest.raises(InvalidParameterError, match="DpEvent"):
                compute_epsilon(not_an_event, DELTA, accountant=self.kind)  # type: ignore[arg-type]
            with pytest.raises(InvalidParameterError, match="DpEvent"):
                check_supported(not_an_event, self.kind)  # type: ignore[arg-type]

    def test_every_refusal_is_a_library_error(self) -> None:
        for call in (
            lambda: compute_epsilon(G(-1.0), DELTA, accountant=self.kind),
            lambda: compute_epsilon(UnknownDpEvent(), DELTA, accountant=self.kind),
            lambda: compute_epsilon(G(1.0), 0.0, accountant=self.kind),
        ):
            with pytest.raises(SecAggError):
                call()
