"""Scripted malicious servers against the real clients: every attack succeeds against the
unhardened baseline and fails, with a typed refusal and nothing recovered, against the
hardened configuration."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import InvalidParameterError
from threat_models.attacks.protocol_level import (
    Configuration,
    ProtocolAttack,
    run_paillier_attack,
    run_protocol_attack,
)

MASKING_ATTACKS = [a for a in ProtocolAttack if a is not ProtocolAttack.PAILLIER_SINGLE_DECRYPTION]
EXPECTED_REFUSAL = {
    ProtocolAttack.BOTH_LISTS: "ProtocolAbortError",
    ProtocolAttack.FAKE_DROPOUTS: "ProtocolAbortError",
    ProtocolAttack.KEY_SUBSTITUTION: "AuthenticationError",
    ProtocolAttack.REPLAYED_KEYS: "AuthenticationError",
    ProtocolAttack.SPLIT_VIEW: "ThresholdNotMetError",
}


@pytest.fixture(scope="module")
def updates() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(7)
    return {cid: rng.normal(0.0, 0.2, 24) for cid in range(1, 9)}


@pytest.mark.parametrize("attack", MASKING_ATTACKS, ids=lambda a: a.name.lower())
def test_positive_control_against_the_unhardened_baseline(
    attack: ProtocolAttack, updates: dict[int, np.ndarray]
) -> None:
    outcome = run_protocol_attack(attack, Configuration.UNHARDENED, updates, victim=4)
    assert outcome.succeeded and outcome.positive_control
    assert outcome.recovered is not None
    assert np.max(np.abs(outcome.recovered - updates[4])) <= outcome.tolerance
    # the estimate is the victim's own update, not the sum or another client's
    assert np.max(np.abs(outcome.recovered - updates[5])) > 100 * outcome.tolerance


@pytest.mark.parametrize("attack", MASKING_ATTACKS, ids=lambda a: a.name.lower())
def test_attack_fails_against_the_hardened_protocol(
    attack: ProtocolAttack, updates: dict[int, np.ndarray]
) -> None:
    outcome = run_protocol_attack(attack, Configuration.HARDENED, updates, victim=4)
    assert not outcome.succeeded
    assert outcome.recovered is None and outcome.error == float("inf")
    assert EXPECTED_REFUSAL[attack] in outcome.refusal.split(",")


def test_paillier_single_ciphertext_decryption(updates: dict[int, np.ndarray]) -> None:
    small = {c: updates[c] for c in range(1, 7)}
    baseline = run_paillier_attack(Configuration.UNHARDENED, small, victim=2)
    assert baseline.succeeded and baseline.recovered is not None
    assert np.max(np.abs(baseline.recovered - small[2])) <= baseline.tolerance
    hardened = run_paillier_attack(Configuration.HARDENED, small, victim=2)
    assert not hardened.succeeded and hardened.recovered is None
    assert "ProtocolAbortError" in hardened.refusal


def test_arguments_are_checked(updates: dict[int, np.ndarray]) -> None:
    with pytest.raises(InvalidParameterError):
        run_protocol_attack(
            ProtocolAttack.PAILLIER_SINGLE_DECRYPTION, Configuration.HARDENED, updates, victim=1
        )
    with pytest.raises(InvalidParameterError):
        run_protocol_attack(ProtocolAttack.BOTH_LISTS, Configuration.HARDENED, updates, victim=99)
    with pytest.raises(InvalidParameterError):
        run_protocol_attack(
            ProtocolAttack.BOTH_LISTS,
            Configuration.HARDENED,
            {1: updates[1], 2: updates[2]},
            victim=1,
        )


def test_the_consistency_quorum_stops_the_split_view_even_at_a_low_threshold(
    updates: dict[int, np.ndarray],
) -> None:
    """At the baseline's curious-server threshold, the consistency check alone decides."""
    from dataclasses import replace

    from protocols import Hardening
    from threat_models.attacks.protocol_level import _attack_split_view, _configuration, _setup

    _, weak, _ = _configuration(ProtocolAttack.SPLIT_VIEW, Configuration.UNHARDENED, len(updates))
    assert weak.threshold < weak.consistency_quorum
    recovered, refusal, _ = _attack_split_view(
        _setup(updates, 4, hardening=Hardening(), parameters=weak)
    )
    assert recovered is None and refusal == "ThresholdNotMetError"
    recovered, refusal, _ = _attack_split_view(
        _setup(updates, 4, hardening=replace(Hardening(), consistency_check=False), parameters=weak)
    )
    assert recovered is not None and refusal == ""
    assert np.max(np.abs(recovered - updates[4])) <= 1e-6


def test_substituted_keys_are_refused_at_the_key_broadcast(updates: dict[int, np.ndarray]) -> None:
    for attack in (ProtocolAttack.KEY_SUBSTITUTION, ProtocolAttack.REPLAYED_KEYS):
        outcome = run_protocol_attack(attack, Configuration.HARDENED, updates, victim=4)
        assert outcome.refusal == "AuthenticationError"
        assert "rejected the substituted keys" in outcome.note
