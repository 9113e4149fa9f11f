"""ThreatModel: validation and the derived counts."""

from __future__ import annotations

import dataclasses

import pytest

from secagg.errors import InvalidParameterError
from threat_models import ServerClass, ThreatModel


def test_defaults_are_secure() -> None:
    tm = ThreatModel()
    assert tm.server is ServerClass.MALICIOUS
    assert tm.server.needs_authentication and tm.server.lies_about_dropouts
    assert not ServerClass.CURIOUS.lies_about_dropouts
    assert not ServerClass.SEMI_MALICIOUS.needs_authentication
    assert (tm.security_bits, tm.correctness_bits) == (40, 20)


def test_counts_round_up() -> None:
    tm = ThreatModel(colluding_fraction=0.1, dropout_fraction=0.25)
    assert tm.max_colluders(30) == 3  # 0.1 * 30 is 3.0000000000000004 in floats
    assert tm.max_colluders(31) == 4
    assert tm.max_dropouts(8) == 2
    assert ThreatModel(colluding_fraction=0.0).max_colluders(1000) == 0
    assert ThreatModel(colluding_fraction=0.001).max_colluders(10) == 1
    assert tm.effective_min_aggregate_size(30) == 5
    assert ThreatModel(min_aggregate_size=7).effective_min_aggregate_size(30) == 7


def test_server_class_from_string() -> None:
    assert ThreatModel(server="curious").server is ServerClass.CURIOUS  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server": "evil"},
        {"colluding_fraction": 1.0},
        {"colluding_fraction": -0.1},
        {"dropout_fraction": float("nan")},
        {"dropout_fraction": True},
        {"min_aggregate_size": 1},
        {"min_aggregate_size": 2.5},
        {"security_bits": 0},
        {"correctness_bits": 200},
    ],
)
def test_invalid_fields(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        ThreatModel(**kwargs)  # type: ignore[arg-type]


def test_frozen_and_cohort_checked() -> None:
    tm = ThreatModel()
    with pytest.raises(dataclasses.FrozenInstanceError):
        tm.colluding_fraction = 0.5  # type: ignore[misc]
    with pytest.raises(InvalidParameterError):
        tm.max_colluders(0)
