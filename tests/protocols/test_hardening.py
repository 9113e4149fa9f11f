"""A scripted malicious server against the real clients: hardened clients refuse, the
explicitly unhardened baseline falls for the attack."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from protocols import (
    AdvertiseKeys,
    ConsistencyRequest,
    Hardening,
    KeyBroadcast,
    MaskedInput,
    RoundRunner,
    ShareKind,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
    setup_round,
)
from secagg.errors import (
    AlreadyFinalizedError,
    AuthenticationError,
    InvalidParameterError,
    MessageError,
    ProtocolAbortError,
    StageError,
    ThresholdNotMetError,
)
from secagg.primitives.keys import KeyPair, Purpose, derive_pair_key
from secagg.primitives.prg import MaskPRG
from secagg.primitives.shamir import Share, reconstruct
from secagg.primitives.signing import IdentityKey
from threat_models import ServerClass, ThreatModel

BITS = 24
IDS = [1, 2, 3, 4, 5, 6]
CURIOUS = ThreatModel(server=ServerClass.CURIOUS, colluding_fraction=0.0)
MALICIOUS = ThreatModel(server=ServerClass.MALICIOUS)


def _inputs(seed: int = 0, d: int = 40) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {cid: rng.integers(0, 2**BITS // 8, d, dtype=np.uint64) for cid in IDS}


def _expected(inputs: dict[int, np.ndarray], survivors: Any) -> np.ndarray:
    return np.sum([inputs[c] for c in survivors], axis=0) % (2**BITS)


def _round(threat_model: ThreatModel, inputs: dict[int, np.ndarray], **kwargs: Any) -> RoundRunner:
    return setup_round(inputs, bits=BITS, protocol="secagg", threat_model=threat_model, **kwargs)


def _finish_and_check(runner: RoundRunner, inputs: dict[int, np.ndarray]) -> None:
    result = runner.run()
    assert np.array_equal(result.ring_sum, _expected(inputs, result.survivors))


# --------------------------------------------------------------------- dropped and surviving


def _both_listed(runner: RoundRunner, victim: int) -> dict[int, UnmaskRequest]:
    forged = {}
    for cid, request in runner.pending.items():
        assert isinstance(request, UnmaskRequest)
        if cid != victim and victim in runner.clients[cid].masking_set:
            forged[cid] = dataclasses.replace(
                request, dropped=tuple(sorted({*request.dropped, victim}))
            )
    return forged


def test_both_listed_is_refused_and_reveals_nothing() -> None:
    inputs = _inputs()
    runner = _round(CURIOUS, inputs)
    runner.run_until(Stage.UNMASKING)
    for cid, request in _both_listed(runner, victim=1).items():
        with pytest.raises(ProtocolAbortError, match="both dropped and surviving"):
            runner.send_to_client(cid, request)
        assert runner.clients[cid].revealed == {}
        assert not runner.clients[cid].finished
    _finish_and_check(runner, inputs)
    for client in runner.clients.values():
        assert all(len(kinds) == 1 for kinds in client.revealed.values())


def test_both_listed_against_unhardened_baseline_recovers_the_victims_input() -> None:
    inputs = _inputs(seed=1)
    victim = 1
    runner = _round(CURIOUS, inputs, hardening=Hardening.unhardened())
    runner.run_until(Stage.UNMASKING)
    t = runner.server.config.threshold
    self_mask: list[Share] = []
    mask_key: list[Share] = []
    for cid, request in _both_listed(runner, victim).items():
        (reply,) = runner.send_to_client(cid, request)
        assert isinstance(reply, UnmaskResponse)
        assert runner.clients[cid].revealed[victim] == {ShareKind.SELF_MASK, ShareKind.MASK_KEY}
        self_mask += [
            Share.from_bytes(r.share) for r in reply.self_mask_shares if r.owner == victim
        ]
        mask_key += [Share.from_bytes(r.share) for r in reply.mask_key_shares if r.owner == victim]
    assert len(self_mask) >= t and len(mask_key) >= t
    seed = reconstruct(self_mask)
    keys = KeyPair.from_private_bytes(reconstruct(mask_key))
    # strip every mask off the victim's masked input, alone
    advertised = runner.history[Stage.ADVERTISE_KEYS][1]
    masked = runner.history[Stage.MASKED_INPUT][1][victim]
    assert isinstance(masked, MaskedInput)
    acc = masked.words.astype(np.uint64)
    MaskPRG(seed, BITS).add_into(acc, subtract=True)
    rid = runner.server.config.round_id
    for peer in runner.clients[victim].masking_set:
        peer_keys = advertised[peer]
        assert isinstance(peer_keys, AdvertiseKeys)
        pair_seed = derive_pair_key(
            keys,
            peer_keys.mask_public,
            purpose=Purpose.MASK_SEED,
            round_id=rid,
            self_id=victim,
            peer_id=peer,
        )
        MaskPRG(pair_seed, BITS).add_into(acc, subtract=victim < peer)
    assert np.array_equal(acc, inputs[victim])


# --------------------------------------------------------------------- faked dropouts


def test_faked_dropouts_below_minimum_aggregate_size() -> None:
    tm = ThreatModel(server=ServerClass.CURIOUS, colluding_fraction=0.0, min_aggregate_size=4)
    inputs = _inputs(seed=2)
    for hardening, refused in ((Hardening(), True), (Hardening(check_survivor_count=False), False)):
        runner = _round(tm, inputs, hardening=hardening)
        runner.run_until(Stage.UNMASKING)
        cid, request = sorted(runner.pending.items())[0]
        assert isinstance(request, UnmaskRequest)
        peer = sorted(runner.clients[cid].masking_set)[0]
        others = tuple(sorted(runner.clients[cid].masking_set - {peer}))
        forged = dataclasses.replace(request, survivors=tuple(sorted((cid, peer))), dropped=others)
        if refused:
            with pytest.raises(ThresholdNotMetError, match="minimum aggregate size"):
                runner.send_to_client(cid, forged)
            assert runner.clients[cid].revealed == {}
            _finish_and_check(runner, inputs)
        else:
            (reply,) = runner.send_to_client(cid, forged)
            assert isinstance(reply, UnmaskResponse) and len(reply.mask_key_shares) == len(others)


def test_too_few_surviving_peers_is_refused() -> None:
    inputs = _inputs(seed=3)
    runner = _round(CURIOUS, inputs)
    runner.run_until(Stage.UNMASKING)
    cid, request = sorted(runner.pending.items())[0]
    held = sorted(runner.clients[cid].masking_set)
    forged = dataclasses.replace(request, survivors=(cid,), dropped=tuple(held))
    with pytest.raises(ThresholdNotMetError):
        runner.send_to_client(cid, forged)
    _finish_and_check(runner, inputs)


# --------------------------------------------------------------------- key substitution


def _substitute_first_key(request: Any) -> KeyBroadcast:
    assert isinstance(request, KeyBroadcast)
    fake = KeyPair.generate().public_bytes
    first = dataclasses.replace(request.peers[0], mask_public=fake)
    return dataclasses.replace(request, peers=(first, *request.peers[1:]))


def test_substituted_public_key_is_detected() -> None:
    inputs = _inputs(seed=4)
    runner = _round(MALICIOUS, inputs)
    runner.run_until(Stage.SHARE_KEYS)
    cid, request = sorted(runner.pending.items())[0]
    with pytest.raises(AuthenticationError):
        runner.send_to_client(cid, _substitute_first_key(request))
    _finish_and_check(runner, inputs)


def test_substituted_public_key_accepted_without_authentication() -> None:
    inputs = _inputs(seed=4)
    runner = _round(MALICIOUS, inputs, hardening=Hardening(authenticate_keys=False))
    runner.run_until(Stage.SHARE_KEYS)
    cid, request = sorted(runner.pending.items())[0]
    (reply,) = runner.send_to_client(cid, _substitute_first_key(request))
    assert reply.STAGE is Stage.SHARE_KEYS


# --------------------------------------------------------------------- replay across rounds


@pytest.mark.parametrize("round_bound", [True, False])
def test_signed_keys_replayed_from_an_older_round(round_bound: bool) -> None:
    inputs = _inputs(seed=5)
    hardening = Hardening(round_bound_signatures=round_bound, fresh_signatures=round_bound)
    old = _round(MALICIOUS, inputs, round_id=100, hardening=hardening)
    old.step()
    old.step()
    old_keys = old.history[Stage.ADVERTISE_KEYS][1]
    old_reveals = old.history[Stage.GRAPH_SEED][1]
    victim = 2
    stale = old_keys[victim]
    assert isinstance(stale, AdvertiseKeys)
    fresh_ids = {cid: IdentityKey.generate() for cid in IDS} if round_bound else old.identities
    new = _round(MALICIOUS, inputs, round_id=101, hardening=hardening, identities=fresh_ids)
    if round_bound:
        # the server verifies what it relays, and the clients verify again
        new.deliver_requests()
        with pytest.raises(MessageError):
            new.send_to_server(dataclasses.replace(stale, round_id=101))
        new.run_until(Stage.SHARE_KEYS)
        cid, request = sorted(new.pending.items())[0]
        assert isinstance(request, KeyBroadcast)
        peer = next(p for p in request.peers if p.client_id != cid)
        replayed = dataclasses.replace(
            peer,
            mask_public=old_keys[peer.client_id].mask_public,
            share_public=old_keys[peer.client_id].share_public,
            signature=old_keys[peer.client_id].signature,
        )
        forged = dataclasses.replace(
            request, peers=(replayed, *[p for p in request.peers if p is not peer])
        )
        with pytest.raises(AuthenticationError):
            new.send_to_client(cid, forged)
        _finish_and_check(new, inputs)
    else:
        # unbound signatures pass the old advertisement, but its graph-seed commitment is bound
        # to the old round id: the victim's old reveal cannot complete it in the new round
        new.deliver_requests()
        new.outbox[victim] = [dataclasses.replace(stale, round_id=101)]
        new.close()
        new.dead.add(victim)  # the real victim would refuse the stale commitment: keep it out
        new.deliver_requests()
        new.outbox[victim] = [dataclasses.replace(old_reveals[victim], round_id=101)]
        new.close()
        cid = next(c for c in sorted(new.pending) if victim in new.server.neighbours(c))
        with pytest.raises(ProtocolAbortError, match="does not match its commitment"):
            new.send_to_client(cid, new.pending[cid])


# --------------------------------------------------------------------- model inconsistency


@pytest.mark.parametrize("bound", [True, False])
def test_different_models_are_detected(bound: bool) -> None:
    inputs = _inputs(seed=6)
    hashes = {cid: bytes(32) for cid in IDS}
    hashes[1] = b"\x01" * 32  # the server sent client 1 a different global model
    runner = _round(
        MALICIOUS, inputs, model_hash=hashes, hardening=Hardening(model_bound_signatures=bound)
    )
    if bound:
        with pytest.raises(AuthenticationError):
            runner.run()
    else:
        _finish_and_check(runner, inputs)


# --------------------------------------------------------------------- equivocation


def test_unmasking_a_set_other_than_the_signed_one_is_refused() -> None:
    inputs = _inputs(seed=7)
    runner = _round(MALICIOUS, inputs)
    runner.run_until(Stage.UNMASKING)
    cid, request = sorted(runner.pending.items())[0]
    assert isinstance(request, UnmaskRequest)
    gone = max(set(request.survivors) - {cid})
    forged = dataclasses.replace(
        request,
        survivors=tuple(v for v in request.survivors if v != gone),
        dropped=tuple(sorted({*request.dropped, gone})),
    )
    with pytest.raises(ProtocolAbortError, match="signed"):
        runner.send_to_client(cid, forged)
    _finish_and_check(runner, inputs)


def test_signatures_on_another_set_are_refused() -> None:
    inputs = _inputs(seed=8)
    runner = _round(MALICIOUS, inputs)
    runner.run_until(Stage.CONSISTENCY_CHECK)
    cid, request = sorted(runner.pending.items())[0]
    assert isinstance(request, ConsistencyRequest)
    gone = max(set(request.survivors) - {cid})
    smaller = tuple(v for v in request.survivors if v != gone)
    # client cid is shown (and signs) a smaller survivor set than everyone else
    runner.send_to_client(cid, dataclasses.replace(request, survivors=smaller))
    runner.pending = {c: m for c, m in runner.pending.items() if c != cid}
    runner.close()
    honest = runner.pending.get(cid) or next(iter(runner.pending.values()))
    assert isinstance(honest, UnmaskRequest)
    # the other clients' signatures (on the full set) presented as signatures on `smaller`
    collected = {s.signer: s for m in runner.pending.values() for s in m.signatures}  # type: ignore[attr-defined]
    sigs = tuple(collected[v] for v in sorted(collected) if v not in (gone, cid))
    assert len(sigs) >= runner.server.config.threshold
    forged = dataclasses.replace(
        honest,
        recipient=cid,
        survivors=smaller,
        dropped=tuple(sorted({*honest.dropped, gone})),
        signatures=sigs,
    )
    with pytest.raises(AuthenticationError):
        runner.send_to_client(cid, forged)
    assert runner.clients[cid].revealed == {}


def test_equivocation_accepted_without_consistency_check() -> None:
    inputs = _inputs(seed=7)
    runner = _round(MALICIOUS, inputs, hardening=Hardening(consistency_check=False))
    runner.run_until(Stage.UNMASKING)
    cid, request = sorted(runner.pending.items())[0]
    assert isinstance(request, UnmaskRequest)
    gone = max(set(request.survivors) - {cid})
    forged = dataclasses.replace(
        request,
        survivors=tuple(v for v in request.survivors if v != gone),
        dropped=tuple(sorted({*request.dropped, gone})),
        signatures=(),
    )
    (reply,) = runner.send_to_client(cid, forged)
    assert isinstance(reply, UnmaskResponse)
    assert [r.owner for r in reply.mask_key_shares] == [gone]


# --------------------------------------------------------------------- single use and inputs


def test_client_is_single_use_after_unmasking() -> None:
    inputs = _inputs(seed=9)
    runner = _round(CURIOUS, inputs)
    runner.run_until(Stage.UNMASKING)
    runner.collect()
    cid, request = sorted(runner.requests.items())[0]
    assert runner.clients[cid].finished
    with pytest.raises(AlreadyFinalizedError):
        runner.send_to_client(cid, request)
    with pytest.raises(AlreadyFinalizedError):
        runner.send_to_client(cid, dataclasses.replace(request, dropped=()))
    _finish_and_check(runner, inputs)
    with pytest.raises(AlreadyFinalizedError):
        runner.send_to_server(runner.history[Stage.UNMASKING][1][cid])


def test_input_checks_and_late_input() -> None:
    inputs = _inputs(seed=10)
    runner = _round(CURIOUS, inputs)
    client = runner.clients[1]
    with pytest.raises(InvalidParameterError):
        client.set_input(np.zeros(3, dtype=np.uint64))
    with pytest.raises(InvalidParameterError):
        client.set_input(np.full(40, 2**BITS, dtype=np.uint64))
    with pytest.raises(InvalidParameterError):
        client.set_input(np.zeros(40))
    client.set_input(inputs[1])  # replacing before the masked-input stage is allowed
    runner.run_until(Stage.UNMASKING)
    with pytest.raises(StageError):
        client.set_input(inputs[1])
    _finish_and_check(runner, inputs)


def test_missing_input_is_a_stage_error() -> None:
    inputs = _inputs(seed=11)
    runner = _round(CURIOUS, inputs)
    runner.clients[2]._input = None  # as if constructed without input
    runner.run_until(Stage.MASKED_INPUT)
    with pytest.raises(StageError, match="set_input"):
        runner.deliver_requests()
