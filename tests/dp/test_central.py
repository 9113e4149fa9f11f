"""Central Gaussian mechanism: noise level, events, structures, validation."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
import torch
from scipy import stats

from dp.central import CentralGaussianMechanism
from secagg.errors import EncodingError, InvalidParameterError


def test_noise_has_the_declared_stddev_and_event() -> None:
    mech = CentralGaussianMechanism(noise_multiplier=1.3, clip_norm=0.7)
    aggregate = np.linspace(-5, 5, 200_000)
    released = mech.add_noise(aggregate, seed=bytes(range(32)))
    noise = released.value - aggregate
    assert released.noise_stddev == pytest.approx(1.3 * 0.7)
    assert float(noise.std()) == pytest.approx(1.3 * 0.7, rel=5 * math.sqrt(0.5 / noise.size))
    assert abs(float(noise.mean())) < 5 * 0.91 / math.sqrt(noise.size)
    assert stats.kstest(noise / 0.91, "norm").pvalue > 1e-4
    assert isinstance(released.event, dp_accounting.GaussianDpEvent)
    assert released.event.noise_multiplier == pytest.approx(1.3)
    # the input is untouched
    assert np.array_equal(aggregate, np.linspace(-5, 5, 200_000))


def test_event_is_accountable() -> None:
    """The event is dp-accounting's own: its accountant turns it into an epsilon."""
    event = CentralGaussianMechanism(noise_multiplier=2.0, clip_norm=1.0).event
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(event, 10)
    reference = dp_accounting.rdp.RdpAccountant()
    reference.compose(dp_accounting.GaussianDpEvent(2.0), 10)
    assert accountant.get_epsilon(1e-5) == pytest.approx(reference.get_epsilon(1e-5))


def test_structured_aggregates_keep_their_structure() -> None:
    mech = CentralGaussianMechanism(noise_multiplier=0.5, clip_norm=2.0)
    agg = {"w": torch.zeros(3, 4), "b": torch.zeros(4, dtype=torch.float64)}
    released = mech.add_noise(agg)
    assert set(released.value) == {"w", "b"}
    assert released.value["w"].shape == (3, 4) and released.value["w"].dtype == torch.float32
    assert released.value["b"].dtype == torch.float64
    assert float(released.value["w"].abs().sum()) > 0


def test_zero_noise_is_exact_and_non_private() -> None:
    mech = CentralGaussianMechanism(noise_multiplier=0.0, clip_norm=1.0)
    x = np.arange(10.0)
    released = mech.add_noise(x)
    assert np.array_equal(released.value, x)
    assert isinstance(released.event, dp_accounting.NonPrivateDpEvent)


@pytest.mark.parametrize(
    ("z", "c"), [(-1.0, 1.0), (1.0, 0.0), (float("nan"), 1.0), (1.0, float("inf")), (True, 1.0)]
)
def test_bad_parameters(z: float, c: float) -> None:
    with pytest.raises(InvalidParameterError):
        CentralGaussianMechanism(noise_multiplier=z, clip_norm=c)


def test_bad_aggregate() -> None:
    mech = CentralGaussianMechanism(noise_multiplier=1.0, clip_norm=1.0)
    with pytest.raises(EncodingError):
        mech.add_noise(np.array([1.0, np.inf]))
