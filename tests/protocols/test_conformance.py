"""SecAgg and SecAgg+ run the shared conformance suite (tests/protocols/conformance.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from conformance import ProtocolConformance

from protocols import (
    AdvertiseKeys,
    Attestation,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShare,
    KeyBroadcast,
    MaskedInput,
    RevealedShare,
    RoundStart,
    SeedEntry,
    SeedRequest,
    SeedReveal,
    ShareForward,
    ShareKeys,
    Stage,
    UnmaskRequest,
    UnmaskResponse,
    round_stages,
    setup_round,
)
from secagg.encoding import FixedPointEncoder
from threat_models import ServerClass, ThreatModel

BITS = 32
UNKNOWN_ID = 987_654_321


def _flip(data: bytes, at: int = -1) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


class MaskingConformance(ProtocolConformance):
    """Hooks shared by the masking protocols (SecAgg, SecAgg+)."""

    threat_model: ClassVar[ThreatModel] = ThreatModel()

    def config(self) -> dict[str, Any]:
        return {"threat_model": self.threat_model}

    def stages(self) -> Sequence[Stage]:
        return round_stages(self.threat_model.server)

    def open_round(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        round_id: int,
        dropouts: Mapping[str, Iterable[int]] | None = None,
    ) -> Any:
        encoder = FixedPointEncoder.symmetric(1.0, bits=BITS, max_clients=len(updates))
        rng = np.random.default_rng(5)
        inputs = {cid: encoder.encode(v, rng=rng) for cid, v in updates.items()}
        runner = setup_round(
            inputs,
            bits=BITS,
            protocol=self.protocol,
            threat_model=self.threat_model,
            round_id=round_id,
            dropouts=dropouts,
        )
        runner.test_encoder = encoder
        return runner

    def finish(self, round_: Any) -> tuple[npt.NDArray[np.float64], tuple[int, ...]]:
        result = round_.run()
        aggregate = round_.test_encoder.decode_sum(result.ring_sum, len(result.survivors))
        return aggregate, result.survivors

    def reveals_secrets(self, message: Any) -> bool:
        return isinstance(message, UnmaskResponse) and bool(message.self_mask_shares or message.mask_key_shares)

    def masked_payloads(self, server_view: Sequence[Any]) -> list[tuple[npt.NDArray[np.uint64], int]]:
        return [(m.words.astype(np.uint64), m.bits) for m in server_view if isinstance(m, MaskedInput)]

    def forge_both_listed(self, round_: Any) -> tuple[int, Any]:
        for cid, request in sorted(round_.pending.items()):
            peers = sorted(round_.clients[cid].masking_set & set(request.survivors))
            if peers:
                dropped = tuple(sorted(set(request.dropped) | {peers[0]}))
                return cid, dataclasses.replace(request, dropped=dropped)
        raise AssertionError("no unmask request with a surviving peer")

    def malformed_variants(self, message: Any) -> list[Any]:
        """Raw-byte corruptions plus semantic ones for each message type."""
        out = super().malformed_variants(message)
        replace = dataclasses.replace
        if message.FROM_SERVER:
            out.append(replace(message, recipient=UNKNOWN_ID))
        else:
            out.append(replace(message, sender=UNKNOWN_ID))
        if isinstance(message, RoundStart) and message.cohort:
            cohort = message.cohort
            out += [
                replace(message, cohort=cohort[:-1]),
                replace(message, cohort=tuple(v for v in cohort if v != message.recipient) + (UNKNOWN_ID,)),
                replace(message, cohort=(cohort[0], cohort[0], *cohort[2:])),
                replace(message, cohort=tuple(reversed(cohort))),
            ]
        elif isinstance(message, RoundStart):
            nbrs = message.neighbours
            out += [
                replace(message, neighbours=nbrs[:-1]),
                replace(message, neighbours=(message.recipient, *nbrs[1:])),
                replace(message, neighbours=(nbrs[0], nbrs[0], *nbrs[2:])),
                replace(message, neighbours=tuple(reversed(nbrs))),
            ]
        elif isinstance(message, SeedRequest):
            entries = message.entries
            own = [i for i, e in enumerate(entries) if e.client_id == message.recipient][0]
            swapped = dataclasses.replace(entries[own], commitment=_flip(entries[own].commitment))
            out += [
                replace(message, entries=entries[:own] + entries[own + 1 :]),
                replace(message, entries=(*entries[:own], swapped, *entries[own + 1 :])),
                replace(message, entries=(entries[0], *entries)),
                replace(message, entries=(*entries, SeedEntry(UNKNOWN_ID, entries[0].commitment))),
                replace(message, entries=tuple(reversed(entries))),
            ]
        elif isinstance(message, SeedReveal):
            out.append(replace(message, reveal=_flip(message.reveal)))
        elif isinstance(message, AdvertiseKeys):
            out.append(replace(message, share_public=message.mask_public))
            if message.signature:
                out.append(replace(message, signature=b""))
            else:
                out.append(replace(message, signature=bytes(64)))
        elif isinstance(message, KeyBroadcast):
            peers = message.peers
            first = peers[0]
            out += [
                replace(message, peers=peers[1:] + (dataclasses.replace(first, client_id=UNKNOWN_ID),)),
                replace(message, peers=(first, first, *peers[2:])),
                replace(message, peers=(dataclasses.replace(first, share_public=peers[1].share_public), *peers[1:])),
            ]
            if first.signature:
                out.append(replace(message, peers=(dataclasses.replace(first, signature=_flip(first.signature)), *peers[1:])))
            if message.reveals:
                reveals = message.reveals
                out += [
                    replace(message, reveals=(_flip(reveals[0]), *reveals[1:])),
                    replace(message, reveals=reveals[1:]),
                    replace(message, peers=(dataclasses.replace(first, seed_commitment=_flip(first.seed_commitment)), *peers[1:])),
                ]
        elif isinstance(message, ShareKeys):
            shares = message.shares
            out += [
                replace(message, shares=shares[1:]),
                replace(message, shares=(*shares[1:], EncryptedShare(UNKNOWN_ID, shares[0].ciphertext))),
            ]
        elif isinstance(message, ShareForward):
            shares = message.shares
            first = shares[0]
            out += [
                replace(message, shares=(EncryptedShare(first.peer, _flip(first.ciphertext)), *shares[1:])),
                replace(message, shares=(EncryptedShare(first.peer, shares[1].ciphertext), *shares[1:])),
                replace(message, shares=(first, first, *shares[2:])),
                replace(message, shares=(EncryptedShare(UNKNOWN_ID, first.ciphertext), *shares[1:])),
            ]
        elif isinstance(message, MaskedInput):
            words = message.words
            out += [
                replace(message, words=words[:-1].copy()),
                replace(message, bits=64, words=words.astype(np.uint64)),
            ]
            if message.attestation:
                out.append(replace(message, attestation=_flip(message.attestation)))
        elif isinstance(message, ConsistencyRequest):
            surv = message.survivors
            out += [
                replace(message, survivors=tuple(reversed(surv))),
                replace(message, survivors=tuple(v for v in surv if v != message.recipient)),
            ]
        elif isinstance(message, ConsistencySignature):
            out.append(replace(message, signature=_flip(message.signature)))
        elif isinstance(message, UnmaskRequest):
            surv = message.survivors
            out += [
                replace(message, survivors=tuple(reversed(surv))),
                replace(message, dropped=(*message.dropped, UNKNOWN_ID)),
                replace(message, survivors=tuple(v for v in surv if v != message.recipient)),
            ]
            if message.signatures:
                sig = message.signatures[0]
                out.append(
                    replace(message, signatures=(dataclasses.replace(sig, signature=_flip(sig.signature)), *message.signatures[1:]))
                )
            if message.attestations:
                att = message.attestations[0]
                out += [
                    replace(message, attestations=(Attestation(att.peer, _flip(att.signature)), *message.attestations[1:])),
                    replace(message, attestations=message.attestations[1:]),
                    replace(message, key_sharers=message.key_sharers[1:]),
                ]
        elif isinstance(message, UnmaskResponse):
            shares = message.self_mask_shares
            out += [
                replace(message, self_mask_shares=shares[1:]),
                replace(message, self_mask_shares=(RevealedShare(shares[0].owner, shares[0].share[:-1]), *shares[1:])),
                replace(message, self_mask_shares=(RevealedShare(UNKNOWN_ID, shares[0].share), *shares[1:])),
            ]
        return out


class TestSecAggConformance(MaskingConformance):
    """Complete graph, malicious server (consistency check, signed keys)."""

    protocol = "secagg"
    num_clients = 7


class TestSecAggPlusConformance(MaskingConformance):
    """Harary graph derived from the default (malicious) threat model."""

    protocol = "secagg+"
    num_clients = 10

    def test_graph_is_sparse(self) -> None:
        result = self._simulate(self.make_updates())
        assert result.details["graph"] == "harary"
        assert result.details["degree"] < self.num_clients - 1


class TestSecAggPlusCuriousConformance(MaskingConformance):
    """Harary graph against an honest-but-curious server: four stages, no signatures."""

    protocol = "secagg+"
    num_clients = 10
    threat_model = ThreatModel(server=ServerClass.CURIOUS)


class TestSecAggSemiMaliciousConformance(MaskingConformance):
    """Complete graph, semi-malicious server (higher threshold, no PKI)."""

    protocol = "secagg"
    num_clients = 6
    threat_model = ThreatModel(server=ServerClass.SEMI_MALICIOUS, colluding_fraction=0.0)
