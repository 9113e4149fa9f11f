"""The protocol cell's added rows: the sparse graph, a dropout and the review's attack classes,
each measured against its weakened configuration (must succeed) and the defaults (must not)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from threat_models.attacks import lying_server as ls
from threat_models.attacks import protocol_level as pl
from threat_models.attacks import quorum_attacks as qa
from threat_models.parameters import GraphKind

pytest.importorskip("torch")

from threat_models.evaluation.context import EvaluationConfig, EvaluationContext  # noqa: E402
from threat_models.evaluation.protocol_cells import cell_protocol_attacks  # noqa: E402


def _updates(n: int, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.normal(size=24) for c in range(1, n + 1)}


MASKING = [a for a in pl.ProtocolAttack if a is not pl.ProtocolAttack.PAILLIER_SINGLE_DECRYPTION]


@pytest.mark.parametrize("attack", MASKING, ids=lambda a: a.name)
@pytest.mark.parametrize(
    ("graph", "dropouts"), [(GraphKind.HARARY, ()), (GraphKind.COMPLETE, (12,))]
)
def test_masking_attacks_on_the_sparse_graph_and_with_a_dropout(
    attack: pl.ProtocolAttack, graph: GraphKind, dropouts: tuple[int, ...]
) -> None:
    updates = _updates(12)
    weak = pl.run_protocol_attack(
        attack, pl.Configuration.UNHARDENED, updates, victim=3, graph=graph, dropouts=dropouts
    )
    strong = pl.run_protocol_attack(
        attack, pl.Configuration.HARDENED, updates, victim=3, graph=graph, dropouts=dropouts
    )
    assert weak.succeeded and weak.error <= weak.tolerance
    assert not strong.succeeded and strong.refusal


def test_the_victim_cannot_drop_out() -> None:
    with pytest.raises(Exception, match="victim"):
        pl.run_protocol_attack(
            pl.ProtocolAttack.BOTH_LISTS,
            pl.Configuration.HARDENED,
            _updates(12),
            victim=3,
            dropouts=(3,),
        )


@pytest.mark.parametrize("graph", [GraphKind.COMPLETE, GraphKind.HARARY])
def test_partner_keys_scenario(graph: GraphKind) -> None:
    updates = _updates(16)
    assert ls.partner_keys_scenario(updates, 3, weakened=True, graph=graph).succeeded
    out = ls.partner_keys_scenario(updates, 3, weakened=False, graph=graph)
    assert not out.succeeded and out.refusals and out.recovered is None


@pytest.mark.parametrize("graph", [GraphKind.COMPLETE, GraphKind.HARARY])
def test_padded_survivors_scenario(graph: GraphKind) -> None:
    updates = _updates(16)
    weak = ls.padded_survivors_scenario(updates, weakened=True, graph=graph)
    assert weak.succeeded and weak.summands == 11
    out = ls.padded_survivors_scenario(updates, weakened=False, graph=graph)
    assert not out.succeeded and out.refusals


def test_component_graph_scenario() -> None:
    updates = _updates(16)
    weak = ls.component_graph_scenario(updates, weakened=True)
    assert weak.succeeded and weak.summands == 8
    out = ls.component_graph_scenario(updates, weakened=False)
    assert not out.succeeded and "MessageError" in out.refusals


def test_colluders_beyond_the_fraction_read_the_victim_under_every_check() -> None:
    out = ls.colluders_scenario(_updates(16), 3, weakened=False, beyond=True)
    assert out.succeeded and not out.refusals


def test_the_measure_catches_a_wrong_estimate() -> None:
    # the verdict is measured: an estimate off by more than the tolerance is not a success
    updates = _updates(16)
    weak = ls.partner_keys_scenario(updates, 3, weakened=True)
    assert weak.recovered is not None
    shifted = dataclasses.replace(weak, recovered=weak.recovered + 1.0)
    assert shifted.recovered is not None
    assert np.max(np.abs(shifted.recovered - updates[3])) > weak.tolerance


def test_cell_rows_meet_their_expectations() -> None:
    out = cell_protocol_attacks(EvaluationContext(EvaluationConfig(quick=True)))
    assert all(r.as_expected for r in out.rows)
    controls = [r for r in out.rows if r.positive_control]
    defended = [r for r in out.rows if r.expected is False]
    assert len(controls) >= 20 and len(defended) >= 20
    assert any("Harary" in r.setting for r in out.rows)
    assert any("drops out" in r.setting for r in out.rows)
    assert any(r.expected is True and not r.positive_control for r in out.rows)
    attacks = {r.attack for r in out.rows}
    assert any("round id reused" in a for a in attacks)
    assert any("two decryption quorums" in a for a in attacks)


def test_round_reuse_attack() -> None:
    updates = _updates(16)
    weak = qa.round_reuse_attack(updates, 3, weakened=True)
    assert weak.succeeded and weak.error <= weak.tolerance
    out = qa.round_reuse_attack(updates, 3, weakened=False)
    assert not out.succeeded and "ReplayError" in out.refusals


def test_paillier_quorum_split() -> None:
    rng = np.random.default_rng(1)
    updates = {c: rng.uniform(-1.0, 1.0, 8) for c in range(1, 31)}
    weak = qa.paillier_quorum_split(updates, 1, weakened=True)
    assert weak.succeeded and weak.error <= weak.tolerance
    out = qa.paillier_quorum_split(updates, 1, weakened=False)
    assert not out.succeeded
    assert {"AlreadyFinalizedError", "ThresholdNotMetError"} <= set(out.refusals)
