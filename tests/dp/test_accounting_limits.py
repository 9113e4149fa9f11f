"""Accountants bound their memory and time: adversarial inputs finish or are refused up front.

No timed assertions: each call must either return a finite epsilon or raise a typed error
with a message, and its traced peak allocation must stay within a few hundred MB; the
``timeout`` marker only guards against a hang.
"""

from __future__ import annotations

import math
import tracemalloc
from collections.abc import Callable

import dp_accounting
import pytest

from dp.accounting import (
    MAX_ACCOUNTANT_MEMORY,
    AccountantLimitError,
    PrvAccountant,
    compute_delta,
    compute_epsilon,
    make_accountant,
)
from dp.events import DistributedDiscreteGaussianDpEvent
from secagg.cli import main
from secagg.errors import InvalidParameterError, SecAggError

G = dp_accounting.GaussianDpEvent
PS = dp_accounting.PoissonSampledDpEvent
SC = dp_accounting.SelfComposedDpEvent

#: What a call may allocate (traced by tracemalloc, numpy included).
MEMORY_LIMIT = 400 * 2**20

ADVERSARIAL: list[tuple[str, dp_accounting.DpEvent]] = [
    ("tiny z, sampled", SC(PS(0.5, G(1e-3)), 30)),
    ("tiny z, full participation", SC(G(1e-3), 30)),
    ("tiny z, one round", G(1e-4)),
    ("huge z", SC(PS(0.5, G(1e6)), 30)),
    ("huge T, sampled", SC(PS(1e-3, G(5.0)), 10**12)),
    ("huge T, full participation", SC(G(1.0), 10**12)),
    ("tiny q", SC(PS(1e-300, G(1.0)), 10)),
    ("small z, long run", SC(PS(0.5, G(0.5)), 10**6)),
    ("tiny Laplace", SC(dp_accounting.LaplaceDpEvent(1e-4), 3)),
    (
        "many distinct events",
        dp_accounting.ComposedDpEvent([PS(0.01, G(1.0 + i / 1000)) for i in range(20)]),
    ),
]


def _measured(call: Callable[[], float]) -> tuple[float | SecAggError, int]:
    tracemalloc.start()
    try:
        try:
            result: float | SecAggError = call()
        except SecAggError as exc:
            result = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.timeout(120)
@pytest.mark.parametrize("accountant", ["pld", "rdp", "prv"])
@pytest.mark.parametrize(("name", "event"), ADVERSARIAL, ids=[n for n, _ in ADVERSARIAL])
def test_adversarial_inputs_finish_or_are_refused_within_memory(
    accountant: str, name: str, event: dp_accounting.DpEvent
) -> None:
    result, peak = _measured(lambda: compute_epsilon(event, 1e-5, accountant=accountant))
    assert peak < MEMORY_LIMIT, f"{name}: {peak / 2**20:.0f} MB"
    if isinstance(result, SecAggError):
        assert str(result).strip(), f"{name}: empty message"
        assert isinstance(result, (InvalidParameterError, dp_accounting.UnsupportedEventError)) or (
            type(result).__name__ == "UnsupportedEventError"
        )
    else:
        assert result >= 0.0 and not math.isnan(result)


def test_tiny_noise_is_refused_by_pld_before_allocating_with_a_useful_message() -> None:
    event = SC(PS(0.5, G(1e-3)), 30)
    result, peak = _measured(
        lambda: compute_epsilon(event, 1e-5, accountant="pld", pld_discretization=1e-4)
    )
    assert isinstance(result, AccountantLimitError)
    message = str(result)
    assert "noise multiplier 0.001" in message and "0.0001" in message
    assert "GB" in message and "rdp" in message
    assert peak < 10 * 2**20  # refused from the sizes alone
    # the RDP accountant answers the same question
    assert math.isfinite(compute_epsilon(event, 1e-5, accountant="rdp"))


def test_pld_refusal_threshold_is_the_memory_bound() -> None:
    # A sensible run is well inside the bound ...
    assert compute_epsilon(SC(PS(0.01, G(1.0)), 1000), 1e-5) == pytest.approx(1.83, abs=0.01)
    # ... and the bound itself is a few hundred MB.
    assert 100 * 2**20 <= MAX_ACCOUNTANT_MEMORY <= MEMORY_LIMIT


def test_prv_validates_its_inputs() -> None:
    with pytest.raises(InvalidParameterError, match=r"\[0, 1\]"):
        compute_epsilon(PS(1.5, G(1.0)), 1e-5, accountant="prv")
    with pytest.raises(InvalidParameterError, match="finite"):
        compute_epsilon(G(math.inf), 1e-5, accountant="prv")
    with pytest.raises(InvalidParameterError, match=">= 0"):
        compute_epsilon(G(-1.0), 1e-5, accountant="prv")
    acc = PrvAccountant()
    with pytest.raises(InvalidParameterError, match=r"\[0, 1\]"):
        acc.compose(PS(1.5, G(1.0)))
    acc.compose(PS(0.1, G(1.0)), 10)
    for delta in (0.0, 1.0, -1.0):
        with pytest.raises(InvalidParameterError, match="delta"):
            acc.get_epsilon(delta)
    with pytest.raises(AccountantLimitError, match="pld"):
        compute_epsilon(SC(PS(0.01, G(1.0)), 10**9), 1e-5, accountant="prv")


@pytest.mark.parametrize("accountant", ["pld", "rdp", "prv"])
def test_zero_and_bad_counts_have_a_clear_message(accountant: str) -> None:
    with pytest.raises(InvalidParameterError, match="count must be an integer >= 1"):
        compute_epsilon(SC(G(1.0), 0), 1e-5, accountant=accountant)
    with pytest.raises(InvalidParameterError, match="count must be an integer >= 1"):
        make_accountant(accountant).compose(G(1.0), 0)
    with pytest.raises(InvalidParameterError, match="integer"):
        compute_epsilon(SC(G(1.0), 1.5), 1e-5, accountant=accountant)  # type: ignore[arg-type]


@pytest.mark.parametrize("accountant", ["pld", "rdp", "prv"])
@pytest.mark.parametrize("z", [math.nan, math.inf, -1.0])
def test_non_finite_or_negative_noise_is_refused_everywhere(accountant: str, z: float) -> None:
    with pytest.raises(InvalidParameterError, match="noise_multiplier"):
        compute_epsilon(PS(0.1, G(z)), 1e-5, accountant=accountant)
    with pytest.raises(InvalidParameterError, match="noise_multiplier"):
        compute_delta(G(z), 1.0, accountant=accountant)


def test_rdp_orders_are_bounded() -> None:
    with pytest.raises(AccountantLimitError, match="orders"):
        compute_epsilon(G(1.0), 1e-5, accountant="rdp", rdp_orders=[2.0, 1e9])
    with pytest.raises(AccountantLimitError, match="orders"):
        compute_epsilon(G(1.0), 1e-5, accountant="rdp", rdp_orders=list(range(2, 10_000)))


def test_distributed_event_with_many_rounds_stays_bounded() -> None:
    ddg = DistributedDiscreteGaussianDpEvent(100.0, 1000.0, 50.0, 40, 1024)
    result, peak = _measured(
        lambda: compute_epsilon(SC(PS(0.5, ddg), 10**9), 1e-5, accountant="rdp")
    )
    assert peak < MEMORY_LIMIT
    assert isinstance(result, float)


@pytest.mark.timeout(120)
def test_cli_refuses_tiny_noise_with_a_typed_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "audit",
            "--noise-multiplier",
            "1e-3",
            "--sampling-rate",
            "0.5",
            "--rounds",
            "30",
            "--delta",
            "1e-5",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert "AccountantLimitError" in err and "rdp" in err
