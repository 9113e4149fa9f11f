"""``protocols.simulate``: options, encoders, weights, errors; server-side checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from protocols import (
    Hardening,
    MaskedInput,
    RevealedShare,
    SecAggServer,
    SimulationResult,
    Stage,
    UnmaskResponse,
    setup_round,
    simulate,
)
from secagg.errors import (
    AlreadyFinalizedError,
    CapacityError,
    InfeasibleThreatModelError,
    InvalidParameterError,
    ProtocolAbortError,
    ReplayError,
    StageError,
    ThresholdNotMetError,
)
from secagg.primitives.encoding import FixedPointEncoder, from_ring_centered, to_ring
from secagg.primitives.shamir import Share
from threat_models import ServerClass, ThreatModel, check_parameters

CURIOUS = ThreatModel(server=ServerClass.CURIOUS)


def _updates(n: int = 6, d: int = 30, seed: int = 0) -> dict[int, npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return {cid: rng.uniform(-2.0, 2.0, d) for cid in range(1, n + 1)}


def test_result_shape_and_view() -> None:
    updates = _updates()
    result = simulate(updates, dropouts={"share_keys": [4]})
    assert isinstance(result, SimulationResult)
    assert result.protocol == "secagg+"
    assert result.survivors == (1, 2, 3, 5, 6) and result.dropped == (4,)
    assert result.aggregate.dtype == np.float64 and result.aggregate.shape == (30,)
    assert np.allclose(result.aggregate, sum(updates[c] for c in result.survivors), atol=1e-6)
    assert np.allclose(result.mean, result.aggregate / 5)
    assert result.weight_sum is None
    assert result.details["stages"] == tuple(s.value for s in Stage)
    # the view is in arrival order, stage by stage, and has no masked input from client 4
    stages = [m.STAGE.position for m in result.server_view]
    assert stages == sorted(stages)
    assert {m.sender for m in result.server_view if isinstance(m, MaskedInput)} == {1, 2, 3, 5, 6}


def test_weighted_mean_reveals_only_the_sum_of_weights() -> None:
    updates = _updates()
    weights = {cid: float(10 * cid) for cid in updates}
    result = simulate(updates, weights=weights, dropouts={"masked_input": [2]})
    survivors = result.survivors
    assert result.weight_sum is not None
    assert result.weight_sum == pytest.approx(sum(weights[c] for c in survivors), abs=1e-4)
    expected = sum(weights[c] * updates[c] for c in survivors) / sum(weights[c] for c in survivors)
    assert np.allclose(result.mean, expected, atol=1e-5)
    # the weight travels masked inside the vector: one extra element, never in clear
    masked = [m for m in result.server_view if isinstance(m, MaskedInput)]
    assert all(m.words.shape == (31,) for m in masked)


def test_weights_must_be_complete_and_bounded() -> None:
    updates = _updates()
    with pytest.raises(InvalidParameterError):
        simulate(updates, weights={1: 1.0})
    with pytest.raises(InvalidParameterError):
        simulate(updates, weights=dict.fromkeys(updates, -1.0))
    with pytest.raises(InvalidParameterError):
        simulate(updates, weights=dict.fromkeys(updates, 3.0), max_weight=2.0)


@dataclass(frozen=True)
class PaddingIntegerEncoder:
    """A VectorEncoder whose encoding is longer than its input (like a rotation to 2^m)."""

    bits: int
    max_clients: int
    scale: float = 1000.0

    def encoded_length(self, d: int) -> int:
        return 1 << (d - 1).bit_length()

    def encode(self, values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        x = np.asarray(values, dtype=np.float64)
        padded = np.zeros(self.encoded_length(x.size))
        padded[: x.size] = x
        return to_ring(np.round(padded * self.scale).astype(np.int64), self.bits)

    def decode_sum(self, summed: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
        return from_ring_centered(summed, self.bits).astype(np.float64) / self.scale


def test_any_vector_encoder_plugs_in() -> None:
    updates = _updates(d=20)
    encoder = PaddingIntegerEncoder(bits=40, max_clients=6)
    result = simulate(updates, encoder=encoder, dropouts={"unmasking": [3]})
    assert result.aggregate.shape == (32,)  # this encoder decodes to its padded length
    expected = sum(np.round(updates[c] * 1000) for c in result.survivors) / 1000
    assert np.allclose(result.aggregate[:20], expected, atol=1e-9)
    assert np.all(result.aggregate[20:] == 0)
    masked = [m for m in result.server_view if isinstance(m, MaskedInput)]
    assert all(m.bits == 40 and m.words.dtype == np.uint64 for m in masked)


def test_custom_fixed_point_encoder_and_capacity() -> None:
    updates = _updates()
    encoder = FixedPointEncoder.symmetric(4.0, bits=20, max_clients=6)
    result = simulate(updates, encoder=encoder)
    assert np.max(np.abs(result.aggregate - sum(updates.values()))) <= 6 * encoder.quantum
    with pytest.raises(CapacityError):
        simulate(updates, encoder=FixedPointEncoder.symmetric(4.0, bits=20, max_clients=5))


def test_seed_reproduces_simulation_randomness_only() -> None:
    updates = _updates()
    a = simulate(updates, seed=3, protocol="secagg", threat_model=CURIOUS)
    b = simulate(updates, seed=3, protocol="secagg", threat_model=CURIOUS)
    assert np.array_equal(a.aggregate, b.aggregate)  # same stochastic rounding
    ya = [m.words for m in a.server_view if isinstance(m, MaskedInput)]
    yb = [m.words for m in b.server_view if isinstance(m, MaskedInput)]
    assert not any(np.array_equal(x, y) for x, y in zip(ya, yb, strict=True))  # fresh masks


def test_wire_off_and_no_view() -> None:
    updates = _updates()
    result = simulate(
        updates, wire=False, record_view=False, protocol="secagg", threat_model=CURIOUS
    )
    assert result.server_view == ()
    assert np.allclose(result.aggregate, sum(updates.values()), atol=1e-6)


def test_explicit_parameters_and_unhardened_option() -> None:
    updates = _updates(n=7)
    params = check_parameters(7, 4, 3, CURIOUS)
    result = simulate(
        updates, parameters=params, hardening=Hardening.unhardened(), dropouts={"masked_input": [1]}
    )
    assert result.details["degree"] == 4 and result.details["threshold"] == 3
    assert np.allclose(result.aggregate, sum(updates[c] for c in result.survivors), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "nope"},
        {"dropouts": {"no_such_stage": [1]}},
        {"dropouts": {"masked_input": [99]}},
        {"dropouts": {"masked_input": [1], "unmasking": [1]}},
        {"dropouts": {"consistency_check": [1]}, "threat_model": CURIOUS},
        {"unknown_option": 1},
        {"round_id": -1},
    ],
)
def test_invalid_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        simulate(_updates(), **kwargs)  # type: ignore[arg-type]


def test_invalid_updates() -> None:
    with pytest.raises(InvalidParameterError):
        simulate({})
    with pytest.raises(InvalidParameterError):
        simulate({0: np.zeros(3), "a": np.zeros(3), 2: np.zeros(3)})
    with pytest.raises(InvalidParameterError):
        simulate({-1: np.zeros(3), 1: np.zeros(3), 2: np.zeros(3)})
    with pytest.raises(InvalidParameterError):
        simulate({1: np.zeros(3), 2: np.zeros(4), 3: np.zeros(3)})
    with pytest.raises(InfeasibleThreatModelError):
        simulate({1: np.zeros(3), 2: np.zeros(3)})


def test_too_few_survivors_aborts() -> None:
    with pytest.raises(ThresholdNotMetError):
        simulate(_updates(), dropouts={"masked_input": [1, 2, 3, 4]})


def test_paillier_dispatch_returns_the_shared_result_type() -> None:
    pytest.importorskip("protocols.paillier")
    updates = _updates(n=4, d=8)
    result = simulate(updates, protocol="paillier", key_bits=512, hazmat_allow_weak_key=True)
    assert isinstance(result, SimulationResult)
    assert np.allclose(result.aggregate, sum(updates.values()), atol=1e-5)
    assert result.protocol == "paillier"


# --------------------------------------------------------------------------- server


def _inputs(n: int = 6, d: int = 16) -> dict[int, npt.NDArray[np.uint64]]:
    rng = np.random.default_rng(1)
    return {cid: rng.integers(0, 1 << 20, d, dtype=np.uint64) for cid in range(1, n + 1)}


def test_stepping_a_finished_round_is_a_stage_error() -> None:
    runner = setup_round(_inputs(), bits=24, protocol="secagg", threat_model=CURIOUS)
    runner.run()
    assert runner.finished
    for step in (runner.step, runner.deliver_requests, runner.deliver_replies, runner.close):
        with pytest.raises(StageError, match="the round is over"):
            step()
    with pytest.raises(StageError):
        runner.run_until(Stage.UNMASKING)
    # a stage the round does not have is still a bad argument
    with pytest.raises(InvalidParameterError):
        runner.run_until(Stage.CONSISTENCY_CHECK)


def test_server_lifecycle_errors() -> None:
    runner = setup_round(_inputs(), bits=24, protocol="secagg", threat_model=CURIOUS)
    server = runner.server
    with pytest.raises(AlreadyFinalizedError):
        server.start()
    with pytest.raises(StageError):
        _ = server.result
    runner.collect()
    cid, reply = sorted(runner.replies.items())[0]
    with pytest.raises(ReplayError):
        runner.send_to_server(reply)
    runner.run()
    with pytest.raises(StageError):
        server.advance()
    fresh = SecAggServer(server.config, range(1, 7))
    with pytest.raises(StageError):
        fresh.handle(reply)
    with pytest.raises(InvalidParameterError):
        SecAggServer(server.config, range(1, 6))


def _corrupt_self_mask_shares(runner: Any, responders: Any, owner: int | None = None) -> None:
    """Add one to the self-mask share of ``owner`` (default: the first listed) in each response."""
    for cid in responders:
        (reply,) = runner.outbox[cid]
        assert isinstance(reply, UnmaskResponse)
        target = reply.self_mask_shares[0].owner if owner is None else owner
        shares = []
        for r in reply.self_mask_shares:
            if r.owner == target:
                share = Share.from_bytes(r.share)
                r = RevealedShare(
                    r.owner,
                    dataclasses.replace(share, value=(share.value + 1) % (1 << 256)).to_bytes(),
                )
            shares.append(r)
        runner.outbox[cid] = [dataclasses.replace(reply, self_mask_shares=tuple(shares))]


def test_corrupted_share_is_caught_by_the_commitment_and_routed_around() -> None:
    inputs = _inputs()
    runner = setup_round(inputs, bits=24, protocol="secagg", threat_model=CURIOUS)
    runner.run_until(Stage.UNMASKING)
    runner.deliver_requests()
    # the client with the lowest id answers first: its shares are in the fast path's subset
    _corrupt_self_mask_shares(runner, [min(runner.outbox)])
    result = runner.run()
    expected = np.sum([inputs[c] for c in result.survivors], axis=0) % (1 << 24)
    assert np.array_equal(result.ring_sum, expected)


def test_too_many_corrupted_shares_abort_the_round() -> None:
    inputs = _inputs()
    runner = setup_round(inputs, bits=24, protocol="secagg", threat_model=CURIOUS)
    runner.run_until(Stage.UNMASKING)
    runner.deliver_requests()
    t = runner.server.config.threshold
    owner = 1
    holders = [
        c for c, (r,) in runner.outbox.items() if any(x.owner == owner for x in r.self_mask_shares)
    ]
    _corrupt_self_mask_shares(runner, holders[: len(holders) - t + 1], owner)
    with pytest.raises(ProtocolAbortError, match="inconsistent"):
        runner.run()


def test_server_memory_is_one_vector() -> None:
    """The server keeps a running sum, not the masked inputs."""
    inputs = _inputs(n=6, d=64)
    runner = setup_round(
        inputs, bits=24, protocol="secagg", threat_model=CURIOUS, record_view=False
    )
    runner.run_until(Stage.MASKED_INPUT)
    runner.collect()
    arrays = [v for v in vars(runner.server).values() if isinstance(v, np.ndarray)]
    assert len(arrays) == 1 and arrays[0].shape == (64,)


@pytest.mark.parametrize(
    "ids", [[0, 1, 2, 3, 4, 5], ["alice", "bob", "carol", "dave", "erin", "frank"]]
)
def test_ids_from_zero_and_strings(ids: list[object]) -> None:
    updates = {cid: np.full(3, float(i + 1)) for i, cid in enumerate(ids)}
    result = simulate(updates, protocol="secagg", dropouts={"masked_input": [ids[2]]})
    assert result.survivors == tuple(sorted(c for c in ids if c != ids[2]))  # type: ignore[type-var]
    assert result.dropped == (ids[2],)
    expected = sum(updates[c] for c in result.survivors)
    assert np.allclose(result.aggregate, expected, atol=1e-5)
