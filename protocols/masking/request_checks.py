"""What a client checks in the server's requests before it acts on them.

The server relays everything and alone sees who dropped out, so a lying server can claim
anything: another cohort or neighbourhood, a replaced seed commitment, substituted keys, a
victim's peers dropped (to unmask it alone), a client both dropped and surviving (to get
both of its shares), different survivor sets to different clients, ids that never took
part. Each function below is one such check of
:class:`~protocols.masking.client.SecAggClient`, pure: it reads the request and what the
client itself knows, returns what the client may then rely on, and raises; it reveals and
changes nothing. Which of the checks against a lying server run is decided by the client's
:class:`~protocols.masking.config.Hardening` (an unhardened baseline switches them off to
show what they prevent).

Errors: a contradiction that only a lying server produces is a
:class:`~secagg.errors.ProtocolAbortError`; too few clients a
:class:`~secagg.errors.ThresholdNotMetError`; a malformed list a
:class:`~secagg.errors.MessageError`; an unknown or invalid signature an
:class:`~secagg.errors.AuthenticationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set

from protocols.masking.config import Hardening, RoundConfig
from protocols.masking.messages import RoundStart, SeedRequest, UnmaskRequest
from protocols.masking.records import PUBLIC_KEY_BYTES, PeerKeys, SeedEntry
from protocols.masking.transcripts import (
    advertise_transcript,
    cohort_digest,
    consistency_transcript,
    masking_set_transcript,
    seed_commitment,
)
from secagg.errors import (
    AuthenticationError,
    MessageError,
    ProtocolAbortError,
    ThresholdNotMetError,
)
from secagg.primitives.signing import verify_signature
from threat_models.parameters import consistency_quorum

__all__ = [
    "strictly_increasing",
    "check_round_start",
    "check_seed_request",
    "check_reveals",
    "check_peer_keys",
    "check_survivor_set",
    "check_unmask_lists",
    "check_quorum",
    "check_attestations",
]


def strictly_increasing(name: str, ids: Sequence[int]) -> None:
    """Refuse a list of ids that is not sorted or holds a duplicate.

    Raises:
        MessageError: ``ids`` is not strictly increasing.
    """
    if any(a >= b for a, b in zip(ids, ids[1:], strict=False)):
        raise MessageError(f"{name} must be sorted and free of duplicates")


def check_round_start(
    m: RoundStart, *, client_id: int, config: RoundConfig, pki: Mapping[int, bytes]
) -> tuple[tuple[int, ...], frozenset[int]]:
    """The cohort (server that may lie) or the neighbours (curious server) a round starts with.

    Returns:
        ``(cohort, neighbours)``: the checked cohort and no neighbours yet (they follow from
        the graph seed), or no cohort and the checked neighbours the server named.

    Raises:
        MessageError: the list is not sorted and distinct, leaves this client out (or, for
            neighbours, names it), or has the wrong size.
        AuthenticationError: (signed rounds) the list names a client outside the PKI.
    """
    params = config.parameters
    if config.consistent:
        cohort = m.cohort
        strictly_increasing("cohort", cohort)
        if client_id not in cohort:
            raise MessageError("the cohort does not list this client")
        if len(cohort) != params.num_clients:
            raise MessageError(f"expected a cohort of {params.num_clients}, got {len(cohort)}")
        if config.signed and any(v not in pki for v in cohort):
            raise AuthenticationError()
        return cohort, frozenset()
    strictly_increasing("neighbours", m.neighbours)
    if client_id in m.neighbours:
        raise MessageError("a client cannot be its own neighbour")
    if len(m.neighbours) != params.degree:
        raise MessageError(f"expected {params.degree} neighbours, got {len(m.neighbours)}")
    if config.signed and any(v not in pki for v in m.neighbours):
        raise AuthenticationError()
    return (), frozenset(m.neighbours)


def check_seed_request(
    m: SeedRequest,
    *,
    client_id: int,
    config: RoundConfig,
    hardening: Hardening,
    cohort: Sequence[int],
    commitment: bytes,
) -> frozenset[int]:
    """The committed contributions to the graph seed, this client's own among them.

    Returns:
        The clients that committed.

    Raises:
        MessageError: the entries are not sorted and distinct, or name a client outside the
            cohort.
        ProtocolAbortError: this client's commitment is missing or replaced.
        ThresholdNotMetError: (``check_survivor_count``) fewer commitments than the
            consistency quorum.
    """
    ids = [e.client_id for e in m.entries]
    strictly_increasing("seed entries", ids)
    members = set(cohort)
    if any(v not in members for v in ids):
        raise MessageError("seed entries name a client outside the cohort")
    mine = [e for e in m.entries if e.client_id == client_id]
    if not mine or mine[0].commitment != commitment:
        raise ProtocolAbortError("the server dropped or replaced this client's seed commitment")
    quorum = config.parameters.consistency_quorum
    if hardening.check_survivor_count and len(ids) < quorum:
        raise ThresholdNotMetError(
            f"{len(ids)} clients committed, the consistency quorum is {quorum}"
        )
    return frozenset(ids)


def check_reveals(
    entries: Sequence[SeedEntry], reveals: Sequence[bytes], *, round_id: int
) -> dict[int, bytes]:
    """Every committed contribution revealed, each matching its commitment.

    Returns:
        client id -> its commitment.

    Raises:
        ProtocolAbortError: a reveal is missing or does not match its commitment.
    """
    if len(reveals) != len(entries):
        raise ProtocolAbortError("the key broadcast does not carry every committed contribution")
    commitments: dict[int, bytes] = {}
    for entry, reveal in zip(entries, reveals, strict=True):
        expected = seed_commitment(round_id=round_id, client_id=entry.client_id, reveal=reveal)
        if expected != entry.commitment:
            raise ProtocolAbortError(
                f"the contribution of client {entry.client_id} does not match its commitment"
            )
        commitments[entry.client_id] = entry.commitment
    return commitments


def check_peer_keys(
    peers: Sequence[PeerKeys],
    *,
    config: RoundConfig,
    hardening: Hardening,
    neighbours: frozenset[int],
    commitments: Mapping[int, bytes],
    own_keys: Set[bytes],
    pki: Mapping[int, bytes],
    cohort: Sequence[int],
    round_id: int | None,
    model_hash: bytes | None,
) -> dict[int, bytes]:
    """The peers' advertised keys, as the server relays them in the key broadcast.

    Args:
        peers: the relayed keys (their ids already distinct).
        config: the round.
        hardening: ``authenticate_keys`` verifies the identity signatures (signed rounds).
        neighbours: ``N(u)``; every peer must be in it.
        commitments: client id -> graph-seed commitment (rounds with a graph seed).
        own_keys: this client's two public keys.
        pki: client id -> identity public key (signed rounds).
        cohort: the round's cohort (rounds with a graph seed).
        round_id, model_hash: what the signed keys are bound to (``None``: left out).

    Returns:
        client id -> its per-round signing key (semi-malicious rounds with a graph seed).

    Raises:
        MessageError: a peer without a commitment or outside ``N(u)``, two equal keys, or a
            missing round signing key.
        ThresholdNotMetError: fewer than ``t`` peers advertised keys.
        ProtocolAbortError: a peer's keys carry another seed commitment.
        AuthenticationError: an identity signature does not verify.
    """
    consistent = config.consistent
    ids = [p.client_id for p in peers]
    if consistent and any(v not in commitments for v in ids):
        raise MessageError("key broadcast lists a client without a committed contribution")
    if any(v not in neighbours for v in ids):
        raise MessageError("key broadcast lists a client that is not a neighbour")
    t = config.threshold
    if len(ids) < t:
        raise ThresholdNotMetError(f"{len(ids)} peers advertised keys, {t} needed")
    keys = [p.mask_public for p in peers] + [p.share_public for p in peers]
    if len(set(keys)) != len(keys) or own_keys & set(keys):
        raise MessageError("public keys must all be distinct")
    peer_signing: dict[int, bytes] = {}
    for p in peers:
        if consistent and p.seed_commitment != commitments[p.client_id]:
            raise ProtocolAbortError(f"client {p.client_id}'s keys carry another seed commitment")
        if consistent and not config.signed:
            if len(p.round_public) != PUBLIC_KEY_BYTES:
                raise MessageError("a peer's round signing key is missing")
            peer_signing[p.client_id] = p.round_public
    if config.signed and hardening.authenticate_keys:
        digest = cohort_digest(cohort) if consistent else None
        for p in peers:
            transcript = advertise_transcript(
                client_id=p.client_id,
                mask_public=p.mask_public,
                share_public=p.share_public,
                round_id=round_id,
                model_hash=model_hash,
                cohort=digest,
                commitment=p.seed_commitment if consistent else None,
            )
            verify_signature(pki[p.client_id], p.signature, transcript)
    return peer_signing


def check_survivor_set(
    survivors: Sequence[int],
    *,
    client_id: int,
    config: RoundConfig,
    hardening: Hardening,
    neighbours: frozenset[int],
    held: Set[int],
    committed: Set[int],
) -> None:
    """The survivor set ``S`` of a consistency or unmask request, against this client's view.

    Args:
        survivors: ``S`` as the server sent it.
        client_id: the checking client.
        config: the round.
        hardening: which checks run (``check_survivor_lists``, ``check_survivor_count``).
        neighbours: the client's neighbours ``N(u)``.
        held: the peers whose shares the client holds (its masking set ``M(u)``).
        committed: the clients that committed to the graph seed (rounds with one).

    Raises:
        MessageError: ``S`` is not sorted and distinct.
        ProtocolAbortError: ``S`` leaves this client out, or names a neighbour that never
            shared keys or a client that never committed.
        ThresholdNotMetError: ``S`` is below the minimum aggregate size, leaves fewer than
            ``t`` of the client's peers, or (SecAgg+ with a derived graph) declares more
            clients dropped than the graph's connectivity bound allows.
    """
    strictly_increasing("survivors", survivors)
    params = config.parameters
    if hardening.check_survivor_lists:
        if client_id not in set(survivors):
            raise ProtocolAbortError("server lists this client as dropped but asks it to continue")
        if not neighbours.intersection(survivors) <= held:
            raise ProtocolAbortError("survivor list names a neighbour that never shared keys")
        if config.consistent and any(v not in committed for v in survivors):
            raise ProtocolAbortError(
                "survivor list names a client that never committed to the graph seed"
            )
    if hardening.check_survivor_count:
        if len(survivors) < params.min_aggregate_size:
            raise ThresholdNotMetError(
                f"{len(survivors)} survivors, below the minimum aggregate size "
                f"{params.min_aggregate_size}"
            )
        alive = len(held & set(survivors))
        if alive < params.threshold:
            raise ThresholdNotMetError(f"{alive} surviving peers, {params.threshold} needed")
        if config.consistent and not params.complete and hardening.derive_graph:
            dropped = params.num_clients - len(survivors)
            if dropped > params.max_dropouts:
                raise ThresholdNotMetError(
                    f"{dropped} clients declared dropped; the graph's connectivity bound allows "
                    f"{params.max_dropouts}"
                )


def check_unmask_lists(
    survivor_set: Set[int], dropped_set: Set[int], *, held: Set[int], hardening: Hardening
) -> None:
    """The surviving and the dropped list of an unmask request split this client's peers.

    Raises:
        ProtocolAbortError: (``check_survivor_lists``) a client is in both lists, the dropped
            list names a client that shared no keys with this one, or a peer is in neither.
    """
    if not hardening.check_survivor_lists:
        return
    if survivor_set & dropped_set:
        raise ProtocolAbortError("server lists a client as both dropped and surviving")
    if not dropped_set <= held:
        raise ProtocolAbortError("dropped list names a client that never shared keys with this one")
    if not held <= survivor_set | dropped_set:
        raise ProtocolAbortError("server omits a peer from both the surviving and the dropped list")


def check_quorum(
    request: UnmaskRequest,
    survivor_set: Set[int],
    *,
    client_id: int,
    config: RoundConfig,
    hardening: Hardening,
    signed_survivors: tuple[int, ...] | None,
    own_signature: bytes,
    round_id: int | None,
    context: bytes | None,
    verify_key: Callable[[int, bytes], bytes],
) -> None:
    """``Q`` valid signatures on the survivor set, from distinct survivors.

    Args:
        request: the unmask request.
        survivor_set: its survivors.
        client_id: the checking client.
        config: the round.
        hardening: ``verified_survivors`` off counts only the majority part of the quorum.
        signed_survivors: the survivor set this client signed in the consistency check.
        own_signature: this client's signature on it.
        round_id, context: what the signatures are bound to (``None``: left out).
        verify_key: ``(signer, key the server offers) -> the key that verifies it``.

    Raises:
        ProtocolAbortError: another survivor set than the one signed, or another signature
            in this client's name.
        MessageError: two signatures from one signer, or one from a non-survivor.
        ThresholdNotMetError: fewer signatures than the quorum.
        AuthenticationError: a signature does not verify.
    """
    params = config.parameters
    if signed_survivors is None or tuple(request.survivors) != signed_survivors:
        raise ProtocolAbortError("survivor set differs from the one this client signed")
    signers = [s.signer for s in request.signatures]
    if len(set(signers)) != len(signers):
        raise MessageError("two signatures from the same signer")
    if any(v not in survivor_set for v in signers):
        raise MessageError("signature from a client that is not a survivor")
    if hardening.verified_survivors:
        quorum = params.consistency_quorum
    else:
        # the majority part of the quorum only (what counted before list entries were verified)
        majority = consistency_quorum(params.num_clients, params.max_colluders, 2)
        quorum = min(params.consistency_quorum, majority)
    if len(signers) < quorum:
        raise ThresholdNotMetError(
            f"{len(signers)} survivors signed the survivor set, {quorum} needed"
        )
    transcript = consistency_transcript(
        survivors=request.survivors, round_id=round_id, context=context
    )
    # the server verified every signature it relays: any invalid one shows a lying server
    for s in sorted(request.signatures, key=lambda sig: sig.signer)[:quorum]:
        if s.signer == client_id:
            if s.signature != own_signature:
                raise ProtocolAbortError(
                    "the server relayed another signature in this client's name"
                )
            continue
        verify_signature(verify_key(s.signer, s.signer_key), s.signature, transcript)


def check_attestations(
    request: UnmaskRequest,
    survivor_set: Set[int],
    *,
    held: Set[int],
    committed: Set[int],
    round_id: int | None,
    context: bytes | None,
    neighbours_of: Callable[[int], frozenset[int] | None],
    verify_key: Callable[[int], bytes],
) -> None:
    """Every surviving peer masked with all its surviving neighbours (its signed masking set).

    Args:
        request: the unmask request (its ``key_sharers`` and ``attestations``).
        survivor_set: its survivors.
        held: the peers whose shares this client holds.
        committed: the clients that committed to the graph seed.
        round_id, context: what the attestations are bound to (``None``: left out).
        neighbours_of: ``N(v)`` when this client can compute it, else ``None``.
        verify_key: the key that verifies ``v``'s signatures.

    Raises:
        MessageError: the key sharers are not sorted and distinct, or a peer attests twice.
        ProtocolAbortError: the key sharers contradict the survivors or this client's peers,
            or a surviving peer's attestation is missing.
        AuthenticationError: an attestation does not verify (the peer masked with fewer).
    """
    sharers = request.key_sharers
    strictly_increasing("key_sharers", sharers)
    sharer_set = set(sharers)
    if not survivor_set <= sharer_set or not sharer_set <= committed or not held <= sharer_set:
        raise ProtocolAbortError(
            "the key-sharer list contradicts the survivors or this client's peers"
        )
    by_peer = {a.peer: a.signature for a in request.attestations}
    if len(by_peer) != len(request.attestations):
        raise MessageError("two attestations from the same peer")
    for v in sorted(held & survivor_set):
        nbrs = neighbours_of(v)
        if nbrs is None:
            continue
        signature = by_peer.get(v)
        if signature is None:
            raise ProtocolAbortError(f"no masking-set attestation from surviving peer {v}")
        transcript = masking_set_transcript(
            client_id=v, masking_set=sorted(nbrs & sharer_set), round_id=round_id, context=context
        )
        verify_signature(verify_key(v), signature, transcript)
