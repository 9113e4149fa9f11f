"""SecAgg and SecAgg+ run the shared conformance suite (tests/protocols/conformance.py)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from conformance import BadClientCase, PaddingOutcome, ProtocolConformance

from protocols import (
    AdvertiseKeys,
    Attestation,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShare,
    Hardening,
    KeyBroadcast,
    MaskedInput,
    RevealedShare,
    RoundLog,
    RoundStart,
    SecAggClient,
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
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.signing import IdentityKey
from threat_models import ServerClass, ThreatModel
from threat_models.attacks.lying_server import LyingServer, padded_survivors_attack

BITS = 32
UNKNOWN_ID = 987_654_321
# the positive control of the padding test: the previous release's checks (survivor counts
# and key signatures), plus the consistency quorum counted on the server's list
PADDING_BASELINE = Hardening(
    check_survivor_lists=False,
    verified_survivors=False,
    attest_masking_sets=False,
    derive_graph=False,
    fresh_signatures=False,
    refuse_round_reuse=False,
)


def _flip(data: bytes, at: int = -1) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


class MaskingConformance(ProtocolConformance):
    """Hooks shared by the masking protocols (SecAgg, SecAgg+)."""

    threat_model: ClassVar[ThreatModel] = ThreatModel()
    padding_min_size: ClassVar[int] = 0
    """``min_aggregate_size`` of the padding test's round."""
    padding_drop: ClassVar[int] = 2
    """Clients that vanish before the key broadcast in the padding test."""

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
        identities: Mapping[int, IdentityKey] | None = None,
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
            identities=identities,
        )
        runner.test_encoder = encoder  # type: ignore[attr-defined]
        runner.test_inputs = inputs  # type: ignore[attr-defined]
        return runner

    # ------------------------------------------------------------------ lying-server hooks

    def _padding_dropouts(self, server: LyingServer) -> list[int]:
        """``padding_drop`` clients whose loss leaves every other client ``t`` live neighbours."""
        t = server.config.threshold
        dropped: list[int] = []
        for v in reversed(server.ids):
            if len(dropped) == self.padding_drop:
                break
            trial = {*dropped, v}
            if all(
                len(server.true_neighbours(u) - trial) >= t for u in server.ids if u not in trial
            ):
                dropped.append(v)
        assert len(dropped) == self.padding_drop, "no dropout pattern keeps t neighbours"
        return dropped

    def _padding_ids(self, dropped: Sequence[int], count: int) -> list[int]:
        """Ids to pad with: clients that advertised keys, then vanished (they never masked)."""
        return list(dropped[:count])

    def padding_attack(self, *, weakened: bool) -> PaddingOutcome:
        rng = np.random.default_rng(17)
        inputs = {
            c: rng.integers(0, 2**BITS, self.attack_dimension, dtype=np.uint64)
            for c in self.client_ids()
        }
        m = self.padding_min_size
        threat = dataclasses.replace(self.threat_model, min_aggregate_size=m)
        hardening = PADDING_BASELINE if weakened else Hardening()
        runner = setup_round(
            inputs, bits=BITS, protocol=self.protocol, threat_model=threat, hardening=hardening
        )
        padding: list[int] = []

        def plan(server: LyingServer) -> tuple[list[int], list[int]]:
            dropped = self._padding_dropouts(server)
            padding.extend(self._padding_ids(dropped, m - (len(server.ids) - len(dropped))))
            return dropped, padding

        total, real, harvest = padded_survivors_attack(runner, plan)
        expected = np.sum([inputs[c] for c in real], axis=0, dtype=np.uint64) % np.uint64(2**BITS)
        released = sum(map(len, harvest.self_mask.values())) + sum(
            map(len, harvest.mask_key.values())
        )
        return PaddingOutcome(
            real=real,
            listed=tuple(sorted({*real, *padding})),
            min_aggregate_size=runner.server.config.parameters.min_aggregate_size,
            total=total,
            expected=expected,
            tolerance=0,
            asked=real,
            refusals=dict(harvest.refusals),
            released=released,
        )

    def open_logged_round(
        self,
        updates: Mapping[int, npt.ArrayLike],
        *,
        round_id: int,
        logs: Mapping[int, RoundLog] | None,
        like: Any = None,
    ) -> Any:
        runner = self.open_round(
            updates, round_id=round_id, identities=like.identities if like is not None else None
        )
        if logs is not None:
            config = runner.server.config
            for cid in sorted(runner.clients):
                runner.clients[cid] = SecAggClient(
                    config,
                    cid,
                    input_vector=runner.test_inputs[cid],
                    identity=runner.identities.get(cid),
                    pki=runner.pki if config.signed else None,
                    round_log=logs[cid],
                )
        return runner

    def released_nothing(self, round_: Any, party: int) -> bool:
        return bool(round_.clients[party].stage is Stage.ADVERTISE_KEYS)

    def bad_client_cases(self) -> Sequence[BadClientCase]:
        bad = self.client_ids()[0]
        # curious and semi-malicious keys carry no identity signature: one there is junk too
        cases = [BadClientCase(Stage.ADVERTISE_KEYS, "signature", bad, in_sum=False)]
        if self.threat_model.server.lies_about_dropouts:
            cases += [
                BadClientCase(Stage.GRAPH_SEED, "reveal", bad, in_sum=False),
                BadClientCase(Stage.MASKED_INPUT, "attestation", bad, in_sum=False),
                BadClientCase(Stage.CONSISTENCY_CHECK, "signature", bad, in_sum=True),
            ]
        return cases

    def corrupt(self, message: Any, what: str) -> Any:
        junk = os.urandom(64)
        if isinstance(message, (AdvertiseKeys, ConsistencySignature)) and what == "signature":
            return dataclasses.replace(message, signature=junk)
        if isinstance(message, MaskedInput) and what == "attestation":
            return dataclasses.replace(message, attestation=junk)
        if isinstance(message, SeedReveal) and what == "reveal":
            return dataclasses.replace(message, reveal=junk[: len(message.reveal)])
        return message

    def finish(self, round_: Any) -> tuple[npt.NDArray[np.float64], tuple[int, ...]]:
        result = round_.run()
        aggregate = round_.test_encoder.decode_sum(result.ring_sum, len(result.survivors))
        return aggregate, result.survivors

    def reveals_secrets(self, message: Any) -> bool:
        return isinstance(message, UnmaskResponse) and bool(
            message.self_mask_shares or message.mask_key_shares
        )

    def masked_payloads(
        self, server_view: Sequence[Any]
    ) -> list[tuple[npt.NDArray[np.uint64], int]]:
        return [
            (m.words.astype(np.uint64), m.bits) for m in server_view if isinstance(m, MaskedInput)
        ]

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
                replace(
                    message,
                    cohort=tuple(v for v in cohort if v != message.recipient) + (UNKNOWN_ID,),
                ),
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
                replace(
                    message, peers=peers[1:] + (dataclasses.replace(first, client_id=UNKNOWN_ID),)
                ),
                replace(message, peers=(first, first, *peers[2:])),
                replace(
                    message,
                    peers=(
                        dataclasses.replace(first, share_public=peers[1].share_public),
                        *peers[1:],
                    ),
                ),
            ]
            if first.signature:
                out.append(
                    replace(
                        message,
                        peers=(
                            dataclasses.replace(first, signature=_flip(first.signature)),
                            *peers[1:],
                        ),
                    )
                )
            if message.reveals:
                reveals = message.reveals
                out += [
                    replace(message, reveals=(_flip(reveals[0]), *reveals[1:])),
                    replace(message, reveals=reveals[1:]),
                    replace(
                        message,
                        peers=(
                            dataclasses.replace(
                                first, seed_commitment=_flip(first.seed_commitment)
                            ),
                            *peers[1:],
                        ),
                    ),
                ]
        elif isinstance(message, ShareKeys):
            shares = message.shares
            out += [
                replace(message, shares=shares[1:]),
                replace(
                    message, shares=(*shares[1:], EncryptedShare(UNKNOWN_ID, shares[0].ciphertext))
                ),
            ]
        elif isinstance(message, ShareForward):
            forwarded = message.shares
            head = forwarded[0]
            out += [
                replace(message, shares=(head, head, *forwarded[2:])),
                replace(
                    message, shares=(EncryptedShare(UNKNOWN_ID, head.ciphertext), *forwarded[1:])
                ),
            ]
            if round_stages(self.threat_model.server)[1] is not Stage.GRAPH_SEED:
                # against a lying server a share that does not open is reported (the round
                # restarts without its sender), not refused: see test_unopenable_share_is_reported
                out += [
                    replace(
                        message,
                        shares=(EncryptedShare(head.peer, _flip(head.ciphertext)), *forwarded[1:]),
                    ),
                    replace(
                        message,
                        shares=(EncryptedShare(head.peer, forwarded[1].ciphertext), *forwarded[1:]),
                    ),
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
                    replace(
                        message,
                        signatures=(
                            dataclasses.replace(sig, signature=_flip(sig.signature)),
                            *message.signatures[1:],
                        ),
                    )
                )
            if message.attestations:
                att = message.attestations[0]
                out += [
                    replace(
                        message,
                        attestations=(
                            Attestation(att.peer, _flip(att.signature)),
                            *message.attestations[1:],
                        ),
                    ),
                    replace(message, attestations=message.attestations[1:]),
                    replace(message, key_sharers=message.key_sharers[1:]),
                ]
        elif isinstance(message, UnmaskResponse):
            revealed = message.self_mask_shares
            out += [
                replace(message, self_mask_shares=revealed[1:]),
                replace(
                    message,
                    self_mask_shares=(
                        RevealedShare(revealed[0].owner, revealed[0].share[:-1]),
                        *revealed[1:],
                    ),
                ),
                replace(
                    message,
                    self_mask_shares=(RevealedShare(UNKNOWN_ID, revealed[0].share), *revealed[1:]),
                ),
            ]
        return out


class TestSecAggConformance(MaskingConformance):
    """Complete graph, malicious server (consistency check, signed keys)."""

    protocol = "secagg"
    num_clients = 7
    padding_min_size = 6


class TestSecAggPlusConformance(MaskingConformance):
    """Harary graph derived from the default (malicious) threat model."""

    protocol = "secagg+"
    num_clients = 10
    padding_min_size = 9

    def test_graph_is_sparse(self) -> None:
        result = self._simulate(self.make_updates())
        assert result.details["graph"] == "harary"
        assert result.details["degree"] < self.num_clients - 1


class TestSecAggPlusCuriousConformance(MaskingConformance):
    """Harary graph against an honest-but-curious server: four stages, no signatures."""

    protocol = "secagg+"
    num_clients = 10
    threat_model = ThreatModel(server=ServerClass.CURIOUS)
    padding_min_size = 9
    padding_non_claim = (
        "a curious server reports dropouts truthfully; against a server that lies about them "
        "the curious class gives no guarantee (threat_models.model): its clients cannot tell "
        "an id that never contributed from a survivor"
    )
    default_log_non_claim = (
        "curious clients have no identity key, so they keep a round log only when given one "
        "(SecAggClient's round_log)"
    )

    def _padding_ids(self, dropped: Sequence[int], count: int) -> list[int]:
        # ids outside the cohort: a curious client knows only its neighbours
        return [UNKNOWN_ID + i for i in range(count)]


class TestSecAggSemiMaliciousConformance(MaskingConformance):
    """Complete graph, semi-malicious server (higher threshold, no PKI)."""

    protocol = "secagg"
    num_clients = 6
    threat_model = ThreatModel(server=ServerClass.SEMI_MALICIOUS, colluding_fraction=0.0)
    padding_min_size = 5
    default_log_non_claim = (
        "semi-malicious clients sign with per-round keys and have no identity key, so they keep "
        "a round log only when given one (SecAggClient's round_log); fresh execution contexts "
        "keep one execution's signatures out of another"
    )
