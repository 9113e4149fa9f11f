"""Paillier aggregation runs the shared conformance suite (tests/protocols/conformance.py).

Plus the scripted attacks specific to homomorphic aggregation: a server that asks the
decryptors to decrypt one client's ciphertext (alone, padded with fabricated contributions,
or with a colluding client cancelling the others), each refused by the hardened decryptors
and succeeding against the deliberately unhardened baseline.

Keys are 512-bit (INSECURE, for speed), dealt once per session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest
from conformance import ProtocolConformance

from protocols import Stage
from protocols.paillier import (
    DecryptionRequest,
    DecryptorNonce,
    NonceRequest,
    PaillierHardening,
    PaillierMessage,
    PaillierRoundRunner,
    PaillierSetup,
    PartialDecryptionMessage,
    Upload,
    UploadRequest,
    contribution_transcript,
    encode_message,
    setup_paillier_round,
)
from secagg.encoding import FixedPointEncoder
from secagg.errors import AuthenticationError, ProtocolAbortError
from secagg.paillier import EncryptedVector, aggregate
from secagg.signing import IdentityKey
from secagg.threshold_paillier import (
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


class TestPaillierConformance(ProtocolConformance):
    """Clients as decryptors, malicious server: signatures, plaintext and decryption proofs."""

    protocol = "paillier"
    num_clients = 8
    threat_model: ClassVar[ThreatModel] = ThreatModel()

    def key(self) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
        params = paillier_parameters(self.num_clients, self.threat_model)
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
    ) -> PaillierSetup:
        setup = setup_paillier_round(
            updates,
            round_id=round_id,
            dropouts=dropouts,
            seed=5,
            threat_model=self.threat_model,
            encoder=FixedPointEncoder.symmetric(1.0, bits=BITS, max_clients=len(updates)),
            key=self.key(),
            hardening=hardening,
            **self.setup_options(dropouts),
        )
        self._round = setup.runner
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
                replace(message, nonces=message.nonces[: self._round.config.public_key.threshold - 1]),
                # a nonce the decryptor did not sign
                replace(message, nonces=(replace(first, nonce=_flip(first.nonce)), *message.nonces[1:])),
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
                contribution_transcript(config, uploads[colluder].context, colluder, cancel.digest())
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
    """A separate committee of 5 decryptors; semi-malicious server (no decryption proofs)."""

    num_clients = 6
    threat_model = ThreatModel(server=ServerClass.SEMI_MALICIOUS, colluding_fraction=0.0)

    def key(self) -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
        params = paillier_parameters(self.num_clients, self.threat_model, n_decryptors=5)
        return _dealt(params.n_decryptors, params.threshold)

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
