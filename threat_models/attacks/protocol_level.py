"""Protocol-level attacks: a scripted malicious server driving the real client state machines.

Every attack here talks to genuine :class:`protocols.masking.client.SecAggClient` objects (or, for
Paillier, genuine :class:`protocols.paillier.PaillierDecryptor` objects) through the wire
format, exactly as a deployed server would, and tries to learn one victim's *individual*
update. It runs twice: against the hardened configuration (it must fail, with a typed
error and nothing revealed) and against a deliberately weakened baseline (it must
succeed: the server's estimate of the victim's update is within two quantisation steps).

The masking attacks run a SecAgg round (complete graph) against a malicious server, so
the round has every stage: ``advertise_keys``, ``graph_seed`` (the clients commit to and
then reveal their contributions to the execution context, from which each derives its
neighbours), ``share_keys``, ``masked_input``, ``consistency_check`` and ``unmasking``. The
scripted server runs the stages before its lie honestly and then hands every client all
it can to make the lie pass: the real seed commitments and reveals, the signatures of
every client that signed the survivor set it is shown, the real key-sharer list and the
masking-set attestations the clients sent with their masked inputs.

Each attack (:class:`ProtocolAttack`), how the server gets the victim ``v``'s update, and
what stops it (:class:`protocols.masking.config.Hardening`):

* ``BOTH_LISTS``: lists ``v`` as surviving *and* dropped, so every peer reveals the share
  of ``b_v`` and of ``s_v``. Stopped by ``check_survivor_lists`` (``ProtocolAbortError``).
* ``FAKE_DROPOUTS``: claims everyone but ``v`` dropped, so the "aggregate" is ``x_v``
  alone, below the minimum size. Stopped by ``check_survivor_lists`` (the asked client is
  not in the set), then ``check_survivor_count`` (``ProtocolAbortError``).
* ``KEY_SUBSTITUTION``: after the graph-seed stage, replaces ``v``'s peers' public keys
  with its own (keeping their seed commitments and every reveal); it decrypts the shares
  ``v`` sends and knows every mask. Stopped by ``authenticate_keys``: the peers'
  signatures do not cover the substituted keys (``AuthenticationError``).
* ``REPLAYED_KEYS``: the same, with keys the peers *signed* in an older round, whose
  private halves colluders handed over. Stopped by ``round_bound_signatures``
  (``AuthenticationError``).
* ``SPLIT_VIEW``: shows ``t`` peers (and ``v``) a survivor set with ``v`` and the other
  peers one without, so shares of ``b_v`` and of ``s_v`` arrive. Stopped by
  ``consistency_check``: only one survivor set can gather the consistency quorum ``Q`` of
  signatures (``ThresholdNotMetError``).
* ``PAILLIER_SINGLE_DECRYPTION``: asks the decryptors to decrypt ``v``'s ciphertext alone.
  Stopped by the decryptors' aggregate check (``ProtocolAbortError``).

The baselines: every client-side check off (:meth:`protocols.Hardening.unhardened`, as
Flower 1.41's client) for both lists, fake dropouts and key substitution. The replay's
baseline keeps every check but the round binding (otherwise any substitution would do).
Its scripted signatures cover this round's cohort digest and each peer's current seed
commitment, as the peers' software would sign them in this round; that grants the server
more than a real replay gives it, since an advertisement from another round carries a
commitment bound to that round, which the victim refuses (``ProtocolAbortError``) whatever
its hardening. The split view's baseline keeps every check but the consistency check and
uses the threshold a *curious* server would need (``t`` just above the colluders), so that
both halves of the split reach ``t``. With every check on, the quorum stops the split view
even at that low threshold. Paillier's baseline is
:meth:`protocols.paillier.PaillierHardening.unhardened`.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from protocols.masking.config import Hardening
from protocols.masking.driver import RoundRunner, setup_round
from protocols.masking.masks import apply_masks, reduce_words
from protocols.masking.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyBroadcast,
    MaskedInput,
    Message,
    ShareForward,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from protocols.masking.records import Attestation, EncryptedShare, PeerKeys, SurvivorSignature
from protocols.masking.transcripts import advertise_transcript, cohort_digest
from protocols.paillier.config import PaillierHardening
from protocols.paillier.driver import setup_paillier_round
from protocols.paillier.messages import DecryptionRequest, PartialDecryptionMessage, Upload
from protocols.stages import Stage
from secagg.errors import InvalidParameterError, SecAggError
from secagg.primitives.aead import ShareCipher
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.keys import KeyPair, Purpose, derive_pair_key
from secagg.primitives.shamir import SHARE_BYTES, Share, reconstruct, split
from secagg.primitives.threshold_paillier import combine_partial_decryptions, deal_threshold_key
from threat_models.attacks.aggregation import (
    model_hash,
    protocol_aggregator,
    secure_ring_sum,
    secure_sum,
)
from threat_models.model import ServerClass, ThreatModel
from threat_models.paillier import paillier_parameters
from threat_models.parameters import GraphKind, ProtocolParameters, select_parameters

__all__ = [
    "ProtocolAttack",
    "Configuration",
    "AttackOutcome",
    "run_protocol_attack",
    "run_paillier_attack",
    "protocol_aggregator",
    "secure_sum",
    "secure_ring_sum",
    "model_hash",
]

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
_BITS = 32


class ProtocolAttack(str, enum.Enum):
    """Scripted malicious-server attacks on the masking protocols (and Paillier)."""

    BOTH_LISTS = "client listed as both dropped and surviving"
    FAKE_DROPOUTS = "dropouts faked below the minimum aggregate size"
    KEY_SUBSTITUTION = "public keys substituted by the server"
    REPLAYED_KEYS = "signed keys replayed from an older round"
    SPLIT_VIEW = "different survivor sets shown to different clients"
    PAILLIER_SINGLE_DECRYPTION = "decryptors asked to decrypt one client's ciphertext (Paillier)"


class Configuration(str, enum.Enum):
    """Which clients the attack meets."""

    HARDENED = "hardened"
    UNHARDENED = "unhardened baseline"


@dataclass(frozen=True)
class AttackOutcome:
    """What the scripted server got.

    Attributes:
        attack: the attack.
        configuration: hardened or baseline.
        defense: a readable description of the configuration.
        succeeded: whether the server isolated the victim's update.
        error: max-abs error of the server's estimate of the victim's update (``inf``
            when it has none).
        tolerance: the quantisation step (an estimate within it is the update itself).
        refusal: the typed error the honest parties raised, ``""`` if none.
        recovered: the server's estimate of the victim's update, when it has one.
        note: how the attack went.
    """

    attack: ProtocolAttack
    configuration: Configuration
    defense: str
    succeeded: bool
    error: float
    tolerance: float
    refusal: str
    recovered: F64 | None
    note: str

    @property
    def positive_control(self) -> bool:
        return self.configuration is Configuration.UNHARDENED


# ----------------------------------------------------------------------------- round plumbing


@dataclass
class _Round:
    runner: RoundRunner
    encoder: FixedPointEncoder
    ids: tuple[int, ...]
    victim: int
    truth: F64
    #: clients that vanished after sharing keys (before their masked input)
    dropped: tuple[int, ...] = ()

    @property
    def alive(self) -> tuple[int, ...]:
        """The clients that sent a masked input."""
        return tuple(c for c in self.ids if c not in self.dropped)


_M = TypeVar("_M", bound=Message)


def _of_kind(messages: Mapping[int, Message], kind: type[_M]) -> dict[int, _M]:
    """The messages of one kind: what a stage's requests or replies all are."""
    return {cid: m for cid, m in messages.items() if isinstance(m, kind)}


def _reply(messages: Sequence[Message], kind: type[_M]) -> _M:
    """A client's one reply, of the kind its stage answers with."""
    first = messages[0]
    if not isinstance(first, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(first).__name__}")
    return first


def _encoder_for(updates: Mapping[int, F64], n: int) -> FixedPointEncoder:
    bound = max(float(np.max(np.abs(v))) for v in updates.values())
    bound = 2.0 ** np.ceil(np.log2(max(bound, 1e-12)))
    return FixedPointEncoder.symmetric(float(bound), bits=_BITS, max_clients=n)


def _setup(
    updates: Mapping[int, F64],
    victim: int,
    *,
    hardening: Hardening,
    parameters: ProtocolParameters | None = None,
    seed: int = 0,
    round_id: int | None = None,
    dropped: Sequence[int] = (),
) -> _Round:
    ids = tuple(sorted(updates))
    if victim not in ids:
        raise InvalidParameterError("the victim must be one of the clients")
    encoder = _encoder_for(updates, len(ids))
    rng = np.random.default_rng(seed)
    inputs = {
        cid: encoder.encode(np.asarray(updates[cid], dtype=np.float64), rng=rng) for cid in ids
    }
    runner = setup_round(
        inputs,
        bits=_BITS,
        protocol="secagg" if parameters is None or parameters.complete else "secagg+",
        hardening=hardening,
        parameters=parameters,
        round_id=round_id,
        dropouts={Stage.MASKED_INPUT: list(dropped)} if dropped else None,
    )
    truth = np.asarray(updates[victim], dtype=np.float64)
    return _Round(runner, encoder, ids, victim, truth, tuple(sorted(dropped)))


def _unmask(
    rnd: _Round,
    masked: U64,
    self_seed: bytes,
    pair_seeds_add: Sequence[bytes],
    pair_seeds_sub: Sequence[bytes],
) -> F64:
    """Remove the victim's self mask and pairwise masks, decode its input."""
    runner = rnd.runner
    config = runner.server.config
    acc = np.array(masked, dtype=np.uint64, copy=True)
    # the client added PRG(b) and +PRG(s_uv) for u < v ... so subtract what it added
    apply_masks(
        acc,
        add=pair_seeds_sub,
        subtract=[self_seed, *pair_seeds_add],
        algorithm=config.prg,
        bits=config.bits,
    )
    reduce_words(acc, config.bits)
    return np.asarray(rnd.encoder.decode_sum(acc, 1), dtype=np.float64)


def _outcome(
    rnd: _Round,
    attack: ProtocolAttack,
    configuration: Configuration,
    defense: str,
    recovered: F64 | None,
    refusal: str,
    note: str,
) -> AttackOutcome:
    tolerance = 2.0 * rnd.encoder.quantum
    if recovered is None:
        return AttackOutcome(
            attack, configuration, defense, False, float("inf"), tolerance, refusal, None, note
        )
    error = float(np.max(np.abs(recovered - rnd.truth)))
    return AttackOutcome(
        attack,
        configuration,
        defense,
        error <= tolerance,
        error,
        tolerance,
        refusal,
        recovered,
        note,
    )


def _honest_until_consistency(rnd: _Round) -> None:
    runner = rnd.runner

    while runner.stage is not Stage.CONSISTENCY_CHECK:
        runner.step()


# ----------------------------------------------------------------------------- unmasking lies


def _lying_unmask(
    rnd: _Round, views: Mapping[int, tuple[tuple[int, ...], tuple[int, ...]]]
) -> tuple[dict[int, UnmaskResponse], list[str]]:
    """Consistency check and unmask requests with per-client ``(survivors, dropped)`` lies.

    The scripted server hands every client all it can to make its lie pass: the signatures
    of every client that signed the same survivor set, the real key-sharer list and the
    masking-set attestations the clients sent with their masked inputs.

    Returns the clients' unmask responses and the names of the errors they raised.
    """
    runner = rnd.runner
    config = runner.server.config
    sharers = tuple(sorted(runner.history[Stage.SHARE_KEYS][1]))
    masked = _of_kind(runner.history[Stage.MASKED_INPUT][1], MaskedInput)
    signatures: dict[int, tuple[tuple[int, ...], bytes]] = {}
    errors: list[str] = []
    for cid, (survivors, _) in sorted(views.items()):
        try:
            request = ConsistencyRequest(
                round_id=config.round_id, recipient=cid, survivors=survivors
            )
            reply = _reply(runner.send_to_client(cid, request), ConsistencySignature)
            signatures[cid] = (survivors, reply.signature)
        except SecAggError as exc:
            errors.append(type(exc).__name__)
    responses: dict[int, UnmaskResponse] = {}
    for cid, (survivors, dropped) in sorted(views.items()):
        if cid not in signatures:
            continue
        sigs = tuple(
            SurvivorSignature(signer, sig)
            for signer, (their_set, sig) in sorted(signatures.items())
            if their_set == survivors and signer in survivors
        )
        held = runner.clients[cid].masking_set
        attestations = tuple(
            Attestation(u, masked[u].attestation)
            for u in sorted(held & set(survivors))
            if u in masked
        )
        unmask = UnmaskRequest(
            round_id=config.round_id,
            recipient=cid,
            survivors=survivors,
            dropped=dropped,
            signatures=sigs,
            key_sharers=sharers,
            attestations=attestations,
        )
        try:
            responses[cid] = _reply(runner.send_to_client(cid, unmask), UnmaskResponse)
        except SecAggError as exc:
            errors.append(type(exc).__name__)
    return responses, errors


def _reconstruct_victim(
    rnd: _Round, responses: Mapping[int, UnmaskResponse]
) -> tuple[F64 | None, str]:
    """Strip the victim's masks with what the unmask responses revealed.

    The self mask needs ``t`` shares of ``b_v``. Each pairwise mask ``PRG(s_uv)`` needs
    either ``v``'s masking key (``t`` shares of ``s_v``, the both-lists lie) or the peer
    ``u``'s (``t`` shares of ``s_u``, when ``u`` was declared dropped).
    """
    runner = rnd.runner
    config = runner.server.config
    v, t, rid = rnd.victim, config.threshold, config.round_id
    self_mask: dict[int, list[Share]] = {}
    mask_key: dict[int, list[Share]] = {}
    for r in responses.values():
        for item in r.self_mask_shares:
            self_mask.setdefault(item.owner, []).append(Share.from_bytes(item.share))
        for item in r.mask_key_shares:
            mask_key.setdefault(item.owner, []).append(Share.from_bytes(item.share))
    if len(self_mask.get(v, [])) < t:
        return (
            None,
            f"{len(self_mask.get(v, []))} shares of the victim's self-mask seed, {t} needed",
        )
    b_seed = reconstruct(self_mask[v])
    requests, replies = runner.history[Stage.MASKED_INPUT]
    masked = np.asarray(_of_kind(replies, MaskedInput)[v].words, dtype=np.uint64)
    authors = sorted(s.peer for s in _of_kind(requests, ShareForward)[v].shares)
    advertised = _of_kind(runner.history[Stage.ADVERTISE_KEYS][1], AdvertiseKeys)
    victim_keys = (
        KeyPair.from_private_bytes(reconstruct(mask_key[v]))
        if len(mask_key.get(v, [])) >= t
        else None
    )
    plus: list[bytes] = []
    minus: list[bytes] = []
    for u in authors:
        if victim_keys is not None:
            seed = derive_pair_key(
                victim_keys,
                advertised[u].mask_public,
                purpose=Purpose.MASK_SEED,
                round_id=rid,
                self_id=v,
                peer_id=u,
            )
        elif len(mask_key.get(u, [])) >= t:
            peer_keys = KeyPair.from_private_bytes(reconstruct(mask_key[u]))
            seed = derive_pair_key(
                peer_keys,
                advertised[v].mask_public,
                purpose=Purpose.MASK_SEED,
                round_id=rid,
                self_id=u,
                peer_id=v,
            )
        else:
            return None, f"the pairwise mask of the victim with client {u} stays hidden"
        (plus if v < u else minus).append(seed)
    how = (
        "the victim's own masking key"
        if victim_keys is not None
        else "the masking keys of the 'dropped' peers"
    )
    return _unmask(rnd, masked, b_seed, plus, minus), f"self-mask seed and {how} reconstructed"


def _attack_lists(rnd: _Round, attack: ProtocolAttack) -> tuple[F64 | None, str, str]:
    _honest_until_consistency(rnd)
    v, everyone, gone = rnd.victim, rnd.alive, rnd.dropped
    others = tuple(c for c in everyone if c != v)
    if attack is ProtocolAttack.BOTH_LISTS:
        views: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
            c: (everyone, tuple(sorted({v, *gone}))) for c in others
        }
    else:  # FAKE_DROPOUTS: "everyone but v dropped"
        views = {c: ((v,), tuple(sorted({*others, *gone}))) for c in others}
    responses, errors = _lying_unmask(rnd, views)
    recovered, note = _reconstruct_victim(rnd, responses)
    return recovered, ",".join(sorted(set(errors))), note


def _attack_split_view(rnd: _Round) -> tuple[F64 | None, str, str]:
    _honest_until_consistency(rnd)
    v, everyone, gone = rnd.victim, rnd.alive, rnd.dropped
    # the victim's shareholders first (every peer in a complete graph)
    holders = rnd.runner.server.neighbours(v)
    others = sorted((c for c in everyone if c != v), key=lambda c: (c not in holders, c))
    t = rnd.runner.server.config.threshold
    group_a, group_b = others[:t], others[t:]
    without_v = tuple(c for c in everyone if c != v)
    server = rnd.runner.server

    def near(c: int, dropped: set[int]) -> tuple[int, ...]:
        # a client only takes dropouts among the peers it shared keys with, as an honest
        # server lists them on a sparse graph
        return tuple(sorted(dropped & server.neighbours(c)))

    views: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
        c: (everyone, near(c, set(gone))) for c in [*group_a, v]
    }
    views.update({c: (without_v, near(c, {v, *gone})) for c in group_b})
    responses, errors = _lying_unmask(rnd, views)
    recovered, note = _reconstruct_victim(rnd, responses)
    return (
        recovered,
        ",".join(sorted(set(errors))),
        f"{len(group_a)} peers told v survived, {len(group_b)} told v dropped; {note}",
    )


# ----------------------------------------------------------------------------- key substitution


def _attack_substitution(
    rnd: _Round, *, replay: bool, hardening: Hardening
) -> tuple[F64 | None, str, str]:
    """Man in the middle between the victim and its peers with server-known key pairs.

    The server runs the advertisement and graph-seed stages honestly (the victim's
    neighbourhood then follows from everyone's committed contributions), and then sends
    the victim a key broadcast in which every peer's keys are replaced by key pairs the
    server generated. The peers' real seed commitments and every reveal stay in the
    broadcast: the victim checks them against the entries it was shown.

    ``replay``: the substituted keys come with signatures the peers made themselves in an
    older round (their private halves handed over by colluders). The transcript is the one
    the peers' software signs: with this round's cohort digest and each peer's seed
    commitment in it, and the round id only if the clients bind it. This grants the server
    more than a real replay would give it: a genuinely older advertisement carries an older
    commitment, which binds the older round id and fails the victim's commitment check
    (``ProtocolAbortError``) whatever the hardening; the script isolates the round binding.
    """
    runner = rnd.runner
    server = runner.server
    config = server.config
    rid = config.round_id
    t = config.threshold
    v = rnd.victim
    # advertise keys and graph seed, honestly: the key broadcasts are then pending
    while runner.stage is not Stage.SHARE_KEYS:
        runner.step()
    honest = _of_kind(runner.pending, KeyBroadcast)[v]
    replies = _of_kind(runner.history[Stage.ADVERTISE_KEYS][1], AdvertiseKeys)
    victim_keys = replies[v]
    neighbours = sorted(server.neighbours(v) & set(replies))
    digest = cohort_digest(rnd.ids) if config.consistent else None
    fake: dict[int, tuple[KeyPair, KeyPair, bytes]] = {}
    for u in neighbours:
        mask_kp, share_kp = KeyPair.generate(), KeyPair.generate()
        if replay:
            # signed by u in an older round (u's software binds the round only if hardened)
            old_round = (rid + 1) % (1 << 63)
            signature = runner.identities[u].sign(
                advertise_transcript(
                    client_id=u,
                    mask_public=mask_kp.public_bytes,
                    share_public=share_kp.public_bytes,
                    round_id=old_round if hardening.round_bound_signatures else None,
                    model_hash=bytes(32) if hardening.model_bound_signatures else None,
                    cohort=digest,
                    commitment=replies[u].seed_commitment if config.consistent else None,
                )
            )
        else:
            signature = replies[u].signature  # the peer's real signature, on other keys
        fake[u] = (mask_kp, share_kp, signature)
    broadcast = KeyBroadcast(
        round_id=rid,
        recipient=v,
        peers=tuple(
            PeerKeys(
                u,
                fake[u][0].public_bytes,
                fake[u][1].public_bytes,
                fake[u][2],
                replies[u].round_public,
                replies[u].seed_commitment,
            )
            for u in neighbours
        ),
        reveals=honest.reveals,
    )
    try:
        share_reply = _reply(runner.send_to_client(v, broadcast), ShareKeys)
    except SecAggError as exc:
        return None, type(exc).__name__, "the victim rejected the substituted keys"
    # decrypt the shares the victim addressed to its (fake) peers
    b_shares, s_shares = [], []
    for enc in share_reply.shares:
        key = derive_pair_key(
            fake[enc.peer][1],
            victim_keys.share_public,
            purpose=Purpose.SHARE_ENCRYPTION,
            round_id=rid,
            self_id=enc.peer,
            peer_id=v,
        )
        plain = ShareCipher(key).decrypt(enc.ciphertext, round_id=rid, sender=v, recipient=enc.peer)
        b_shares.append(Share.from_bytes(plain[:SHARE_BYTES]))
        s_shares.append(Share.from_bytes(plain[SHARE_BYTES:]))
    b_seed = reconstruct(b_shares[:t])
    # forge the peers' encrypted shares for the victim so that it sends its masked input
    forged = []
    order = sorted(set(neighbours) | {v})
    for u in neighbours:
        dummy_b = next(s for s in split(os.urandom(32), threshold=t, indices=order) if s.index == v)
        dummy_s = next(s for s in split(os.urandom(32), threshold=t, indices=order) if s.index == v)
        key = derive_pair_key(
            fake[u][1],
            victim_keys.share_public,
            purpose=Purpose.SHARE_ENCRYPTION,
            round_id=rid,
            self_id=u,
            peer_id=v,
        )
        token = ShareCipher(key).encrypt(
            dummy_b.to_bytes() + dummy_s.to_bytes(), round_id=rid, sender=u, recipient=v
        )
        forged.append(EncryptedShare(u, token))
    forward = ShareForward(round_id=rid, recipient=v, shares=tuple(forged))
    masked_reply = _reply(runner.send_to_client(v, forward), MaskedInput)
    masked = np.asarray(masked_reply.words, dtype=np.uint64)
    plus: list[bytes] = []
    minus: list[bytes] = []
    for u in neighbours:
        seed = derive_pair_key(
            fake[u][0],
            victim_keys.mask_public,
            purpose=Purpose.MASK_SEED,
            round_id=rid,
            self_id=u,
            peer_id=v,
        )
        (plus if v < u else minus).append(seed)
    _ = s_shares  # the victim's masking key is not even needed: the server holds the peers' halves
    return (
        _unmask(rnd, masked, b_seed, plus, minus),
        "",
        "shares decrypted with the substituted keys; masks recomputed",
    )


# ----------------------------------------------------------------------------- entry points


def _configuration(
    attack: ProtocolAttack,
    configuration: Configuration,
    n: int,
    graph: GraphKind = GraphKind.COMPLETE,
) -> tuple[Hardening, ProtocolParameters, str]:
    """``(hardening, parameters, description)`` for an attack and a configuration."""
    threat = ThreatModel()
    params = select_parameters(n, threat, graph=graph)
    name = "SecAgg" if params.complete else "SecAgg+"
    if configuration is Configuration.HARDENED:
        return (
            Hardening(),
            params,
            f"{name}, malicious-server hardening "
            f"(t={params.threshold} of k={params.degree}, every check on)",
        )
    if attack is ProtocolAttack.REPLAYED_KEYS:
        return (
            replace(Hardening(), round_bound_signatures=False),
            params,
            f"{name}, signatures without the round bound in (baseline)",
        )
    if attack is ProtocolAttack.SPLIT_VIEW:
        curious = select_parameters(n, ThreatModel(server=ServerClass.CURIOUS), graph=graph)
        weak = replace(params, threshold=min(curious.threshold, params.threshold))
        return (
            replace(Hardening(), consistency_check=False),
            weak,
            f"{name}, no consistency check, curious-server threshold t={weak.threshold} (baseline)",
        )
    return (
        Hardening.unhardened(),
        params,
        f"{name}, every client-side check off (baseline, as Flower 1.41's client)",
    )


def run_protocol_attack(
    attack: ProtocolAttack,
    configuration: Configuration,
    updates: Mapping[int, F64],
    *,
    victim: int,
    seed: int = 0,
    graph: GraphKind = GraphKind.COMPLETE,
    dropouts: Sequence[int] = (),
) -> AttackOutcome:
    """Run one scripted attack against real clients holding ``updates``.

    Args:
        attack: a masking-protocol attack (not ``PAILLIER_SINGLE_DECRYPTION``; see
            :func:`run_paillier_attack`).
        configuration: hardened clients or the baseline.
        updates: client id (>= 1) -> float update; the victim's is what the server wants.
        victim: the target's id.
        seed: stochastic rounding of the encoder (simulation only).
        graph: the complete graph (SecAgg) or the Harary graph (SecAgg+) with ``k`` and
            ``t`` from the default threat model.
        dropouts: clients (not the victim) that vanish after sharing their keys, before
            their masked input; the scripted server lists them as dropped.
    """
    if victim in dropouts:
        raise InvalidParameterError("the victim cannot be one of the dropouts")
    if attack is ProtocolAttack.PAILLIER_SINGLE_DECRYPTION:
        raise InvalidParameterError("use run_paillier_attack for the Paillier attack")
    if len(updates) < 4:
        raise InvalidParameterError("need at least four clients")
    hardening, params, defense = _configuration(attack, configuration, len(updates), graph)
    rnd = _setup(
        updates, victim, hardening=hardening, parameters=params, seed=seed, dropped=dropouts
    )
    if attack in (ProtocolAttack.BOTH_LISTS, ProtocolAttack.FAKE_DROPOUTS):
        recovered, refusal, note = _attack_lists(rnd, attack)
    elif attack is ProtocolAttack.SPLIT_VIEW:
        recovered, refusal, note = _attack_split_view(rnd)
    else:
        recovered, refusal, note = _attack_substitution(
            rnd, replay=attack is ProtocolAttack.REPLAYED_KEYS, hardening=hardening
        )
    if refusal:
        note = f"{note}; refused with {refusal}"
    return _outcome(rnd, attack, configuration, defense, recovered, refusal, note)


def run_paillier_attack(
    configuration: Configuration,
    updates: Mapping[int, F64],
    *,
    victim: int,
    key_bits: int = 512,
    seed: int = 0,
) -> AttackOutcome:
    """Ask the decryptors to decrypt the victim's ciphertext alone.

    The server runs an honest commitment and upload phase, then forwards only the victim's
    signed upload to the decryptors and asks them to decrypt "the aggregate" of that single
    contribution. Hardened decryptors refuse (fewer than ``min_aggregate_size``
    contributions); the baseline decryptors
    (:meth:`protocols.paillier.PaillierHardening.unhardened`) answer, and ``t`` partial
    decryptions of one ciphertext are that client's update.

    ``key_bits`` defaults to 512 (INSECURE, for speed: the check does not depend on it).
    """
    ids = sorted(updates)
    if victim not in ids:
        raise InvalidParameterError("the victim must be one of the clients")
    params = paillier_parameters(len(ids), ThreatModel())
    key = deal_threshold_key(
        n_decryptors=params.n_decryptors,
        threshold=params.threshold,
        key_bits=key_bits,
        hazmat_allow_weak_key=key_bits < 2048,
    )
    hardened = configuration is Configuration.HARDENED
    hardening = PaillierHardening() if hardened else PaillierHardening.unhardened()
    setup = setup_paillier_round(
        {c: updates[c] for c in ids}, key=key, seed=seed, hardening=hardening
    )
    runner = setup.runner
    config = runner.config
    runner.run_until(Stage.MASKED_INPUT)
    runner.deliver_requests()  # every client uploads; nothing is delivered to the server yet
    victim_upload = next(m for m in runner.outbox.get(victim, []) if isinstance(m, Upload))
    pk, _shares = key
    tolerance = 2.0 * float(getattr(config.encoder, "quantum", 0.0))
    truth = np.asarray(updates[victim], dtype=np.float64)
    partials = []
    errors: list[str] = []
    for party in sorted(config.decryptor_parties):
        request = DecryptionRequest(
            round_id=config.round_id, recipient=party, contributors=(victim,)
        )
        try:
            runner.send_to_client(party, victim_upload)
            replies = runner.send_to_client(party, request)
            partials += [m.partial for m in replies if isinstance(m, PartialDecryptionMessage)]
        except SecAggError as exc:
            errors.append(type(exc).__name__)
    refusal = ",".join(sorted(set(errors)))
    if hardened:
        defense = (
            f"Paillier, decryptors check the aggregate (>= {config.min_aggregate_size} signed "
            "contributions, once per round)"
        )
    else:
        defense = "Paillier, decryptors decrypt whatever aggregate they are asked for (baseline)"
    if len(partials) < pk.threshold:
        note = f"{len(partials)} partial decryptions, {pk.threshold} needed; refused with {refusal}"
        return AttackOutcome(
            ProtocolAttack.PAILLIER_SINGLE_DECRYPTION,
            configuration,
            defense,
            False,
            float("inf"),
            tolerance,
            refusal,
            None,
            note,
        )
    plain = combine_partial_decryptions(
        pk, victim_upload.vector, partials[: pk.threshold], verify=False, context=config.context
    )
    ring = config.packing.unpack(plain, config.encoded_length, summands=1)
    recovered = np.asarray(config.encoder.decode_sum(ring, 1), dtype=np.float64)
    error = float(np.max(np.abs(recovered - truth)))
    note = (
        f"{pk.threshold} partial decryptions of the victim's ciphertext alone (key {key_bits} bits)"
    )
    return AttackOutcome(
        ProtocolAttack.PAILLIER_SINGLE_DECRYPTION,
        configuration,
        defense,
        error <= tolerance,
        error,
        tolerance,
        refusal,
        recovered,
        note,
    )
