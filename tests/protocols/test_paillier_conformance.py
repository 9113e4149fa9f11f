"""Paillier aggregation runs the shared conformance suite (tests/protocols/conformance.py).

Plus the scripted attacks specific to homomorphic aggregation: a server that asks the
decryptors to decrypt one client's ciphertext (alone, padded with fabricated contributions,
or with a colluding client cancelling the others), each refused by the hardened decryptors
and succeeding against the deliberately unhardened baseline.

Keys are 512-bit (INSECURE, for speed), dealt once per session.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from conformance import BadClientCase, PaddingOutcome, ProtocolConformance

from protocols import RoundLog, Stage
from protocols.paillier import (
    DecryptionRequest,
    DecryptorNonce,
    NonceRequest,
    PaillierClient,
    PaillierDecryptor,
    PaillierHardening,
    PaillierMessage,
    PaillierParty,
    PaillierRoundRunner,
    PaillierServer,
    PaillierSetup,
    PartialDecryptionMessage,
    Upload,
    UploadRequest,
    contribution_transcript,
    encode_message,
    plaintext_proof_context,
    setup_paillier_round,
)
from secagg.errors import AuthenticationError, ProtocolAbortError, SecAggError
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.paillier import EncryptedVector, aggregate
from secagg.primitives.signing import IdentityKey
from secagg.primitives.threshold_paillier import (
    KeyShare,
    ThresholdPublicKey,
    combine_partial_decryptions,
    deal_threshold_key,
)
from threat_models.model import ServerClass, ThreatModel
from threat_models.paillier import paillier_parameters

BITS = 32
UNKNOWN_ID = 987_654_321


@cache
def _dealt(n_decryptors: int, threshold: int) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    return deal_threshold_key(
        n_decryptors=n_decryptors, threshold=threshold, key_bits=512, hazmat_allow_weak_key=True
    )


def _flip(data: bytes, at: int = -1) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def _junk_like(value: int) -> int:
    """Random bytes in place of ``value`` (as many bytes as it has)."""
    return int.from_bytes(os.urandom(max(1, (value.bit_length() + 7) // 8)), "big")


class TestPaillierConformance(ProtocolConformance):
    """Clients as decryptors, malicious server: signatures, plaintext and decryption proofs."""

    protocol = "paillier"
    num_clients = 8
    threat_model: ClassVar[ThreatModel] = ThreatModel()
    committee_size: ClassVar[int | None] = None
    padding_min_size: ClassVar[int] = 7
    """``min_aggregate_size`` of the padding test's round (two clients never upload)."""

    def key(
        self, threat_model: ThreatModel | None = None
    ) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
        threat = self.threat_model if threat_model is None else threat_model
        params = paillier_parameters(self.num_clients, threat, n_decryptors=self.committee_size)
        return _dealt(params.n_decryptors, params.threshold)

    # ------------------------------------------------------------------ hooks

    def config(self) -> dict[str, Any]:
        return {"threat_model": self.threat_model, "key": self.key()}

    def stages(self) -> Sequence[Stage]:
        return PaillierRoundRunner.stages

    def setup_options(self, dropouts: Mapping[str, Iterable[int]] | None) -> dict[str, Any]:
        """Extra ``setup_paillier_round`` options of a variant."""
        return {}

    def make_setup(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        round_id: int,
        dropouts: Mapping[str, Iterable[int]] | None = None,
        hardening: PaillierHardening | None = None,
        threat_model: ThreatModel | None = None,
        round_logs: Mapping[int, RoundLog] | None = None,
    ) -> PaillierSetup:
        threat = self.threat_model if threat_model is None else threat_model
        setup = setup_paillier_round(
            updates,
            round_id=round_id,
            dropouts=dropouts,
            seed=5,
            threat_model=threat,
            encoder=FixedPointEncoder.symmetric(1.0, bits=BITS, max_clients=len(updates)),
            key=self.key(threat),
            hardening=hardening,
            round_logs=round_logs,
            **self.setup_options(dropouts),
        )
        self._round = setup.runner
        setup.runner.test_setup = setup  # type: ignore[attr-defined]
        return setup

    def open_round(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        round_id: int,
        dropouts: Mapping[str, Iterable[int]] | None = None,
    ) -> Any:
        return self.make_setup(updates, round_id=round_id, dropouts=dropouts).runner

    def finish(self, round_: Any) -> tuple[npt.NDArray[np.float64], tuple[int, ...]]:
        result = round_.run()
        return result.aggregate, result.survivors

    def encode(self, message: Any) -> bytes:
        return encode_message(message, self._round.config)

    def reveals_secrets(self, message: Any) -> bool:
        return isinstance(message, PartialDecryptionMessage)

    def masked_payloads(
        self, server_view: Sequence[Any]
    ) -> list[tuple[npt.NDArray[np.uint64], int]]:
        # ciphertexts as 64-bit words, leaving out the top word (a ciphertext is below n^2)
        out = []
        for m in server_view:
            if isinstance(m, Upload):
                width = (max(m.vector.ciphertexts).bit_length() + 63) // 64 * 8
                words = [
                    np.frombuffer(c.to_bytes(width, "little"), dtype="<u8")[:-1]
                    for c in m.vector.ciphertexts
                ]
                out.append((np.concatenate(words).astype(np.uint64), 64))
        return out

    def malformed_variants(self, message: Any) -> list[Any]:
        """Raw-byte corruptions (also of version and type) plus semantic ones per message."""
        out = super().malformed_variants(message)
        data = self.encode(message)
        out += [data[:4] + b"\x09" + data[5:], data[:5] + b"\x09" + data[6:], data[:12]]
        replace = dataclasses.replace
        if isinstance(message, NonceRequest):
            out.append(replace(message, recipient=UNKNOWN_ID))
        elif isinstance(message, DecryptorNonce):
            out += [
                replace(message, party_id=UNKNOWN_ID),
                replace(message, nonce=_flip(message.nonce)),
                replace(message, signature=_flip(message.signature)),
                replace(message, signature=b""),
            ]
        elif isinstance(message, UploadRequest):
            first = message.nonces[0]
            out += [
                replace(message, recipient=UNKNOWN_ID),
                # too few committed decryptors for any quorum
                replace(
                    message, nonces=message.nonces[: self._round.config.public_key.threshold - 1]
                ),
                # a nonce the decryptor did not sign
                replace(
                    message, nonces=(replace(first, nonce=_flip(first.nonce)), *message.nonces[1:])
                ),
            ]
        elif isinstance(message, Upload):
            vector = message.vector
            assert message.proof is not None
            out += [
                replace(message, client_id=UNKNOWN_ID),
                replace(message, signature=_flip(message.signature)),
                replace(message, signature=b""),
                replace(message, proof=None),
                replace(message, proof=replace(message.proof, response=message.proof.response ^ 1)),
                replace(message, vector=replace(vector, ciphertexts=vector.ciphertexts[::-1])),
            ]
        elif isinstance(message, DecryptionRequest):
            named = message.contributors
            out += [
                replace(message, recipient=UNKNOWN_ID),
                replace(message, contributors=tuple(reversed(named))),
                replace(message, contributors=named[1:]),
                replace(message, contributors=(*named, UNKNOWN_ID)),
            ]
        elif isinstance(message, PartialDecryptionMessage):
            partial = message.partial
            config = self._round.config
            zeroed = (0, *partial.values[1:])
            out += [
                replace(
                    message, partial=replace(partial, index=config.public_key.n_decryptors + 1)
                ),
                replace(message, partial=replace(partial, values=zeroed)),
                replace(message, partial=replace(partial, values=partial.values[:-1])),
            ]
            if config.decryption_proofs:
                values = list(partial.values)
                values[0] = values[0] * 4 % config.public_key.n_squared
                out += [
                    replace(message, partial=replace(partial, values=tuple(values))),
                    replace(message, partial=replace(partial, proof=None)),
                ]
        return out

    # ------------------------------------------------------------------ lying-server hooks

    def padding_attack(self, *, weakened: bool) -> PaddingOutcome:
        """Two clients never upload; the server names them among the contributors and forwards
        fabricated uploads (encodings of zero) in their names. ``weakened``: the same script
        in a round whose contributions are not signed (the curious class's configuration)."""
        updates = self._attack_updates()
        m = self.padding_min_size
        server = ServerClass.CURIOUS if weakened else self.threat_model.server
        threat = dataclasses.replace(self.threat_model, server=server, min_aggregate_size=m)
        ids = self.client_ids()
        vanished = ids[-2:]
        setup = self.make_setup(
            updates, round_id=47, dropouts={"masked_input": vanished}, threat_model=threat
        )
        round_ = setup.runner
        uploads = self._uploads(round_)
        real = tuple(sorted(uploads))
        padding = list(vanished[: m - len(real)])
        listed = tuple(sorted({*real, *padding}))
        config = round_.config
        encoder = config.encoder
        assert isinstance(encoder, FixedPointEncoder)
        encryptor = config.public_key.encryptor(config.packing)
        forger = IdentityKey.generate()
        context = next(iter(uploads.values())).context
        forged = []
        for cid in padding:
            vector, witness = encryptor.encrypt_with_witness(
                encoder.encode(np.zeros(config.length))
            )
            proof = None
            if config.plaintext_proofs:
                proof = encryptor.prove_knowledge(
                    vector, witness, context=plaintext_proof_context(config, context, cid)
                )
            signature = b""
            if config.signed_contributions:
                signature = forger.sign(
                    contribution_transcript(config, context, cid, vector.digest())
                )
            forged.append(
                Upload(
                    round_id=47,
                    client_id=cid,
                    vector=vector,
                    context=context,
                    signature=signature,
                    proof=proof,
                )
            )
        decryptors = [p for p in sorted(config.decryptor_parties) if p not in round_.dead]
        refusals: dict[int, str] = {}
        partials = []
        for pid in decryptors:
            for cid in real:
                round_.send_to_client(pid, uploads[cid])
            for fake in forged:
                if config.signed_contributions:
                    with pytest.raises(AuthenticationError):
                        round_.send_to_client(pid, fake)
                else:
                    round_.send_to_client(pid, fake)
            try:
                replies = round_.send_to_client(
                    pid, DecryptionRequest(round_id=47, recipient=pid, contributors=listed)
                )
            except SecAggError as exc:
                refusals[pid] = type(exc).__name__
                continue
            partials += [r.partial for r in replies if isinstance(r, PartialDecryptionMessage)]
        total = None
        pk = config.public_key
        if len(partials) >= pk.threshold:
            product = aggregate(
                pk.paillier,
                config.packing,
                [uploads[c].vector for c in real] + [f.vector for f in forged],
            )
            plain = combine_partial_decryptions(
                pk, product, partials[: pk.threshold], verify=False, context=config.context
            )
            ring = config.packing.unpack(plain, config.encoded_length, summands=len(listed))
            total = np.asarray(encoder.decode_sum(ring, len(listed)), dtype=np.float64)
        return PaddingOutcome(
            real=real,
            listed=listed,
            min_aggregate_size=config.min_aggregate_size,
            total=total,
            expected=self._expected(updates, real),
            tolerance=len(real) * encoder.quantum + 1e-9,
            asked=tuple(decryptors),
            refusals=refusals,
            released=len(partials),
        )

    def logged_parties(self) -> list[int]:
        ids = self.client_ids()
        if self.committee_size is None:
            return ids
        return ids + [ids[-1] + i for i in range(1, self.committee_size + 1)]

    def open_logged_round(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        round_id: int,
        logs: Mapping[int, RoundLog] | None,
        like: Any = None,
    ) -> Any:
        if like is None:
            return self.make_setup(updates, round_id=round_id, round_logs=logs).runner
        # a second execution of ``like``'s round: new party objects with the same config,
        # identities and key shares (what a server re-running the round id talks to)
        setup: PaillierSetup = like.test_setup
        config = setup.runner.config
        shares = {s.index: s for s in setup.shares}
        parties = {}
        for pid, old in sorted(like.parties.items()):
            log = None if logs is None else logs[pid]
            client = None
            if old.client is not None:
                client = PaillierClient(
                    config, pid, setup.identities.get(pid), update=updates[pid], round_log=log
                )
            decryptor = None
            if old.decryptor is not None:
                decryptor = PaillierDecryptor(
                    config,
                    shares[config.decryptor_parties[pid]],
                    identity_key=setup.decryptor_identities.get(pid),
                    round_log=log,
                )
            parties[pid] = PaillierParty(client, decryptor)
        runner = PaillierRoundRunner(PaillierServer(config), parties)
        runner.test_setup = setup  # type: ignore[attr-defined]
        return runner

    def first_messages(self, round_: Any, earlier: Any) -> dict[int, Any]:
        # decryptors first hear a nonce request; pure clients the (replayed) upload request
        out = dict(round_.pending)
        upload_requests = earlier.history[Stage.MASKED_INPUT][0]
        for pid, party in round_.parties.items():
            if party.decryptor is None:
                out[pid] = upload_requests[pid]
        return out

    def released_nothing(self, round_: Any, party: int) -> bool:
        decryptor = round_.parties[party].decryptor
        return decryptor is None or (decryptor.execution is None and not decryptor.decrypted)

    def bad_client_cases(self) -> Sequence[BadClientCase]:
        ids = self.client_ids()
        first_decryptor = ids[0] if self.committee_size is None else ids[-1] + 1
        return [
            # a decryptor's nonce: it leaves the committee; as a client its upload still counts
            BadClientCase(Stage.ADVERTISE_KEYS, "nonce-signature", first_decryptor, in_sum=True),
            BadClientCase(Stage.MASKED_INPUT, "upload-signature", ids[1], in_sum=False),
            BadClientCase(Stage.MASKED_INPUT, "upload-proof", ids[2], in_sum=False),
            BadClientCase(Stage.UNMASKING, "decryption-proof", first_decryptor, in_sum=True),
        ]

    def corrupt(self, message: Any, what: str) -> Any:
        replace = dataclasses.replace
        if isinstance(message, DecryptorNonce) and what == "nonce-signature":
            return replace(message, signature=os.urandom(64))
        if isinstance(message, Upload) and what == "upload-signature":
            return replace(message, signature=os.urandom(64))
        if isinstance(message, Upload) and what == "upload-proof" and message.proof is not None:
            known = message.proof
            return replace(
                message,
                proof=replace(
                    known,
                    response=_junk_like(known.response),
                    response_unit=_junk_like(known.response_unit),
                ),
            )
        if isinstance(message, PartialDecryptionMessage) and what == "decryption-proof":
            correct = message.partial.proof
            assert correct is not None, "the variant has no decryption proofs"
            return replace(
                message,
                partial=replace(
                    message.partial, proof=replace(correct, response=_junk_like(correct.response))
                ),
            )
        return message

    def refused_by_server(self, round_: Any) -> set[int]:
        return set(round_.rejected) | set(round_.refused)

    # ------------------------------------------------------------------ Paillier attacks

    def _uploads(self, round_: PaillierRoundRunner) -> dict[int, Upload]:
        """Run the request half of ``masked_input``: every client's upload, not yet delivered."""
        round_.run_until(Stage.MASKED_INPUT)
        round_.deliver_requests()
        uploads = {}
        for cid, replies in round_.outbox.items():
            if not replies:  # a committee member: it only adopted the execution's context
                continue
            (upload,) = replies
            assert isinstance(upload, Upload)
            uploads[cid] = upload
        return uploads

    def test_attack_decrypt_one_clients_ciphertext_fails(self) -> None:
        updates = self.make_updates()
        round_ = self.open_round(updates, round_id=41)
        uploads = self._uploads(round_)
        victim = sorted(uploads)[2]
        decryptors = sorted(round_.config.decryptor_parties)
        # the scripted server forwards only the victim's upload and asks for it alone
        for pid in decryptors:
            round_.send_to_client(pid, uploads[victim])
            request = DecryptionRequest(round_id=41, recipient=pid, contributors=(victim,))
            with pytest.raises(ProtocolAbortError):
                round_.send_to_client(pid, request)
        # padding with fabricated contributions: the server cannot sign for other clients
        config = round_.config
        zeros = config.public_key.encryptor(config.packing).encrypt(
            np.zeros(config.encoded_length, dtype=np.uint64)
        )
        forger = IdentityKey.generate()
        for cid in sorted(uploads):
            if cid == victim:
                continue
            fake = Upload(
                round_id=41,
                client_id=cid,
                vector=zeros,
                context=uploads[cid].context,
                signature=forger.sign(
                    contribution_transcript(config, uploads[cid].context, cid, zeros.digest())
                ),
                proof=uploads[cid].proof,
            )
            for pid in decryptors:
                with pytest.raises(AuthenticationError):
                    round_.send_to_client(pid, fake)
        assert not any(p.decryptor.decrypted for p in round_.parties.values() if p.decryptor)

    def test_attack_colluding_client_cancels_the_others_fails(self) -> None:
        updates = self.make_updates()
        round_ = self.open_round(updates, round_id=43)
        uploads = self._uploads(round_)
        ids = sorted(uploads)
        # ids[0] is the victim: it is the only honest contribution left uncancelled
        colluder, honest = ids[-1], ids[1:-1]
        config = round_.config
        n2 = config.public_key.n_squared
        product = aggregate(
            config.public_key.paillier, config.packing, [uploads[c].vector for c in honest]
        )
        cancel = EncryptedVector(
            product.key_id, product.length, tuple(pow(c, -1, n2) for c in product.ciphertexts)
        )
        # the colluder's own identity key is valid; the server gave it the honest uploads
        identity = self._identity_of(round_, colluder)
        forged = Upload(
            round_id=43,
            client_id=colluder,
            vector=cancel,
            context=uploads[colluder].context,
            signature=identity.sign(
                contribution_transcript(
                    config, uploads[colluder].context, colluder, cancel.digest()
                )
            ),
            proof=uploads[colluder].proof,
        )
        with pytest.raises(AuthenticationError):
            round_.send_to_server(forged)
        for pid in sorted(config.decryptor_parties):
            with pytest.raises(AuthenticationError):
                round_.send_to_client(pid, forged)

    def _identity_of(self, round_: PaillierRoundRunner, cid: int) -> IdentityKey:
        client = round_.parties[cid].client
        assert client is not None and client._identity is not None
        return client._identity

    def test_unhardened_baseline_leaks_one_clients_update(self) -> None:
        # positive control: the same request against decryptors with the checks switched off
        updates = self.make_updates()
        round_ = self.make_setup(
            updates, round_id=45, hardening=PaillierHardening.unhardened()
        ).runner
        uploads = self._uploads(round_)
        victim = sorted(uploads)[2]
        config = round_.config
        partials = []
        for pid in sorted(config.decryptor_parties)[: config.public_key.threshold]:
            round_.send_to_client(pid, uploads[victim])
            replies: list[PaillierMessage] = round_.send_to_client(
                pid, DecryptionRequest(round_id=45, recipient=pid, contributors=(victim,))
            )
            (reply,) = replies
            assert isinstance(reply, PartialDecryptionMessage)
            partials.append(reply.partial)
        vector = uploads[victim].vector
        plain = combine_partial_decryptions(
            config.public_key,
            vector,
            partials,
            verify=config.decryption_proofs,
            context=config.context,
        )
        ring = config.packing.unpack(plain, config.encoded_length, summands=1)
        leaked = config.encoder.decode_sum(ring, 1)
        assert np.max(np.abs(leaked - updates[victim])) <= self.tolerance(1)


class TestPaillierCommitteeConformance(TestPaillierConformance):
    """A separate committee of 5 decryptors; semi-malicious server (signatures and proofs, no
    colluders)."""

    num_clients = 6
    threat_model = ThreatModel(server=ServerClass.SEMI_MALICIOUS, colluding_fraction=0.0)
    committee_size = 5
    padding_min_size = 5

    def config(self) -> dict[str, Any]:
        return {**super().config(), "committee_size": 5}

    def setup_options(self, dropouts: Mapping[str, Iterable[int]] | None) -> dict[str, Any]:
        return {"committee_size": 5, "decryptor_dropouts": self._committee_dropouts(dropouts)}

    @staticmethod
    def _committee_dropouts(dropouts: Mapping[str, Iterable[int]] | None) -> tuple[int, ...]:
        # the suite names client ids; at unmasking a dropped client is a silent committee member
        late = [
            cid for stage, ids in (dropouts or {}).items() if stage == "unmasking" for cid in ids
        ]
        return tuple(sorted({(cid - 1) % 5 + 1 for cid in late}))
