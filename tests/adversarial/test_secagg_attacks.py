"""A server that lies, driving the real SecAgg / SecAgg+ clients: every attack succeeds against
a deliberately weakened configuration (the positive control) and fails against the defaults
of every server class that claims to stop it."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import pytest

from protocols import (
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShare,
    Hardening,
    MaskedInput,
    RevealedShare,
    RoundLog,
    RoundRunner,
    SecAggClient,
    SeedReveal,
    ShareKeys,
    Stage,
    UnmaskResponse,
    setup_round,
    simulate,
)
from protocols.masking.messages import Message
from secagg.errors import ReplayError, RoundRestartError, SecAggError
from secagg.primitives.shamir import Share
from secagg.primitives.signing import IdentityKey
from threat_models import ServerClass, ThreatModel
from threat_models.attacks.lying_server import (
    COLLUDER_HARDENING,
    PREVIOUS_HARDENING,
    LyingServer,
    colluders_around_victim_attack,
    component_graph_attack,
    padded_survivors_attack,
    partner_keys_attack,
    partner_keys_views,
    ring_order,
)
from threat_models.parameters import GraphKind, select_parameters

BITS = 32
DIM = 16
LYING = (ServerClass.SEMI_MALICIOUS, ServerClass.MALICIOUS)
# the checks of the previous release: survivor lists and counts, key signatures, no more
PREVIOUS = PREVIOUS_HARDENING


def _inputs(n: int, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {cid: rng.integers(0, 2**BITS, DIM, dtype=np.uint64) for cid in range(1, n + 1)}


def _ring_sum(inputs: dict[int, np.ndarray], ids: Any) -> np.ndarray:
    return np.sum([inputs[c] for c in ids], axis=0, dtype=np.uint64) % np.uint64(2**BITS)


def _round(
    inputs: dict[int, np.ndarray], protocol: str, tm: ThreatModel, hardening: Any, **kw: Any
) -> RoundRunner:
    return setup_round(
        inputs, bits=BITS, protocol=protocol, threat_model=tm, hardening=hardening, **kw
    )


# ---------------------------------------------------------------------------- 1. partner keys


PARTNER_CASES = [("secagg", 20), ("secagg", 40), ("secagg+", 30), ("secagg+", 40)]


@pytest.mark.parametrize("server_class", LYING, ids=lambda c: c.value)
@pytest.mark.parametrize(("protocol", "n"), PARTNER_CASES)
def test_partner_keys_positive_control(protocol: str, n: int, server_class: ServerClass) -> None:
    inputs = _inputs(n, seed=n)
    # in a sparse graph the partners' holders overlap: the baseline also lets a client lose
    # more than k - t peers, so that the lies can be spread
    weak = (
        PREVIOUS
        if protocol == "secagg"
        else dataclasses.replace(PREVIOUS, check_survivor_count=False)
    )
    runner = _round(inputs, protocol, ThreatModel(server=server_class), weak)
    recovered, harvest = partner_keys_attack(runner, victim=1, respect_counts=protocol == "secagg")
    assert recovered is not None, harvest.refusals
    assert np.array_equal(recovered, inputs[1])


@pytest.mark.parametrize("server_class", LYING, ids=lambda c: c.value)
@pytest.mark.parametrize(("protocol", "n"), PARTNER_CASES)
def test_partner_keys_fails_against_the_defaults(
    protocol: str, n: int, server_class: ServerClass
) -> None:
    inputs = _inputs(n, seed=n)
    runner = _round(inputs, protocol, ThreatModel(server=server_class), Hardening())
    recovered, harvest = partner_keys_attack(runner, victim=1, respect_counts=protocol == "secagg")
    assert recovered is None
    assert harvest.refusals  # the clients refused, with typed errors
    assert (
        1 not in harvest.self_mask
        or len(harvest.self_mask[1]) < runner.server.config.threshold
        or all(
            len(harvest.mask_key.get(h, [])) < runner.server.config.threshold
            for h in runner.clients[1].masking_set
        )
    )


@pytest.mark.parametrize(
    "single",
    [
        dataclasses.replace(PREVIOUS, consistency_check=True, verified_survivors=True),
        dataclasses.replace(PREVIOUS, attest_masking_sets=True),
    ],
    ids=["consistency-quorum-alone", "attestations-alone"],
)
def test_each_defence_alone_stops_partner_keys(single: Hardening) -> None:
    inputs = _inputs(20, seed=3)
    runner = _round(inputs, "secagg", ThreatModel(server=ServerClass.SEMI_MALICIOUS), single)
    recovered, harvest = partner_keys_attack(runner, victim=1)
    assert recovered is None and harvest.refusals


def test_curious_class_makes_no_claim_against_lying_servers() -> None:
    # the curious class has no consistency stage: a lying server reads the victim
    inputs = _inputs(20, seed=4)
    runner = _round(inputs, "secagg", ThreatModel(server=ServerClass.CURIOUS), Hardening())
    recovered, _ = partner_keys_attack(runner, victim=1)
    assert recovered is not None and np.array_equal(recovered, inputs[1])


# ---------------------------------------------------------------------------- 2. padding


PADDING_CASES = [
    # SecAgg, malicious class, n = 20, minimum 18: 8 drop, 6 ids that contributed nothing pad
    ("secagg", 20, ThreatModel(min_aggregate_size=18), 8, 6),
    # SecAgg+ as the distributed-DP recipe builds it (n = 40, minimum 36)
    ("secagg+", 40, ThreatModel(min_aggregate_size=36, dropout_fraction=0.1), 13, 9),
]


def _padding_plan(drop: int, pad: int) -> Any:
    def plan(server: LyingServer) -> tuple[list[int], list[int]]:
        if server.config.parameters.complete:
            dropped = list(server.ids[-drop:])
        else:
            # every third client of the ring: no survivor loses more than k - t neighbours
            dropped = list(ring_order(server)[::3][:drop])
        return dropped, dropped[:pad]

    return plan


@pytest.mark.parametrize(("protocol", "n", "tm", "drop", "pad"), PADDING_CASES)
def test_padding_positive_control(
    protocol: str, n: int, tm: ThreatModel, drop: int, pad: int
) -> None:
    inputs = _inputs(n, seed=7)
    weak = dataclasses.replace(PREVIOUS, check_survivor_lists=False, consistency_check=True)
    runner = _round(inputs, protocol, tm, weak)
    total, real, harvest = padded_survivors_attack(runner, _padding_plan(drop, pad))
    assert total is not None, harvest.refusals
    assert len(real) == n - drop < runner.server.config.parameters.min_aggregate_size
    assert np.array_equal(total, _ring_sum(inputs, real))


@pytest.mark.parametrize("server_class", LYING, ids=lambda c: c.value)
@pytest.mark.parametrize(("protocol", "n", "tm", "drop", "pad"), PADDING_CASES)
def test_padding_fails_against_the_defaults(
    protocol: str, n: int, tm: ThreatModel, drop: int, pad: int, server_class: ServerClass
) -> None:
    inputs = _inputs(n, seed=7)
    runner = _round(inputs, protocol, dataclasses.replace(tm, server=server_class), Hardening())
    total, _, harvest = padded_survivors_attack(runner, _padding_plan(drop, pad))
    assert total is None and harvest.refusals


def test_verified_count_alone_stops_padding() -> None:
    # every list check off except the count of verified signers: still refused
    protocol, n, tm, drop, pad = PADDING_CASES[1]
    inputs = _inputs(n, seed=8)
    only_count = dataclasses.replace(
        PREVIOUS, check_survivor_lists=False, consistency_check=True, verified_survivors=True
    )
    runner = _round(inputs, protocol, tm, only_count)
    total, _, harvest = padded_survivors_attack(runner, _padding_plan(drop, pad))
    assert total is None
    assert "ThresholdNotMetError" in harvest.refusals.values()


# ---------------------------------------------------------------------------- 3. the graph


COMPONENT_TM = ThreatModel(min_aggregate_size=40)


def _components(ids: list[int]) -> list[list[int]]:
    return [ids[:17], ids[17:34], ids[34:]]


def test_server_chosen_components_positive_control() -> None:
    inputs = _inputs(60, seed=9)
    runner = _round(
        inputs, "secagg+", COMPONENT_TM, dataclasses.replace(Hardening(), derive_graph=False)
    )
    assert runner.server.config.parameters.degree == 16
    sums, harvest = component_graph_attack(runner, _components(sorted(inputs)))
    assert not harvest.refusals
    for part, got in zip(_components(sorted(inputs)), sums, strict=True):
        assert len(part) < 40
        assert got is not None and np.array_equal(got, _ring_sum(inputs, part))


@pytest.mark.parametrize("server_class", LYING, ids=lambda c: c.value)
def test_server_chosen_components_fail_against_the_defaults(server_class: ServerClass) -> None:
    inputs = _inputs(60, seed=9)
    runner = _round(
        inputs, "secagg+", dataclasses.replace(COMPONENT_TM, server=server_class), Hardening()
    )
    sums, harvest = component_graph_attack(runner, _components(sorted(inputs)))
    assert all(s is None for s in sums)
    assert set(harvest.refusals.values()) == {"MessageError"}  # "not a neighbour"


# colluders >= t: a reduced copy of the default threat model at n = 1500 (k = 80, t = 53,
# 75 colluders), with the same ratio of colluders to threshold
AROUND_TM = ThreatModel(colluding_fraction=0.4, dropout_fraction=0.02)
AROUND_N = 80
# colluding clients sign like everyone else but make no check that would stop them revealing
COLLUDER = COLLUDER_HARDENING


def test_colluders_around_the_victim_positive_control() -> None:
    inputs = _inputs(AROUND_N, seed=10)
    params = select_parameters(AROUND_N, AROUND_TM, graph=GraphKind.HARARY)
    colluders = list(range(2, 2 + params.max_colluders))
    assert len(colluders) >= params.threshold and params.degree < AROUND_N - 1
    hardening = {
        c: COLLUDER if c in colluders else dataclasses.replace(Hardening(), derive_graph=False)
        for c in inputs
    }
    runner = _round(inputs, "secagg+", AROUND_TM, hardening)
    recovered, harvest = colluders_around_victim_attack(runner, 1, colluders)
    assert recovered is not None, harvest.refusals
    assert np.array_equal(recovered, inputs[1])


@pytest.mark.parametrize("server_class", LYING, ids=lambda c: c.value)
def test_colluders_around_the_victim_fail_against_the_defaults(server_class: ServerClass) -> None:
    inputs = _inputs(AROUND_N, seed=10)
    tm = dataclasses.replace(AROUND_TM, server=server_class)
    params = select_parameters(AROUND_N, tm, graph=GraphKind.HARARY)
    colluders = list(range(2, 2 + params.max_colluders))
    hardening = {c: COLLUDER if c in colluders else Hardening() for c in inputs}
    runner = _round(inputs, "secagg+", tm, hardening)
    recovered, harvest = colluders_around_victim_attack(runner, 1, colluders)
    assert recovered is None
    assert harvest.refusals.get(1) == "MessageError"
    # and the graph the clients derive gives the colluders fewer than t of the victim's shares
    seeded = runner.server.neighbours(1)
    assert len(seeded & set(colluders)) < params.threshold


# ---------------------------------------------------------------------------- 4. round reuse


def _harvest_execution(
    inputs: dict[int, np.ndarray],
    tm: ThreatModel,
    hardening: Hardening,
    identities: dict[int, IdentityKey],
    round_id: int,
    wanted: dict[tuple[int, ...], set[int]],
) -> dict[tuple[int, ...], dict[int, bytes]]:
    """One execution of ``round_id``: each client signs one of the survivor lists still short of
    signers."""
    runner = _round(inputs, "secagg", tm, hardening, round_id=round_id, identities=identities)
    server = LyingServer(runner)
    server.honest_setup()
    server.broadcast_keys()
    server.forward_shares()
    plan = {}
    for u in server.ids:
        for s, missing in sorted(wanted.items(), key=lambda kv: -len(kv[1])):
            if u in missing and u in s:
                plan[u] = s
                missing.discard(u)
                break
    server.consistency(plan)
    return server.signatures


def _round_reuse_attack(
    hardening: Hardening, *, executions: int = 16
) -> tuple[np.ndarray | None, dict[int, str], np.ndarray]:
    n = 20
    inputs = _inputs(n, seed=11)
    tm = ThreatModel(server=ServerClass.MALICIOUS)
    identities = {cid: IdentityKey.generate() for cid in inputs}
    round_id = 4242
    quorum = select_parameters(n, tm, graph=GraphKind.COMPLETE).consistency_quorum
    # the last execution's views are known in advance: they only depend on the graph (complete)
    probe = _round(inputs, "secagg", tm, Hardening.unhardened(), round_id=1)
    scout = LyingServer(probe)
    scout.honest_setup()
    scout.broadcast_keys()
    t = scout.config.threshold
    partners = sorted(scout.true_neighbours(1))[:t]
    scout.forward_shares({1: partners})
    views = partner_keys_views(scout, 1, partners)
    lists = {s for s, _ in views.values()}
    wanted = {s: set(s) - {1} for s in lists}
    pool: dict[tuple[int, ...], dict[int, bytes]] = {}
    refusals: dict[int, str] = {}
    for _ in range(executions - 1):
        try:
            got = _harvest_execution(inputs, tm, hardening, identities, round_id, wanted)
        except SecAggError as exc:  # the honest set-up stages already refuse a reused round
            refusals[0] = type(exc).__name__
            break
        for s, sigs in got.items():
            pool.setdefault(s, {}).update(sigs)
    enough = all(len(pool.get(s, {})) >= quorum for s in lists)
    try:
        runner = _round(inputs, "secagg", tm, hardening, round_id=round_id, identities=identities)
        server = LyingServer(runner)
        server.honest_setup()
    except SecAggError as exc:
        refusals[-1] = type(exc).__name__
        return None, refusals, inputs[1]
    server.add_signatures(pool)
    server.broadcast_keys()
    server.forward_shares({1: partners})
    server.consistency({u: s for u, (s, _) in views.items()})
    server.unmask(views)
    refusals.update(server.harvest.refusals)
    refusals[-2] = f"enough={enough}"
    return server.unmask_one(1), refusals, inputs[1]


def test_round_reuse_positive_control() -> None:
    weak = dataclasses.replace(
        PREVIOUS, consistency_check=True, verified_survivors=True, round_bound_signatures=True
    )
    recovered, refusals, victim = _round_reuse_attack(weak)
    assert recovered is not None, refusals
    assert np.array_equal(recovered, victim)


def test_round_reuse_fails_against_the_defaults() -> None:
    recovered, refusals, _ = _round_reuse_attack(Hardening())
    assert recovered is None
    assert "ReplayError" in refusals.values()


def test_fresh_signatures_alone_stop_replayed_quorums() -> None:
    only_fresh = dataclasses.replace(
        PREVIOUS, consistency_check=True, verified_survivors=True, fresh_signatures=True
    )
    recovered, refusals, _ = _round_reuse_attack(only_fresh, executions=10)
    assert recovered is None
    assert "AuthenticationError" in refusals.values() or "ThresholdNotMetError" in refusals.values()


def test_a_restarted_client_refuses_a_round_it_took_part_in(tmp_path: Any) -> None:
    inputs = _inputs(6, seed=12)
    tm = ThreatModel()
    identities = {cid: IdentityKey.generate() for cid in inputs}
    log_path = tmp_path / "client1.rounds"
    first = _round(inputs, "secagg", tm, Hardening(), round_id=77, identities=identities)
    config = first.server.config
    pki = first.pki
    client = SecAggClient(
        config,
        1,
        input_vector=inputs[1],
        identity=identities[1],
        pki=pki,
        round_log=RoundLog.at(log_path),
    )
    start = first.pending[1]
    client.handle(start)
    # the process restarts: a new client object, the same identity, the same log file
    again = SecAggClient(
        config,
        1,
        input_vector=inputs[1],
        identity=identities[1],
        pki=pki,
        round_log=RoundLog.at(log_path),
    )
    with pytest.raises(ReplayError):
        again.handle(start)
    assert again.stage is Stage.ADVERTISE_KEYS  # nothing changed


# ---------------------------------------------------------------------------- 6. one bad client


class _Corrupting:
    """A malicious client: the real one, with random bytes in place of what it sends at ``stage``.

    Advertise keys: the signature (``key=True``: the masking key, a point of small order);
    graph seed: the reveal; share keys: every encrypted share; masked input: the attestation;
    consistency: the signature; unmasking: every revealed share's value.
    """

    def __init__(self, real: SecAggClient, stage: Stage, *, key: bool = False) -> None:
        self.real, self.stage, self.key = real, stage, key

    def handle(self, message: Message) -> list[Message]:
        out = self.real.handle(message)
        if message.STAGE is not self.stage:
            return out
        junk = os.urandom(64)
        fixed: list[Message] = []
        for m in out:
            if isinstance(m, AdvertiseKeys) and self.key:
                m = dataclasses.replace(m, mask_public=bytes(32))
            elif isinstance(m, AdvertiseKeys):
                m = dataclasses.replace(m, signature=junk)
            elif isinstance(m, ShareKeys):
                m = dataclasses.replace(
                    m,
                    shares=tuple(
                        EncryptedShare(e.peer, os.urandom(len(e.ciphertext))) for e in m.shares
                    ),
                )
            elif isinstance(m, UnmaskResponse):
                m = dataclasses.replace(
                    m,
                    self_mask_shares=tuple(
                        RevealedShare(
                            r.owner,
                            dataclasses.replace(Share.from_bytes(r.share), value=1).to_bytes(),
                        )
                        for r in m.self_mask_shares
                    ),
                )
            elif isinstance(m, MaskedInput):
                m = dataclasses.replace(m, attestation=junk)
            elif isinstance(m, ConsistencySignature):
                m = dataclasses.replace(m, signature=junk)
            elif isinstance(m, SeedReveal):
                m = dataclasses.replace(m, reveal=os.urandom(32))
            fixed.append(m)
        return fixed


BAD_STAGES = [Stage.ADVERTISE_KEYS, Stage.MASKED_INPUT, Stage.CONSISTENCY_CHECK]


def _run_with_bad_client(
    stage: Stage, protocol: str, server_class: ServerClass, verify: bool
) -> tuple[Any, dict[int, np.ndarray]]:
    n = 12
    inputs = _inputs(n, seed=13)
    runner = _round(inputs, protocol, ThreatModel(server=server_class), Hardening())
    if not verify:
        runner.server._verify = False  # noqa: SLF001 - the positive control's unverifying relay
    bad = 1  # the lowest id: its signature is among the first the others check
    runner.clients[bad] = _Corrupting(runner.clients[bad], stage)  # type: ignore[assignment]
    return runner, inputs


@pytest.mark.parametrize("server_class", LYING, ids=lambda c: c.value)
@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
@pytest.mark.parametrize("stage", BAD_STAGES, ids=lambda s: s.value)
def test_one_bad_client_counts_as_dropped(
    stage: Stage, protocol: str, server_class: ServerClass
) -> None:
    if stage is Stage.ADVERTISE_KEYS and server_class is ServerClass.SEMI_MALICIOUS:
        pytest.skip("semi-malicious rounds sign no keys")
    runner, inputs = _run_with_bad_client(stage, protocol, server_class, verify=True)
    result = runner.run()
    assert np.array_equal(result.ring_sum, _ring_sum(inputs, result.survivors))
    if stage is Stage.CONSISTENCY_CHECK:
        assert 1 in result.survivors  # its input is in, its signature is not counted
    else:
        assert 1 not in result.survivors
    assert len(result.survivors) >= len(inputs) - 1


@pytest.mark.parametrize(
    "stage", [Stage.MASKED_INPUT, Stage.CONSISTENCY_CHECK], ids=lambda s: s.value
)
def test_one_bad_client_aborts_the_round_through_an_unverifying_relay(stage: Stage) -> None:
    runner, _ = _run_with_bad_client(stage, "secagg", ServerClass.MALICIOUS, verify=False)
    with pytest.raises(SecAggError):
        runner.run()


def test_a_withheld_reveal_restarts_the_round_without_the_client() -> None:
    updates = {cid: np.full(4, float(cid)) for cid in range(1, 11)}
    result = simulate(updates, protocol="secagg+", dropouts={"graph_seed": [4]})
    assert 4 not in result.survivors and result.details["restarts"] == 1
    assert np.allclose(result.aggregate, sum(updates[c] for c in result.survivors), atol=1e-5)


def _run_restarting(inputs: dict[int, np.ndarray], tm: ThreatModel, bad: Any) -> tuple[Any, int]:
    """Run the round as a deployment's server does: restart without the clients it excludes."""
    excluded: set[int] = set()
    for restarts in range(len(inputs)):
        live = {c: v for c, v in inputs.items() if c not in excluded}
        runner = _round(live, "secagg+", tm, Hardening())
        for cid, wrap in bad.items():
            if cid in runner.clients:
                runner.clients[cid] = wrap(runner.clients[cid])
        try:
            return runner.run(), restarts
        except RoundRestartError as exc:
            excluded |= exc.excluded
    raise AssertionError("no round completed")


@pytest.mark.parametrize("server_class", LYING, ids=lambda c: c.value)
def test_unopenable_shares_restart_the_round_without_their_sender(
    server_class: ServerClass,
) -> None:
    inputs = _inputs(12, seed=14)
    bad = {1: lambda real: _Corrupting(real, Stage.SHARE_KEYS)}
    result, restarts = _run_restarting(inputs, ThreatModel(server=server_class), bad)
    assert restarts == 1 and 1 not in result.survivors
    assert np.array_equal(result.ring_sum, _ring_sum(inputs, result.survivors))


def test_unopenable_shares_abort_a_curious_round() -> None:
    # the curious class trusts its clients: the positive control that shows the abort
    inputs = _inputs(12, seed=14)
    runner = _round(inputs, "secagg+", ThreatModel(server=ServerClass.CURIOUS), Hardening())
    runner.clients[1] = _Corrupting(runner.clients[1], Stage.SHARE_KEYS)  # type: ignore[assignment]
    with pytest.raises(SecAggError):
        runner.run()


@pytest.mark.parametrize("server_class", LYING, ids=lambda c: c.value)
def test_a_small_order_key_counts_as_dropped(server_class: ServerClass) -> None:
    inputs = _inputs(12, seed=15)
    runner = _round(inputs, "secagg+", ThreatModel(server=server_class), Hardening())
    runner.clients[1] = _Corrupting(runner.clients[1], Stage.ADVERTISE_KEYS, key=True)  # type: ignore[assignment]
    result = runner.run()
    assert 1 not in result.survivors
    assert np.array_equal(result.ring_sum, _ring_sum(inputs, result.survivors))


@pytest.mark.parametrize("server_class", [ServerClass.CURIOUS, *LYING], ids=lambda c: c.value)
def test_wrong_revealed_shares_are_routed_around(server_class: ServerClass) -> None:
    inputs = _inputs(12, seed=16)
    runner = _round(inputs, "secagg", ThreatModel(server=server_class), Hardening())
    runner.clients[1] = _Corrupting(runner.clients[1], Stage.UNMASKING)  # type: ignore[assignment]
    result = runner.run()
    assert result.survivors == tuple(sorted(inputs))
    assert np.array_equal(result.ring_sum, _ring_sum(inputs, result.survivors))
