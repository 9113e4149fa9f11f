"""Scripted attacks on the Paillier round: a server that replays an execution, splits the
decryptors into two quorums, or leans on colluding decryptors; and clients that try to
abort a round.

Each attack is run by a scripted server that drives the real :class:`PaillierClient` and
:class:`PaillierDecryptor` state machines (``handle``), with real cryptography. A positive
control runs the same script against a deliberately weakened configuration (a decryptor
check switched off, or the parameters an adversary count rounded down would give) and
recovers the victim's update; the defended configuration refuses with a typed error.

Keys are 512-bit (INSECURE, for speed; no check depends on the key size).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from protocols import Stage
from protocols.paillier import (
    DecryptionRequest,
    DecryptorNonce,
    NonceRequest,
    PaillierClient,
    PaillierDecryptor,
    PaillierHardening,
    PaillierMessage,
    PaillierRoundConfig,
    PaillierRoundRunner,
    PaillierSetup,
    PartialDecryptionMessage,
    Upload,
    UploadRequest,
    decode_message,
    encode_message,
    setup_paillier_round,
)
from protocols.round_log import RoundLog
from secagg.errors import (
    AlreadyFinalizedError,
    AuthenticationError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
    SecAggError,
    StageError,
    ThresholdNotMetError,
)
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.paillier import aggregate
from secagg.primitives.threshold_paillier import (
    PartialDecryption,
    combine_partial_decryptions,
    partial_decrypt,
)
from threat_models.model import ServerClass, ThreatModel
from threat_models.paillier import minimum_decryption_threshold, paillier_parameters

D = 3
KEY = {"key_bits": 512, "hazmat_allow_weak_key": True}
U64 = npt.NDArray[np.uint64]


def _updates(n: int, seed: int = 7) -> dict[int, npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return {cid: rng.uniform(-1.0, 1.0, D) for cid in range(1, n + 1)}


def _setup(
    updates: Mapping[int, npt.NDArray[np.float64]],
    *,
    threat_model: ThreatModel | None = None,
    round_id: int = 90,
    **options: object,
) -> PaillierSetup:
    return setup_paillier_round(
        updates,
        round_id=round_id,
        seed=1,
        threat_model=threat_model,
        encoder=FixedPointEncoder.symmetric(1.0, bits=32, max_clients=len(updates)),
        **KEY,  # type: ignore[arg-type]
        **options,  # type: ignore[arg-type]
    )


def _open_uploads(runner: PaillierRoundRunner) -> dict[int, Upload]:
    """Run the commitment stage honestly, hand out the upload requests; return the uploads
    (not yet delivered: the scripted server decides where they go)."""
    runner.run_until(Stage.MASKED_INPUT)
    runner.deliver_requests()
    return {
        cid: m for cid, replies in runner.outbox.items() for m in replies if isinstance(m, Upload)
    }


def _ring_sum(
    config: PaillierRoundConfig,
    uploads: Sequence[Upload],
    partials: Sequence[PartialDecryption],
) -> U64:
    """What the server gets from ``t`` partial decryptions of the product of ``uploads``."""
    pk = config.public_key
    product = aggregate(pk.paillier, config.packing, [u.vector for u in uploads])
    plain = combine_partial_decryptions(
        pk, product, partials[: pk.threshold], verify=False, context=config.context
    )
    return config.packing.unpack(plain, config.encoded_length, summands=len(uploads))


def _difference(config: PaillierRoundConfig, a: U64, b: U64) -> npt.NDArray[np.float64]:
    """The decoded difference of two ring sums that differ by one contribution."""
    mask = np.uint64((1 << config.encoder.bits) - 1)
    diff = (a.astype(np.uint64) - b.astype(np.uint64)) & mask
    return np.asarray(config.encoder.decode_sum(diff, 1), dtype=np.float64)


def _quantum(config: PaillierRoundConfig) -> float:
    encoder = config.encoder
    assert isinstance(encoder, FixedPointEncoder)
    return encoder.quantum


def _partials(replies: Iterable[PaillierMessage]) -> list[PartialDecryption]:
    return [m.partial for m in replies if isinstance(m, PartialDecryptionMessage)]


# ------------------------------------------------------------------ replaying an execution


class ReplayServer:
    """Round A honestly, then a second execution of the same round id with fresh decryptor
    objects that gets round A's signed, proven uploads minus the victim's."""

    def __init__(self, hardening: PaillierHardening | None = None) -> None:
        self.updates = _updates(6)
        self.victim = 3
        self.setup = _setup(self.updates, committee_size=5, hardening=hardening)
        self.config = self.setup.runner.config
        runner = self.setup.runner
        runner.run()  # execution A: the honest round
        self.ring_a = runner.server.result.ring_sum
        self.uploads = {m.client_id: m for m in runner.server_view if isinstance(m, Upload)}
        self.old_nonces = tuple(m for m in runner.server_view if isinstance(m, DecryptorNonce))
        self.shares = {s.index: s for s in self.setup.shares}

    def fresh_decryptor(
        self, party: int, hardening: PaillierHardening, round_log: RoundLog | None = None
    ) -> PaillierDecryptor:
        """The same key share and identity in a new object (a restart, a second process)."""
        return PaillierDecryptor(
            self.config,
            self.shares[self.config.decryptor_parties[party]],
            identity_key=self.setup.decryptor_identities[party],
            hardening=hardening,
            round_log=round_log,
        )

    def replay(
        self, decryptors: Mapping[int, PaillierDecryptor], *, new_context: bool = False
    ) -> tuple[list[PartialDecryption], list[str]]:
        """Execution B of the same round id; returns the partials obtained and the refusals."""
        round_id = self.config.round_id
        errors: list[str] = []
        fresh: list[DecryptorNonce] = []
        for party, dec in decryptors.items():
            try:
                fresh += [
                    m
                    for m in dec.handle(NonceRequest(round_id=round_id, recipient=party))
                    if isinstance(m, DecryptorNonce)
                ]
            except SecAggError as exc:
                errors.append(type(exc).__name__)
        nonces = tuple(sorted(fresh, key=lambda m: m.party_id)) if new_context else self.old_nonces
        kept = [self.uploads[c] for c in sorted(self.uploads) if c != self.victim]
        partials: list[PartialDecryption] = []
        for party, dec in decryptors.items():
            try:
                dec.handle(UploadRequest(round_id=round_id, recipient=party, nonces=nonces))
                for upload in kept:
                    dec.handle(upload)
                named = tuple(u.client_id for u in kept)
                partials += _partials(
                    dec.handle(
                        DecryptionRequest(round_id=round_id, recipient=party, contributors=named)
                    )
                )
            except SecAggError as exc:
                errors.append(type(exc).__name__)
        return partials, errors

    def recovered(self, partials: Sequence[PartialDecryption]) -> npt.NDArray[np.float64]:
        kept = [self.uploads[c] for c in sorted(self.uploads) if c != self.victim]
        return _difference(self.config, self.ring_a, _ring_sum(self.config, kept, partials))


def test_replayed_execution_positive_control_recovers_the_victim() -> None:
    attack = ReplayServer()
    weak = replace(PaillierHardening(), single_execution=False, fresh_context=False)
    decryptors = {
        p: attack.fresh_decryptor(p, weak, RoundLog.in_memory())
        for p in sorted(attack.config.decryptor_parties)
    }
    partials, errors = attack.replay(decryptors)
    assert not errors and len(partials) >= attack.config.public_key.threshold
    leaked = attack.recovered(partials)
    # A minus (A without v): the victim's own update, to the quantum of its stochastic rounding
    assert np.max(np.abs(leaked - attack.updates[attack.victim])) <= _quantum(attack.config)


def test_replayed_execution_is_refused_by_the_round_log() -> None:
    attack = ReplayServer()
    # same identities in new objects: the process-wide log of each identity holds the round
    decryptors = {
        p: attack.fresh_decryptor(p, PaillierHardening())
        for p in sorted(attack.config.decryptor_parties)
    }
    partials, errors = attack.replay(decryptors)
    assert partials == []
    assert errors.count("ReplayError") == len(decryptors)


@pytest.mark.parametrize("new_context", [False, True], ids=["old-context", "new-context"])
def test_replayed_execution_is_refused_when_the_round_log_is_lost(new_context: bool) -> None:
    # the log is gone (a new machine, a wiped disk): the fresh nonces still stop the replay
    attack = ReplayServer()
    decryptors = {
        p: attack.fresh_decryptor(p, PaillierHardening(), RoundLog.in_memory())
        for p in sorted(attack.config.decryptor_parties)
    }
    partials, errors = attack.replay(decryptors, new_context=new_context)
    assert partials == []
    assert errors and set(errors) == {"ReplayError"}


def test_replayed_upload_relabelled_to_the_new_context_fails_its_signature() -> None:
    attack = ReplayServer()
    party = min(attack.config.decryptor_parties)
    dec = attack.fresh_decryptor(party, PaillierHardening(), RoundLog.in_memory())
    round_id = attack.config.round_id
    (nonce,) = dec.handle(NonceRequest(round_id=round_id, recipient=party))
    assert isinstance(nonce, DecryptorNonce)
    # the other decryptors' nonces are replayed from execution A (the server holds them)
    others = tuple(m for m in attack.old_nonces if m.party_id != party)
    nonces = tuple(sorted((nonce, *others), key=lambda m: m.party_id))
    dec.handle(UploadRequest(round_id=round_id, recipient=party, nonces=nonces))
    assert dec.execution is not None
    for upload in attack.uploads.values():
        with pytest.raises(ReplayError):
            dec.handle(upload)
        with pytest.raises(AuthenticationError):
            dec.handle(replace(upload, context=dec.execution))


def test_client_refuses_a_second_execution_of_its_round() -> None:
    setup = _setup(_updates(6))
    runner = setup.runner
    uploads = _open_uploads(runner)
    cid = 2
    request = runner.requests[cid]
    assert isinstance(request, UploadRequest) and cid in uploads
    # a new client object with the same identity (restart within the process)
    again = PaillierClient(runner.config, cid, setup.identities[cid], update=np.zeros(D))
    with pytest.raises(ReplayError):
        again.handle(request)


def test_restarted_decryptor_refuses_a_second_execution(tmp_path: Path) -> None:
    setup = _setup(_updates(6), committee_size=5)
    config = setup.runner.config
    party = min(config.decryptor_parties)
    share = next(s for s in setup.shares if s.index == config.decryptor_parties[party])
    identity = setup.decryptor_identities[party]
    path = tmp_path / "keys" / "decryptor.rounds"
    request = NonceRequest(round_id=config.round_id, recipient=party)
    first = PaillierDecryptor(config, share, identity_key=identity, round_log=RoundLog.at(path))
    assert len(first.handle(request)) == 1
    # the process restarts: a new object, a new log object over the same file
    restarted = PaillierDecryptor(
        config, share, identity_key=identity, round_log=RoundLog.at(path)
    )
    with pytest.raises(ReplayError):
        restarted.handle(request)
    # an upload request of that round is refused as well (no nonce of this object in it)
    with pytest.raises(StageError):
        restarted.handle(UploadRequest(round_id=config.round_id, recipient=party, nonces=()))
    assert not restarted.decrypted


def test_restarted_client_refuses_a_second_upload(tmp_path: Path) -> None:
    setup = _setup(_updates(6))
    runner = setup.runner
    runner.run_until(Stage.MASKED_INPUT)
    config = runner.config
    request = runner.pending[1]
    assert isinstance(request, UploadRequest)
    path = tmp_path / "client.rounds"
    first = PaillierClient(config, 1, setup.identities[1], round_log=RoundLog.at(path))
    first.upload(request, np.zeros(D))
    restarted = PaillierClient(config, 1, setup.identities[1], round_log=RoundLog.at(path))
    with pytest.raises(ReplayError):
        restarted.upload(request, np.zeros(D))


# ------------------------------------------------------------------ two quorums, one round


@dataclass(frozen=True)
class QuorumCase:
    """A cohort where a floor count assumes 1 colluding decryptor and there are 2.

    ``assumed`` is a colluding fraction that yields the floor count's parameters.
    """

    n: int
    committee: int | None
    gamma: float
    assumed: float
    t_old: int
    t_new: int

    @property
    def size(self) -> int:
        return self.n if self.committee is None else self.committee


QUORUM_CASES = {
    # malicious server, the 30 clients are the decryptors, default gamma = 0.05: 2 colluders
    "clients-30": QuorumCase(n=30, committee=None, gamma=0.05, assumed=0.03, t_old=16, t_new=17),
    # a committee of 10 at gamma = 0.15: 2 colluding decryptors
    "committee-10": QuorumCase(n=6, committee=10, gamma=0.15, assumed=0.1, t_old=6, t_new=7),
}


def _quorum_split(
    setup: PaillierSetup, victim: int, colluders: Sequence[int]
) -> tuple[U64 | None, U64 | None, list[str]]:
    """Decrypt A (everyone) and A minus the victim with two quorums sharing the colluders.

    Honest decryptors of the first quorum are forwarded every upload, those of the second
    every upload but the victim's; the colluders decrypt both products with their shares.
    When the two quorums cannot be built from the colluders plus disjoint honest parties,
    the script reuses honest decryptors of the first quorum.
    """
    runner = setup.runner
    config = runner.config
    t = config.public_key.threshold
    uploads = _open_uploads(runner)
    everyone = [uploads[c] for c in sorted(uploads)]
    without = [u for u in everyone if u.client_id != victim]
    parties = sorted(config.decryptor_parties)
    honest = sorted((p for p in parties if p not in colluders), key=lambda p: p != victim)
    first, rest = honest[: t - 2], honest[t - 2 :]
    overlap = max(0, (t - 2) - len(rest))
    second = rest[: t - 2] + first[len(first) - overlap :]
    errors: list[str] = []
    partials_a: list[PartialDecryption] = []
    partials_b: list[PartialDecryption] = []
    decryptors = {p: runner.parties[p].decryptor for p in parties}
    for p in first:
        dec = decryptors[p]
        assert dec is not None
        for upload in everyone:
            dec.handle(upload)
        partials_a += _partials(
            dec.handle(
                DecryptionRequest(
                    round_id=config.round_id,
                    recipient=p,
                    contributors=tuple(u.client_id for u in everyone),
                )
            )
        )
    for p in second:
        dec = decryptors[p]
        assert dec is not None
        try:
            if p not in first:
                for upload in without:
                    dec.handle(upload)
            partials_b += _partials(
                dec.handle(
                    DecryptionRequest(
                        round_id=config.round_id,
                        recipient=p,
                        contributors=tuple(u.client_id for u in without),
                    )
                )
            )
        except SecAggError as exc:
            errors.append(type(exc).__name__)
    pk = config.public_key
    shares = {s.index: s for s in setup.shares}
    for p in colluders:
        share = shares[config.decryptor_parties[p]]
        for ups, out in ((everyone, partials_a), (without, partials_b)):
            product = aggregate(pk.paillier, config.packing, [u.vector for u in ups])
            out.append(partial_decrypt(share, product, prove=False, context=config.context))
    results: list[U64 | None] = []
    for ups, got in ((everyone, partials_a), (without, partials_b)):
        try:
            results.append(_ring_sum(config, ups, got))
        except ThresholdNotMetError:
            errors.append("ThresholdNotMetError")
            results.append(None)
    return results[0], results[1], errors


def _quorum_setup(case: QuorumCase, gamma: float) -> PaillierSetup:
    return _setup(
        _updates(case.n),
        threat_model=ThreatModel(colluding_fraction=gamma),
        committee_size=case.committee,
    )


@pytest.mark.parametrize("name", list(QUORUM_CASES))
def test_quorum_split_positive_control_with_colluders_rounded_down(name: str) -> None:
    case = QUORUM_CASES[name]
    # the threshold a floor-based count derives at gamma (1 colluder instead of 2) ...
    assert int(case.gamma * case.size) == 1
    assert minimum_decryption_threshold(ServerClass.MALICIOUS, case.size, 1) == case.t_old
    # ... is what a round gets when configured for one colluder: a weakened configuration
    setup = _quorum_setup(case, case.assumed)
    config = setup.runner.config
    assert config.public_key.threshold == case.t_old
    parties = sorted(config.decryptor_parties)
    victim = 1 if case.committee is None else 2
    colluders = [p for p in parties if p != victim][-2:]
    a, b, errors = _quorum_split(setup, victim, colluders)
    assert not errors and a is not None and b is not None
    leaked = _difference(config, a, b)
    assert np.max(np.abs(leaked - _updates(case.n)[victim])) <= _quantum(config)


@pytest.mark.parametrize("name", list(QUORUM_CASES))
def test_quorum_split_is_refused_with_colluders_counted_by_the_threat_model(name: str) -> None:
    case = QUORUM_CASES[name]
    threat = ThreatModel(colluding_fraction=case.gamma)
    params = paillier_parameters(case.n, threat, n_decryptors=case.committee)
    assert params.colluding_decryptors == threat.max_colluders(case.size) == 2
    assert params.threshold == case.t_new
    setup = _quorum_setup(case, case.gamma)
    config = setup.runner.config
    parties = sorted(config.decryptor_parties)
    victim = 1 if case.committee is None else 2
    colluders = [p for p in parties if p != victim][-2:]
    a, b, errors = _quorum_split(setup, victim, colluders)
    # the second quorum needs honest decryptors of the first, which decrypt once per round
    assert a is not None and b is None
    # (2t - l - 2 of them: the quorums' overlap beyond the 2 colluders)
    assert errors.count("AlreadyFinalizedError") == 2 * case.t_new - case.size - 2
    assert "ThresholdNotMetError" in errors


def test_curious_colluders_below_the_threshold_positive_control() -> None:
    # curious server, 30 clients as decryptors: 2 colluders (gamma = 0.05, rounded up). With
    # t = 2 (what a floor count gives) they decrypt the victim's ciphertext on their own.
    updates = _updates(30)
    victim, colluders = 1, (29, 30)
    assert minimum_decryption_threshold(ServerClass.CURIOUS, 30, int(0.05 * 30)) == 2
    weak = ThreatModel(server=ServerClass.CURIOUS, colluding_fraction=0.03)
    setup = _setup(updates, threat_model=weak)
    config = setup.runner.config
    assert config.public_key.threshold == 2
    upload = _open_uploads(setup.runner)[victim]
    shares = {s.index: s for s in setup.shares}
    partials = [
        partial_decrypt(shares[config.decryptor_parties[c]], upload.vector, prove=False)
        for c in colluders
    ]
    ring = _ring_sum(config, [upload], partials)
    leaked = config.encoder.decode_sum(ring, 1)
    assert np.max(np.abs(leaked - updates[victim])) <= _quantum(config)


def test_curious_colluders_below_the_threshold_are_refused() -> None:
    updates = _updates(30)
    victim, colluders = 1, (29, 30)
    threat = ThreatModel(server=ServerClass.CURIOUS)
    assert threat.max_colluders(30) == 2
    setup = _setup(updates, threat_model=threat)
    config = setup.runner.config
    assert config.public_key.threshold == 3
    upload = _open_uploads(setup.runner)[victim]
    shares = {s.index: s for s in setup.shares}
    partials = [
        partial_decrypt(shares[config.decryptor_parties[c]], upload.vector, prove=False)
        for c in colluders
    ]
    with pytest.raises(ThresholdNotMetError):
        _ring_sum(config, [upload], partials)


@pytest.mark.parametrize("server", list(ServerClass))
def test_threshold_exceeds_the_colluders_counted_by_the_threat_model(server: ServerClass) -> None:
    for gamma in (0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 0.3):
        threat = ThreatModel(server=server, colluding_fraction=gamma, dropout_fraction=0.0)
        for n in range(2, 41):
            for committee in (None, 5, 10, 16):
                size = n if committee is None else committee
                try:
                    p = paillier_parameters(n, threat, n_decryptors=committee)
                except SecAggError:
                    continue
                c = threat.max_colluders(size)
                assert p.colluding_decryptors == c
                assert p.threshold > c
                if server is not ServerClass.CURIOUS:
                    # any two quorums share more than the colluders: an honest decryptor
                    assert 2 * p.threshold - size > c


# ------------------------------------------------------------------ aborting a round


def test_invalid_upload_signature_only_drops_that_client() -> None:
    updates = _updates(6)
    setup = _setup(updates)
    runner = setup.runner
    uploads = _open_uploads(runner)
    cheat = 4
    runner.outbox[cheat] = [replace(uploads[cheat], signature=secrets.token_bytes(64))]
    runner.deliver_replies()
    assert runner.rejected == {cheat: ["AuthenticationError"]}
    result = runner.run()
    assert cheat not in result.survivors and len(result.survivors) == 5
    expected = np.sum([updates[c] for c in result.survivors], axis=0)
    assert np.max(np.abs(result.aggregate - expected)) <= 6 * _quantum(runner.config)


def test_server_verifies_uploads_on_receipt_without_state_change() -> None:
    setup = _setup(_updates(6))
    runner = setup.runner
    uploads = _open_uploads(runner)
    server = runner.server
    bad = [
        replace(uploads[1], signature=secrets.token_bytes(64)),
        replace(uploads[1], proof=uploads[2].proof),
        replace(uploads[1], context=secrets.token_bytes(32)),
        replace(uploads[1], client_id=2),
    ]
    for upload in bad:
        with pytest.raises((AuthenticationError, ReplayError)):
            server.handle(upload)
    assert len(server.contributors) == 0
    server.handle(uploads[1])
    assert list(server.contributors) == [1]


def test_bad_nonce_from_a_colluding_decryptor_only_drops_it() -> None:
    updates = _updates(6)
    setup = _setup(updates, committee_size=5)
    runner = setup.runner
    runner.deliver_requests()
    colluder = max(runner.outbox)
    (nonce,) = runner.outbox[colluder]
    assert isinstance(nonce, DecryptorNonce)
    runner.outbox[colluder] = [replace(nonce, signature=secrets.token_bytes(64))]
    result = runner.run()
    assert colluder not in runner.server.committee
    assert runner.rejected == {colluder: ["AuthenticationError"]}
    expected = np.sum(list(updates.values()), axis=0)
    assert np.max(np.abs(result.aggregate - expected)) <= 6 * _quantum(runner.config)


def test_bad_partial_from_a_colluding_decryptor_only_drops_it() -> None:
    updates = _updates(6)
    setup = _setup(updates, committee_size=5)
    runner = setup.runner
    runner.run_until(Stage.UNMASKING)
    runner.deliver_requests()
    liar = min(runner.outbox)
    (reply,) = runner.outbox[liar]
    assert isinstance(reply, PartialDecryptionMessage)
    n, n2 = runner.config.public_key.n, runner.config.public_key.n_squared
    shifted = (reply.partial.values[0] * (1 + n) % n2, *reply.partial.values[1:])
    runner.outbox[liar] = [replace(reply, partial=replace(reply.partial, values=shifted))]
    result = runner.run()
    assert runner.rejected == {liar: ["AuthenticationError"]}
    expected = np.sum(list(updates.values()), axis=0)
    assert np.max(np.abs(result.aggregate - expected)) <= 6 * _quantum(runner.config)


# ------------------------------------------------------------------ malformed message objects


def test_junk_message_fields_raise_message_error() -> None:
    setup = _setup(_updates(6))
    runner = setup.runner
    uploads = _open_uploads(runner)
    upload = uploads[1]
    good_nonce = next(iter(upload_request_nonces(runner)))
    junk: list[Callable[[], object]] = [
        lambda: DecryptionRequest(round_id=1, recipient=1, contributors=None),  # type: ignore[arg-type]
        lambda: DecryptionRequest(round_id=1, recipient=1, contributors=([1],)),  # type: ignore[arg-type]
        lambda: DecryptionRequest(round_id=1, recipient=1, contributors=[1, 2]),  # type: ignore[arg-type]
        lambda: DecryptionRequest(round_id=-1, recipient=1, contributors=()),
        lambda: replace(upload, client_id=[1]),  # type: ignore[arg-type]
        lambda: replace(upload, client_id=True),
        lambda: replace(upload, vector=None),  # type: ignore[arg-type]
        lambda: replace(upload, context=b"short"),
        lambda: replace(upload, signature=b"x" * 10),
        lambda: replace(upload, proof="proof"),  # type: ignore[arg-type]
        lambda: NonceRequest(round_id=1, recipient=None),  # type: ignore[arg-type]
        lambda: DecryptorNonce(round_id=1, party_id=1, nonce=b"\x00" * 31),
        lambda: DecryptorNonce(round_id=1, party_id={1}, nonce=b"\x00" * 32),  # type: ignore[arg-type]
        lambda: UploadRequest(round_id=1, recipient=1, nonces=None),  # type: ignore[arg-type]
        lambda: UploadRequest(round_id=1, recipient=1, nonces=(good_nonce, good_nonce)),
        lambda: PartialDecryptionMessage(round_id=1, partial=None),  # type: ignore[arg-type]
    ]
    for make in junk:
        with pytest.raises(MessageError):
            make()
    config = runner.config
    with pytest.raises(MessageError):
        encode_message(object(), config)  # type: ignore[arg-type]
    assert upload.proof is not None
    with pytest.raises(MessageError):  # a field too wide for its wire slot
        encode_message(replace(upload, proof=replace(upload.proof, challenge=1 << 4000)), config)
    for blob in (b"", b"SAPM", encode_message(upload, config)[:40], 7):
        with pytest.raises(MessageError):
            decode_message(blob, config)  # type: ignore[arg-type]


def upload_request_nonces(runner: PaillierRoundRunner) -> tuple[DecryptorNonce, ...]:
    request = next(iter(runner.requests.values()))
    assert isinstance(request, UploadRequest)
    return request.nonces


def test_client_refuses_requests_with_too_few_or_forged_nonces() -> None:
    setup = _setup(_updates(6))
    runner = setup.runner
    runner.run_until(Stage.MASKED_INPUT)
    request = runner.pending[1]
    assert isinstance(request, UploadRequest)
    client = runner.parties[1].client
    assert client is not None
    t = runner.config.public_key.threshold
    with pytest.raises(ThresholdNotMetError):
        client.handle(replace(request, nonces=request.nonces[: t - 1]))
    forged = replace(request.nonces[0], nonce=secrets.token_bytes(32))
    with pytest.raises(AuthenticationError):
        client.handle(replace(request, nonces=(forged, *request.nonces[1:])))
    with pytest.raises(StageError):
        client.handle(DecryptionRequest(round_id=90, recipient=1, contributors=()))
    # none of the refusals claimed the round: the genuine request still gets an upload
    (upload,) = client.handle(request)
    assert isinstance(upload, Upload)


def test_decryptor_without_a_fresh_context_refuses_uploads() -> None:
    setup = _setup(_updates(6), committee_size=5)
    runner = setup.runner
    uploads = _open_uploads(runner)
    config = runner.config
    party = min(config.decryptor_parties)
    share = next(s for s in setup.shares if s.index == config.decryptor_parties[party])
    late = PaillierDecryptor(
        config,
        share,
        identity_key=setup.decryptor_identities[party],
        round_log=RoundLog.in_memory(),
    )
    with pytest.raises(StageError):
        late.handle(uploads[1])
    with pytest.raises(StageError):
        late.handle(DecryptionRequest(round_id=config.round_id, recipient=party, contributors=(1,)))
    decryptor = runner.parties[party].decryptor
    assert decryptor is not None
    with pytest.raises(ProtocolAbortError):  # hardened decryptors in the round refuse a lone upload
        decryptor.handle(uploads[1])
        decryptor.handle(
            DecryptionRequest(round_id=config.round_id, recipient=party, contributors=(1,))
        )
    with pytest.raises(AlreadyFinalizedError):  # one execution context per decryptor object
        decryptor.handle(runner.requests[party])
