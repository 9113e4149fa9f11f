"""Paillier parameters from a threat model: hand-checkable thresholds and refusals."""

from __future__ import annotations

import itertools

import pytest

from secagg.errors import InfeasibleThreatModelError, InvalidParameterError
from threat_models.model import ServerClass, ThreatModel
from threat_models.paillier import minimum_decryption_threshold, paillier_parameters


@pytest.mark.parametrize(
    "server, committee, c, expected",
    [
        (ServerClass.CURIOUS, 5, 0, 2),
        (ServerClass.CURIOUS, 5, 3, 4),
        (ServerClass.SEMI_MALICIOUS, 5, 0, 3),
        (ServerClass.MALICIOUS, 5, 1, 4),
        (ServerClass.MALICIOUS, 10, 2, 7),
        (ServerClass.MALICIOUS, 7, 0, 4),
    ],
)
def test_minimum_threshold_hand_cases(
    server: ServerClass, committee: int, c: int, expected: int
) -> None:
    assert minimum_decryption_threshold(server, committee, c) == expected


def _safe(server: ServerClass, committee: int, colluding: int, t: int) -> bool:
    return (
        t >= 2
        and t > colluding
        and (server is ServerClass.CURIOUS or 2 * t - committee > colluding)
    )


def test_threshold_is_the_smallest_safe_one() -> None:
    # brute force: smallest t with t > c and, unless curious, any two t-quorums of l
    # decryptors share an honest member (2t - l > c)
    for server, committee in itertools.product(ServerClass, range(2, 13)):
        for c in range(committee):
            smallest = min(t for t in range(2, 2 * committee + 2) if _safe(server, committee, c, t))
            assert minimum_decryption_threshold(server, committee, c) == smallest


def test_default_malicious_parameters() -> None:
    p = paillier_parameters(20, ThreatModel())  # gamma 0.05, delta 0.1
    assert (p.n_decryptors, p.colluding_decryptors, p.dropped_decryptors) == (20, 1, 2)
    assert p.threshold == 11  # floor((20 + 1) / 2) + 1
    assert p.min_aggregate_size == 3  # C + 2
    assert p.signed_contributions and p.plaintext_proofs and p.decryption_proofs
    assert p.max_clients == 20


def test_committee_and_server_classes() -> None:
    curious = paillier_parameters(50, ThreatModel(server=ServerClass.CURIOUS), n_decryptors=5)
    assert (
        curious.threshold == 2
        and not curious.signed_contributions
        and not curious.decryption_proofs
    )
    semi = paillier_parameters(
        50,
        ThreatModel(server=ServerClass.SEMI_MALICIOUS),
        n_decryptors=5,
        decryptor_colluding_fraction=0.2,
    )
    assert semi.threshold == 4 and semi.signed_contributions and semi.plaintext_proofs
    # colluding decryptors may deviate, so their partial decryptions are proven (robustness)
    assert semi.decryption_proofs


def test_infeasible_combinations_name_the_bound() -> None:
    with pytest.raises(InfeasibleThreatModelError, match="decryptors left"):
        # l = 5, c = 1 -> t = 4, but 0.4 * 5 = 2 decryptors may drop
        paillier_parameters(
            50, ThreatModel(dropout_fraction=0.4), n_decryptors=5, decryptor_colluding_fraction=0.2
        )
    with pytest.raises(InfeasibleThreatModelError, match="min_aggregate_size"):
        paillier_parameters(10, ThreatModel(colluding_fraction=0.3, min_aggregate_size=3))
    with pytest.raises(InfeasibleThreatModelError, match="expected to upload"):
        paillier_parameters(
            10,
            ThreatModel(dropout_fraction=0.5, min_aggregate_size=7),
            n_decryptors=3,
            decryptor_dropout_fraction=0.0,
        )


def test_argument_checks() -> None:
    with pytest.raises(InvalidParameterError):
        paillier_parameters(1, ThreatModel())
    with pytest.raises(InvalidParameterError):
        paillier_parameters(10, ThreatModel(), n_decryptors=1)
    with pytest.raises(InvalidParameterError):
        paillier_parameters(10, ThreatModel(), decryptor_colluding_fraction=1.0)
    with pytest.raises(InvalidParameterError):  # the packing must hold the whole cohort
        paillier_parameters(10, ThreatModel(), max_clients=7)
    with pytest.raises(InvalidParameterError):
        paillier_parameters(10, "malicious")  # type: ignore[arg-type]
