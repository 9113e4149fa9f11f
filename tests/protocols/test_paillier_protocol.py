"""Paillier round: state machines, wire messages, the in-process driver and scripted attacks.

Keys are 512-bit (INSECURE, for speed), dealt once per module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TypeVar, cast

import numpy as np
import pytest

import protocols
from protocols import Stage
from protocols.paillier import (
    DecryptionRequest,
    NonceRequest,
    PaillierClient,
    PaillierDecryptor,
    PaillierHardening,
    PaillierMessage,
    PaillierParty,
    PaillierRoundConfig,
    PaillierServer,
    PartialDecryptionMessage,
    Upload,
    UploadRequest,
    WeightedEncoder,
    contribution_transcript,
    decode_message,
    encode_message,
    run_round,
)
from protocols.round_log import RoundLog
from secagg.errors import (
    AlreadyFinalizedError,
    AuthenticationError,
    InvalidParameterError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
    StageError,
    ThresholdNotMetError,
)
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.paillier import EncryptedVector, PaillierEncryptor, aggregate
from secagg.primitives.signing import IdentityKey
from secagg.primitives.threshold_paillier import (
    KeyShare,
    ThresholdPublicKey,
    combine_partial_decryptions,
    deal_threshold_key,
    partial_decrypt,
)
from threat_models.model import ServerClass, ThreatModel

M = TypeVar("M", bound=PaillierMessage)
N = 6
D = 40
Key = tuple[ThresholdPublicKey, tuple[KeyShare, ...]]


@pytest.fixture(scope="module")
def key() -> Key:
    # the default (malicious-server) threat model for 6 clients needs t = 4 of 6
    return deal_threshold_key(n_decryptors=N, threshold=4, key_bits=512, hazmat_allow_weak_key=True)


@pytest.fixture(scope="module")
def updates() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(11)
    return {10 + i: rng.uniform(-1.0, 1.0, D) for i in range(N)}


def _quantum(config: PaillierRoundConfig) -> float:
    encoder = config.encoder
    assert isinstance(encoder, FixedPointEncoder)
    return encoder.quantum


class Round:
    """A hand-driven round: config, identities, clients, server, decryptors.

    The constructor runs the commitment stage (the decryptors' nonces), hands every
    decryptor its upload request and has every client upload; the uploads are not yet
    delivered to the server.
    """

    def __init__(
        self,
        key: Key,
        updates: dict[int, np.ndarray],
        *,
        round_id: int = 5,
        hardening: PaillierHardening | None = None,
    ) -> None:
        pk, shares = key
        self.ids = sorted(updates)
        self.identities = {i: IdentityKey.generate() for i in self.ids}
        self.decryptor_identities = {s.index: IdentityKey.generate() for s in shares}
        encoder = FixedPointEncoder.symmetric(1.0, bits=19, max_clients=N, levels=(1 << 16) - 1)
        self.config = PaillierRoundConfig(
            round_id=round_id,
            public_key=pk,
            encoder=encoder,
            packing=pk.packing_for(encoder),
            length=D,
            min_aggregate_size=3,
            roster={i: self.identities[i].public_bytes for i in self.ids},
            decryptor_keys={p: k.public_bytes for p, k in self.decryptor_identities.items()},
        )
        self.server = PaillierServer(self.config)
        self.decryptors = [
            PaillierDecryptor(
                self.config,
                s,
                identity_key=self.decryptor_identities[s.index],
                hardening=PaillierHardening() if hardening is None else hardening,
            )
            for s in shares
        ]
        by_party = {d.party_id: d for d in self.decryptors}
        for request in self.server.start():
            assert isinstance(request, NonceRequest)
            for reply in by_party[request.recipient].handle(self.wire(request)):
                self.server.handle(self.wire(reply))
        self.requests = {
            r.recipient: r for r in self.server.advance() if isinstance(r, UploadRequest)
        }
        for dec in self.decryptors:
            dec.handle(self.wire(self.requests[dec.party_id]))
        execution = self.server.execution_context
        assert execution is not None
        self.execution = execution
        self.rng = np.random.default_rng(0)
        self.uploads = {
            i: PaillierClient(self.config, i, self.identities[i]).upload(
                self.requests[i], updates[i], rng=self.rng
            )
            for i in self.ids
        }

    def wire(self, message: M) -> M:
        return cast(M, decode_message(encode_message(message, self.config), self.config))


@pytest.fixture()
def rnd(key: Key, updates: dict[int, np.ndarray]) -> Round:
    return Round(key, updates)


def ask(
    dec: PaillierDecryptor, contributors: Iterable[int], round_id: int = 5
) -> DecryptionRequest:
    return DecryptionRequest(
        round_id=round_id, recipient=dec.party_id, contributors=tuple(contributors)
    )


def request_for(requests: list[DecryptionRequest], dec: PaillierDecryptor) -> DecryptionRequest:
    (request,) = [r for r in requests if r.recipient == dec.party_id]
    return request


def _honest_upload_phase(r: Round, ids: list[int] | None = None) -> None:
    for i in ids if ids is not None else r.ids:
        for fwd in r.server.handle(r.wire(r.uploads[i])):
            for dec in r.decryptors:
                dec.handle(r.wire(fwd))


# ----------------------------------------------------------------------------- honest rounds


def test_hand_driven_round_matches_plain_sum(rnd: Round, updates: dict[int, np.ndarray]) -> None:
    _honest_upload_phase(rnd)
    requests = rnd.server.request_decryption()
    assert all(r.contributors == tuple(rnd.ids) for r in requests)
    assert sorted(r.recipient for r in requests) == [d.party_id for d in rnd.decryptors]
    for dec in rnd.decryptors[:4]:
        for reply in dec.handle(rnd.wire(request_for(requests, dec))):
            rnd.server.handle(rnd.wire(reply))
    total = rnd.server.finalize()
    expected = np.sum([updates[i] for i in rnd.ids], axis=0)
    assert np.max(np.abs(total - expected)) <= N * _quantum(rnd.config)


def test_run_round_with_dropouts_at_every_stage(key: Key, updates: dict[int, np.ndarray]) -> None:
    ids = sorted(updates)
    for stage in ("advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking"):
        out = run_round(updates, dropouts={stage: [ids[1]]}, seed=3, key=key, round_id=1)
        contributed = [
            i
            for i in ids
            if not (stage in ("advertise_keys", "share_keys", "masked_input") and i == ids[1])
        ]
        assert out.survivors == tuple(contributed)
        expected = np.sum([updates[i] for i in contributed], axis=0)
        assert np.max(np.abs(out.aggregate - expected)) <= len(contributed) * _quantum(out.config)
        uploads = [m for m in out.server_view if isinstance(m, Upload)]
        assert [m.client_id for m in uploads] == contributed


def test_too_few_decryptors_aborts(key: Key, updates: dict[int, np.ndarray]) -> None:
    ids = sorted(updates)
    with pytest.raises(ThresholdNotMetError):  # 3 decryptors left, t = 4
        run_round(updates, dropouts={"unmasking": ids[:3]}, key=key)


def test_too_few_contributions_aborts(key: Key) -> None:
    rng = np.random.default_rng(1)
    ups = {i: rng.uniform(-1, 1, 10) for i in range(N)}
    # min aggregate size is C + 2 = 2 by default; ask for 5 and let 2 clients drop
    threat = ThreatModel(min_aggregate_size=5, dropout_fraction=0.0)
    with pytest.raises(ThresholdNotMetError):
        run_round(ups, dropouts={"masked_input": [0, 1]}, key=key, threat_model=threat)


def test_separate_committee_with_dropouts(updates: dict[int, np.ndarray]) -> None:
    out = run_round(
        updates,
        committee_size=5,
        decryptor_dropouts=[1, 2],
        key_bits=512,
        hazmat_allow_weak_key=True,
        threat_model=ThreatModel(colluding_fraction=0.0, dropout_fraction=0.4),
    )
    # l = 5, c = 0: t = floor(5 / 2) + 1 = 3 = 5 - 2 dropped decryptors
    assert out.config.public_key.n_decryptors == 5 and out.config.public_key.threshold == 3
    partials = [m.partial.index for m in out.server_view if isinstance(m, PartialDecryptionMessage)]
    assert partials == [3, 4, 5]
    assert np.max(np.abs(out.aggregate - np.sum(list(updates.values()), axis=0))) <= N * _quantum(
        out.config
    )


def test_curious_variant_without_signatures_or_proofs(updates: dict[int, np.ndarray]) -> None:
    out = run_round(
        updates,
        key_bits=512,
        hazmat_allow_weak_key=True,
        threat_model=ThreatModel(server=ServerClass.CURIOUS),
    )
    assert not out.config.signed_contributions and not out.config.decryption_proofs
    assert out.config.public_key.threshold == 2
    partials = [m for m in out.server_view if isinstance(m, PartialDecryptionMessage)]
    assert partials and all(m.partial.proof is None for m in partials)
    assert np.max(np.abs(out.aggregate - np.sum(list(updates.values()), axis=0))) <= N * _quantum(
        out.config
    )


def test_key_reuse_checks(key: Key, updates: dict[int, np.ndarray]) -> None:
    pk, shares = key
    with pytest.raises(InvalidParameterError):
        run_round(updates, key=(pk, shares[:-1]))
    weak = deal_threshold_key(n_decryptors=N, threshold=2, key_bits=256, hazmat_allow_weak_key=True)
    with pytest.raises(InvalidParameterError):  # t = 2 is below the malicious-server minimum
        run_round(updates, key=weak)
    with pytest.raises(InvalidParameterError):
        run_round(updates, key=key, dropouts={"nonsense": [10]})
    with pytest.raises(InvalidParameterError):
        run_round(updates, key=key, dropouts={"unmasking": [999]})


# ----------------------------------------------------------------------------- state machines


def test_stage_order_is_enforced(rnd: Round) -> None:
    _honest_upload_phase(rnd, rnd.ids[:3])
    partial = rnd.decryptors[0]
    with pytest.raises(StageError):
        rnd.server.finalize()
    with pytest.raises(StageError):  # no partial decryptions before the request
        rnd.server.handle(
            PartialDecryptionMessage(
                round_id=5, partial=partial_decrypt(partial._share, rnd.uploads[rnd.ids[0]].vector)
            )
        )
    seen = [rnd.server.stage]
    request = request_for(rnd.server.request_decryption(), partial)
    seen.append(rnd.server.stage)
    assert seen == [Stage.MASKED_INPUT, Stage.UNMASKING]
    with pytest.raises(ReplayError):  # uploads are closed
        rnd.server.handle(rnd.uploads[rnd.ids[4]])
    with pytest.raises(StageError):
        rnd.server.request_decryption()
    with pytest.raises(StageError):
        rnd.server.handle(request)
    replies = partial.handle(request)
    with pytest.raises(AlreadyFinalizedError):  # one decryption per round
        partial.handle(request)
    rnd.server.handle(replies[0])
    with pytest.raises(ReplayError):
        rnd.server.handle(replies[0])
    with pytest.raises(ThresholdNotMetError):
        rnd.server.finalize()


def test_replayed_cross_round_and_foreign_uploads(
    rnd: Round, key: Key, updates: dict[int, np.ndarray]
) -> None:
    up = rnd.uploads[rnd.ids[0]]
    rnd.server.handle(up)
    with pytest.raises(ReplayError):
        rnd.server.handle(up)
    other_round = Round(key, updates, round_id=6)
    with pytest.raises(ReplayError):  # a message of round 6 in round 5
        rnd.server.handle(other_round.uploads[rnd.ids[1]])
    relabelled = replace(other_round.uploads[rnd.ids[1]], round_id=5)
    with pytest.raises(ReplayError):  # bound to round 6's execution context
        rnd.server.handle(relabelled)
    with pytest.raises(AuthenticationError):  # the signature binds round and execution
        rnd.server.handle(replace(relabelled, context=rnd.execution))
    with pytest.raises(MessageError):
        rnd.server.handle(replace(up, client_id=999))
    assert rnd.server.contributors == (rnd.ids[0],)


def test_client_uploads_once(rnd: Round, updates: dict[int, np.ndarray]) -> None:
    i = rnd.ids[0]
    request = rnd.requests[i]
    # the identity already uploaded in this round (its process-wide round log says so)
    with pytest.raises(ReplayError):
        PaillierClient(rnd.config, i, rnd.identities[i]).upload(request, updates[i])
    client = PaillierClient(rnd.config, i, rnd.identities[i], round_log=RoundLog.in_memory())
    client.upload(request, updates[i], rng=rnd.rng)
    with pytest.raises(AlreadyFinalizedError):
        client.upload(request, updates[i], rng=rnd.rng)
    with pytest.raises(InvalidParameterError):
        PaillierClient(rnd.config, 999, IdentityKey.generate())
    with pytest.raises(InvalidParameterError):  # the wrong identity key
        PaillierClient(rnd.config, i, IdentityKey.generate())


def test_bad_partial_is_rejected_without_state_change(rnd: Round) -> None:
    _honest_upload_phase(rnd)
    reply = rnd.decryptors[0].handle(
        request_for(rnd.server.request_decryption(), rnd.decryptors[0])
    )[0]
    assert isinstance(reply, PartialDecryptionMessage)
    n, n2 = rnd.config.public_key.n, rnd.config.public_key.n_squared
    values = list(reply.partial.values)
    values[0] = values[0] * (1 + n) % n2  # would shift the decrypted sum
    forged = replace(reply, partial=replace(reply.partial, values=tuple(values)))
    with pytest.raises(AuthenticationError):
        rnd.server.handle(forged)
    assert rnd.server.partials_received == 0
    rnd.server.handle(reply)
    assert rnd.server.partials_received == 1


# ----------------------------------------------------------------------------- wire format


def test_wire_roundtrip(rnd: Round) -> None:
    up = rnd.uploads[rnd.ids[0]]
    assert rnd.wire(up) == up
    req = DecryptionRequest(round_id=5, recipient=3, contributors=(10, 11, 12))
    assert rnd.wire(req) == req
    _honest_upload_phase(rnd)
    reply = rnd.decryptors[1].handle(
        request_for(rnd.server.request_decryption(), rnd.decryptors[1])
    )[0]
    assert rnd.wire(reply) == reply


def test_malformed_messages_are_typed_errors(rnd: Round) -> None:
    cfg = rnd.config
    up = encode_message(rnd.uploads[rnd.ids[0]], cfg)
    req = encode_message(DecryptionRequest(round_id=5, recipient=1, contributors=(10, 11)), cfg)
    _honest_upload_phase(rnd)
    first = rnd.decryptors[0]
    part = encode_message(first.handle(request_for(rnd.server.request_decryption(), first))[0], cfg)
    bad: list[bytes] = [
        b"",
        up[:10],
        b"XXXX" + up[4:],
        up[:4] + b"\x09" + up[5:],  # version
        up[:5] + b"\x07" + up[6:],  # type
        up[:-1],
        up + b"\x00",
        up[:54] + b"\x05" + up[55:],  # signature length (after client id and context)
        req + b"\x00" * 8,
        req[:22] + (10_000).to_bytes(4, "big") + req[26:],
        encode_message(UploadRequest(round_id=5, recipient=10, nonces=()), cfg) + b"\x00",
        encode_message(rnd.requests[10], cfg)[:-1],
        part[:-1],
        part + b"\x00",
    ]
    for blob in bad:
        with pytest.raises(MessageError):
            decode_message(blob, cfg)
    with pytest.raises(MessageError):
        decode_message("text", cfg)  # type: ignore[arg-type]


def test_every_corrupted_byte_is_a_message_error_or_decodes(rnd: Round) -> None:
    """The decoder's only refusal for incoming bytes is MessageError, whatever byte is hit."""
    cfg = rnd.config
    blobs = [
        encode_message(rnd.uploads[rnd.ids[0]], cfg),
        encode_message(rnd.requests[rnd.ids[0]], cfg),
        encode_message(NonceRequest(round_id=5, recipient=1), cfg),
        encode_message(DecryptionRequest(round_id=5, recipient=1, contributors=(10, 11)), cfg),
    ]
    _honest_upload_phase(rnd)
    first = rnd.decryptors[0]
    reply = first.handle(request_for(rnd.server.request_decryption(), first))[0]
    blobs.append(encode_message(reply, cfg))
    refused = 0
    for blob in blobs:
        for i in range(len(blob)):
            for value in (0x00, blob[i] ^ 0xFF):
                try:
                    decode_message(blob[:i] + bytes([value]) + blob[i + 1 :], cfg)
                except MessageError:
                    refused += 1
    assert refused > 0


def test_parties_refuse_objects_that_are_not_messages(rnd: Round) -> None:
    i = rnd.ids[0]
    client = PaillierClient(
        rnd.config, i, rnd.identities[i], update=np.zeros(D), round_log=RoundLog.in_memory()
    )
    decryptor = rnd.decryptors[0]
    for party in (client, decryptor, PaillierParty(client, decryptor), rnd.server):
        for junk in (b"not a message", None, rnd.config):
            with pytest.raises(MessageError, match="not a Paillier message"):
                party.handle(junk)  # type: ignore[arg-type]
    # a genuine message the role does not accept is a stage error, as documented
    with pytest.raises(StageError):
        client.handle(NonceRequest(round_id=5, recipient=i))
    with pytest.raises(StageError):
        PaillierParty(client, None).handle(NonceRequest(round_id=5, recipient=i))
    with pytest.raises(InvalidParameterError, match="without an update"):
        PaillierClient(rnd.config, i, rnd.identities[i]).handle(rnd.requests[i])
    client.handle(rnd.requests[i])
    with pytest.raises(AlreadyFinalizedError):
        client.handle(rnd.requests[i])


# ----------------------------------------------------------------------------- attacks


def test_positive_control_unchecked_decryptors_leak_one_update(
    rnd: Round, updates: dict[int, np.ndarray]
) -> None:
    # without the decryptors' checks, t raw partial decryptions of one client's ciphertext
    # give that client's update to the server: the attack is real
    pk, shares = rnd.config.public_key, [d._share for d in rnd.decryptors]
    victim = rnd.ids[2]
    vector = rnd.uploads[victim].vector
    partials = [partial_decrypt(s, vector, prove=False) for s in shares[: pk.threshold]]
    plain = combine_partial_decryptions(pk, vector, partials, verify=False)
    ring = rnd.config.packing.unpack(plain, D, summands=1)
    leaked = rnd.config.encoder.decode_sum(ring, 1)
    assert np.max(np.abs(leaked - updates[victim])) <= _quantum(rnd.config)


def test_attack_server_asks_to_decrypt_one_clients_ciphertext(rnd: Round) -> None:
    victim = rnd.ids[2]
    # 1. forward only the victim's upload and ask for it alone: below the minimum aggregate
    for dec in rnd.decryptors:
        dec.handle(rnd.wire(rnd.uploads[victim]))
        with pytest.raises(ProtocolAbortError):
            dec.handle(ask(dec, (victim,)))
    # 2. pad with fabricated contributions: the server cannot sign for other clients
    pk = rnd.config.public_key
    zeros = PaillierEncryptor(
        pk.paillier, rnd.config.packing, encryption_base=pk.encryption_base
    ).encrypt(np.zeros(D, dtype=np.uint64))
    server_key = IdentityKey.generate()
    for other in rnd.ids:
        if other == victim:
            continue
        fake = Upload(
            round_id=5,
            client_id=other,
            vector=zeros,
            context=rnd.execution,
            signature=server_key.sign(b"anything"),
        )
        for dec in rnd.decryptors:
            with pytest.raises(AuthenticationError):
                dec.handle(fake)
    # 3. replay the victim's own signed upload under other ids, or twice
    for dec in rnd.decryptors:
        with pytest.raises(AuthenticationError):
            dec.handle(replace(rnd.uploads[victim], client_id=rnd.ids[0]))
        with pytest.raises(ReplayError):
            dec.handle(rnd.uploads[victim])
    # 4. claim a set that differs from what was forwarded
    for dec in rnd.decryptors:
        with pytest.raises(ProtocolAbortError):
            dec.handle(ask(dec, sorted((victim, rnd.ids[0], rnd.ids[1]))))
    # no decryptor released anything, and every refusal left its state intact: an honest
    # completion of the round still works for the decryptors
    assert all(not d._decrypted for d in rnd.decryptors)


def test_attack_differencing_within_a_round_is_refused(rnd: Round) -> None:
    # decrypt the full aggregate with quorum Q1, then ask the others for "all but the victim"
    _honest_upload_phase(rnd)
    requests = rnd.server.request_decryption()
    first = [d.handle(request_for(requests, d)) for d in rnd.decryptors[:4]]
    assert all(len(r) == 1 for r in first)
    victim = rnd.ids[2]
    smaller = [i for i in rnd.ids if i != victim]
    for dec in rnd.decryptors[:4]:
        with pytest.raises(AlreadyFinalizedError):
            dec.handle(ask(dec, smaller))
    # the two decryptors left hold the victim's contribution already and refuse the other set
    for dec in rnd.decryptors[4:]:
        with pytest.raises(ProtocolAbortError):
            dec.handle(ask(dec, smaller))
    # and 2t - l = 2 > c = 0: no second quorum of 4 exists among the 2 fresh decryptors anyway


def test_decryptor_refuses_unsorted_or_foreign_requests(rnd: Round) -> None:
    _honest_upload_phase(rnd)
    dec = rnd.decryptors[0]
    with pytest.raises(MessageError):
        dec.handle(ask(dec, reversed(rnd.ids)))
    with pytest.raises(ReplayError):
        dec.handle(ask(dec, rnd.ids, round_id=4))
    with pytest.raises(MessageError):  # addressed to another decryptor
        dec.handle(ask(rnd.decryptors[1], rnd.ids))
    reply = rnd.decryptors[1].handle(ask(rnd.decryptors[1], rnd.ids))[0]
    with pytest.raises(StageError):
        dec.handle(reply)
    assert len(dec.handle(ask(dec, rnd.ids))) == 1


def test_encrypted_vectors_in_view_are_fresh_units(
    key: Key, updates: dict[int, np.ndarray]
) -> None:
    # two runs on the same inputs: no ciphertext repeats (randomised encryption)
    a = run_round(updates, key=key, seed=1)
    b = run_round(updates, key=key, seed=1)
    cts_a = {c for m in a.server_view if isinstance(m, Upload) for c in m.vector.ciphertexts}
    cts_b = {c for m in b.server_view if isinstance(m, Upload) for c in m.vector.ciphertexts}
    assert cts_a.isdisjoint(cts_b)
    assert all(
        isinstance(m.vector, EncryptedVector) for m in a.server_view if isinstance(m, Upload)
    )


# ----------------------------------------------------------------------------- simulate()


def test_simulate_dispatches_to_paillier(key: Key, updates: dict[int, np.ndarray]) -> None:
    result = protocols.simulate(updates, protocol="paillier", key=key, seed=2, round_id=77)
    assert result.protocol == "paillier"
    assert result.survivors == tuple(sorted(updates)) and result.dropped == ()
    assert result.details["round_id"] == 77 and result.details["threshold"] == 4
    expected = np.sum(list(updates.values()), axis=0)
    # default encoder: 32-bit ring on [-1, 1] for 6 clients, one quantum per summand at most
    quantum = 2.0 / ((2**32 - 1) // N)
    assert np.max(np.abs(result.aggregate - expected)) <= N * quantum
    uploads = [m for m in result.server_view if isinstance(m, Upload)]
    partials = [m for m in result.server_view if isinstance(m, PartialDecryptionMessage)]
    assert len(uploads) == N and len(partials) == 4


def test_simulate_weighted_mean_reveals_only_sums(key: Key, updates: dict[int, np.ndarray]) -> None:
    weights = {cid: float(k + 1) for k, cid in enumerate(sorted(updates))}
    dropped = sorted(updates)[0]
    result = protocols.simulate(
        updates, protocol="paillier", key=key, weights=weights, dropouts={"masked_input": [dropped]}
    )
    alive = [c for c in updates if c != dropped]
    assert result.weight_sum == pytest.approx(sum(weights[c] for c in alive), abs=1e-6)
    expected = sum(weights[c] * updates[c] for c in alive) / sum(weights[c] for c in alive)
    assert np.max(np.abs(result.mean - expected)) < 1e-6


def test_simulate_options(key: Key, updates: dict[int, np.ndarray]) -> None:
    quiet = protocols.simulate(updates, protocol="paillier", key=key, wire=False, record_view=False)
    assert quiet.server_view == ()
    with pytest.raises(InvalidParameterError):
        protocols.simulate(updates, protocol="paillier", key=key, graph="complete")
    with pytest.raises(InvalidParameterError):  # a masking-protocol Hardening does not apply
        protocols.simulate(updates, protocol="paillier", key=key, hardening=object())
    with pytest.raises(InvalidParameterError):  # a client listed at two stages
        protocols.simulate(
            updates,
            protocol="paillier",
            key=key,
            dropouts={"masked_input": [10], "unmasking": [10]},
        )


def test_simulate_passes_decryption_workers(key: Key, updates: dict[int, np.ndarray]) -> None:
    one = protocols.simulate(updates, protocol="paillier", key=key, seed=5)
    two = protocols.simulate(updates, protocol="paillier", key=key, seed=5, decryption_workers=2)
    np.testing.assert_array_equal(one.aggregate, two.aggregate)
    with pytest.raises(InvalidParameterError):  # checked before any work
        protocols.simulate(updates, protocol="paillier", key=key, decryption_workers=0)
    with pytest.raises(InvalidParameterError, match="decryption_workers"):
        protocols.simulate({1: np.zeros(3), 2: np.zeros(3)}, decryption_workers=2)


def test_weighted_encoder_roundtrip() -> None:
    base = FixedPointEncoder.symmetric(2.0, bits=24, max_clients=4)
    enc = WeightedEncoder(base, FixedPointEncoder(bits=24, lo=0.0, hi=8.0, max_clients=4))
    assert enc.encoded_length(11) == 11 and enc.max_clients == 4
    rng = np.random.default_rng(0)
    xs = [np.concatenate([rng.uniform(-2, 2, 10), [float(w)]]) for w in (1, 3, 8, 0)]
    total = np.sum([enc.encode(x, rng=rng) for x in xs], axis=0, dtype=np.uint64)
    decoded = enc.decode_sum(total, 4)
    assert np.max(np.abs(decoded - np.sum(xs, axis=0))) <= 4 * max(
        base.quantum, 8.0 / enc.weight.levels
    )
    with pytest.raises(InvalidParameterError):
        WeightedEncoder(base, FixedPointEncoder(bits=20, lo=0.0, hi=1.0, max_clients=4))


def test_unhardened_baseline_leaks_one_update(key: Key, updates: dict[int, np.ndarray]) -> None:
    # the same scripted attack against deliberately unchecked decryptors succeeds
    r = Round(key, updates, hardening=PaillierHardening.unhardened())
    victim = r.ids[3]
    weak = r.decryptors
    partials = []
    for dec in weak[: r.config.public_key.threshold]:
        dec.handle(r.uploads[victim])
        (reply,) = dec.handle(ask(dec, (victim,)))
        assert isinstance(reply, PartialDecryptionMessage)
        partials.append(reply.partial)
    vector = r.uploads[victim].vector  # each weak decryptor's "aggregate" is this ciphertext
    plain = combine_partial_decryptions(
        r.config.public_key, vector, partials, context=r.config.context
    )
    ring = r.config.packing.unpack(plain, D, summands=1)
    leaked = r.config.encoder.decode_sum(ring, 1)
    assert np.max(np.abs(leaked - updates[victim])) <= _quantum(r.config)
    # while a hardened decryptor refuses the very same request
    hardened = Round(key, updates)
    hardened.decryptors[0].handle(hardened.uploads[victim])
    with pytest.raises(ProtocolAbortError):
        hardened.decryptors[0].handle(ask(hardened.decryptors[0], (victim,)))


def _cancelling_upload(r: Round) -> Upload:
    # a client colluding with the server submits the inverse of all honest ciphertexts but
    # the victim's (ids[0]): the aggregate (of full size!) would decrypt to the victim alone
    colluder, honest = r.ids[-1], r.ids[1:-1]
    pk, packing = r.config.public_key, r.config.packing
    product = aggregate(pk.paillier, packing, [r.uploads[i].vector for i in honest])
    cancel = EncryptedVector(
        product.key_id,
        product.length,
        tuple(pow(c, -1, pk.n_squared) for c in product.ciphertexts),
    )
    # it signs with its own (valid) identity key and attaches the proof of its honest upload
    return Upload(
        round_id=r.config.round_id,
        client_id=colluder,
        vector=cancel,
        context=r.execution,
        signature=r.identities[colluder].sign(
            contribution_transcript(r.config, r.execution, colluder, cancel.digest())
        ),
        proof=r.uploads[colluder].proof,
    )


def test_attack_colluding_client_cancels_the_others(
    rnd: Round, key: Key, updates: dict[int, np.ndarray]
) -> None:
    forged = _cancelling_upload(rnd)
    with pytest.raises(AuthenticationError):
        rnd.server.handle(rnd.wire(forged))
    for dec in rnd.decryptors:
        with pytest.raises(AuthenticationError):
            dec.handle(forged)
    # baseline (plaintext proofs not checked): the same attack leaks the victim
    weak_round = Round(key, updates, hardening=PaillierHardening(verify_plaintext_proofs=False))
    forged = _cancelling_upload(weak_round)
    victim, honest = weak_round.ids[0], weak_round.ids[1:-1]
    pk, packing = weak_round.config.public_key, weak_round.config.packing
    weak = weak_round.decryptors[: pk.threshold]
    contributions = [weak_round.uploads[i] for i in (victim, *honest)] + [forged]
    partials = []
    for dec in weak:
        for up in contributions:
            dec.handle(up)
        (reply,) = dec.handle(ask(dec, sorted(weak_round.ids)))
        assert isinstance(reply, PartialDecryptionMessage)
        partials.append(reply.partial)
    total = aggregate(pk.paillier, packing, [u.vector for u in contributions])
    plain = combine_partial_decryptions(pk, total, partials, context=weak_round.config.context)
    ring = packing.unpack(plain, D, summands=len(contributions))
    leaked = weak_round.config.encoder.decode_sum(ring, 1)
    assert np.max(np.abs(leaked - updates[victim])) <= _quantum(weak_round.config)


def test_upload_without_plaintext_proof_is_refused(rnd: Round) -> None:
    up = rnd.uploads[rnd.ids[0]]
    assert up.proof is not None
    with pytest.raises(AuthenticationError):
        rnd.server.handle(replace(up, proof=None))
    other = rnd.uploads[rnd.ids[1]].proof
    with pytest.raises(AuthenticationError):  # another client's proof
        rnd.server.handle(replace(up, proof=other))
    rnd.server.handle(up)
    assert rnd.server.contributors == (rnd.ids[0],)
