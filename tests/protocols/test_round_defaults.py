"""The default encoder and the weight checks shared by the in-process drivers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocols import simulate
from protocols.inputs import client_weights, default_encoder, weight_encoder
from secagg.errors import InvalidParameterError


def test_default_encoder_covers_the_inputs_with_a_power_of_two_bound() -> None:
    encoder = default_encoder([np.array([0.3, -2.5]), np.array([1.0, 0.0])], bits=24, max_clients=3)
    assert encoder.bits == 24
    assert encoder.max_clients >= 3
    assert (encoder.lo, encoder.hi) == (-4.0, 4.0)


def test_default_encoder_of_zero_inputs_is_the_unit_interval() -> None:
    encoder = default_encoder([np.zeros(3)], bits=16, max_clients=2)
    assert (encoder.lo, encoder.hi) == (-1.0, 1.0)


def test_client_weights_accepts_zero_and_returns_floats() -> None:
    assert client_weights({1: 2, 2: 0}, [1, 2]) == {1: 2.0, 2: 0.0}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({1: 1.0}, "no weight for client 2"),
        ({1: 1.0, 2: -1.0}, "finite and non-negative"),
        ({1: 1.0, 2: math.nan}, "finite and non-negative"),
        ({1: 1.0, 2: math.inf}, "finite and non-negative"),
        ({1: 1.0, 2: "heavy"}, "finite and non-negative"),
    ],
)
def test_client_weights_refuses(weights: dict[int, object], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        client_weights(weights, [1, 2])  # type: ignore[arg-type]


def test_weight_encoder_bound_defaults_to_a_power_of_two_and_refuses_a_larger_weight() -> None:
    assert weight_encoder({1: 3.0, 2: 1.0}, max_weight=None, bits=20, max_clients=2).hi == 4.0
    with pytest.raises(InvalidParameterError, match="exceeds max_weight"):
        weight_encoder({1: 3.0}, max_weight=2.0, bits=20, max_clients=1)


@pytest.mark.parametrize("protocol", ["secagg", "paillier"])
def test_both_drivers_refuse_a_negative_weight_with_the_same_message(protocol: str) -> None:
    updates = {1: np.ones(2), 2: np.ones(2), 3: np.ones(2)}
    with pytest.raises(
        InvalidParameterError, match=r"weights must be finite and non-negative, got -1\.0"
    ):
        if protocol == "paillier":
            simulate(updates, protocol="paillier", weights={1: 1.0, 2: 1.0, 3: -1.0})
        else:
            simulate(updates, protocol=protocol, weights={1: 1.0, 2: 1.0, 3: -1.0})
