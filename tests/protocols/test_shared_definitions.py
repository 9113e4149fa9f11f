"""Concepts the protocol modules share are defined once and enforced the same everywhere."""

from __future__ import annotations

import pytest

import protocols.framing
import protocols.inputs
import protocols.masking.client
import protocols.masking.driver
import protocols.masking.graph
import protocols.masking.messages
import protocols.paillier
import protocols.parties
import protocols.stages
from protocols.masking.graph import MAX_CLIENT_ID, complete_graph
from protocols.masking.messages import UnmaskRequest
from secagg.errors import InvalidParameterError, MessageError


def test_one_client_id_bound() -> None:
    assert MAX_CLIENT_ID == (1 << 63) - 1
    assert protocols.masking.messages.MAX_CLIENT_ID is protocols.masking.graph.MAX_CLIENT_ID
    assert protocols.masking.client.MAX_CLIENT_ID is protocols.masking.graph.MAX_CLIENT_ID


def test_shared_concepts_live_in_the_shared_modules() -> None:
    assert protocols.masking.graph.MAX_CLIENT_ID is protocols.parties.MAX_CLIENT_ID
    assert protocols.masking.messages.Stage is protocols.stages.Stage
    assert protocols.masking.messages.frame is protocols.framing.frame
    assert protocols.masking.messages.unframe is protocols.framing.unframe


def test_wire_and_graph_accept_the_bound_and_refuse_one_past_it() -> None:
    request = UnmaskRequest(round_id=1, recipient=1, survivors=(1, MAX_CLIENT_ID), dropped=())
    assert request.survivors == (1, MAX_CLIENT_ID)
    with pytest.raises(MessageError):
        UnmaskRequest(round_id=1, recipient=1, survivors=(1, MAX_CLIENT_ID + 1), dropped=())
    with pytest.raises(MessageError):
        UnmaskRequest(round_id=1, recipient=MAX_CLIENT_ID + 1, survivors=(1,), dropped=())
    assert MAX_CLIENT_ID in complete_graph([1, MAX_CLIENT_ID]).nodes
    with pytest.raises(InvalidParameterError):
        complete_graph([1, MAX_CLIENT_ID + 1])


def test_flower_pki_uses_the_same_bound() -> None:
    pytest.importorskip("flwr")
    from protocols.flower.pki import CLIENT_ID_KEY, node_client_id

    assert node_client_id({CLIENT_ID_KEY: MAX_CLIENT_ID}) == MAX_CLIENT_ID
    with pytest.raises(InvalidParameterError):
        node_client_id({CLIENT_ID_KEY: MAX_CLIENT_ID + 1})


@pytest.mark.parametrize(
    ("x", "expected"), [(-1.0, 1.0), (0.0, 1.0), (0.3, 0.5), (1.0, 1.0), (3.0, 4.0), (4.0, 4.0)]
)
def test_pow2_ceiling(x: float, expected: float) -> None:
    assert protocols.inputs.pow2_ceiling(x) == expected


def test_paillier_driver_shares_the_default_encoder_and_weight_rules() -> None:
    assert protocols.paillier.default_encoder is protocols.inputs.default_encoder
    assert protocols.paillier.client_weights is protocols.inputs.client_weights
    assert protocols.paillier.weight_encoder is protocols.inputs.weight_encoder
