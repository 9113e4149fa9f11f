"""A scripted lying server for SecAgg / SecAgg+: it drives the real clients, stage by stage.

:class:`LyingServer` takes a :class:`~protocols.masking.driver.RoundRunner` (real clients, real
cryptography, real wire format) and replaces the honest server from the key broadcast on:
it decides what each client is shown -- whose keys, whose shares, which survivor set, which
dropped list, which signatures and attestations -- and collects whatever the clients
reveal. Every refusal is recorded (the exception's type), so an attack's outcome is either
the victim's exact input or the list of clients that refused and why.

The attacks built on it (:func:`partner_keys_attack`, :func:`padded_survivors_attack`,
:func:`component_graph_attack`, :func:`colluders_around_victim_attack`) each try to learn
*one* client's input, or a sum of fewer clients than the minimum aggregate size; the tests
run each against a deliberately weakened configuration (where it must succeed) and against
every server class that claims to stop it (where it must not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from protocols.masking.client import SecAggClient
from protocols.masking.config import Hardening
from protocols.masking.driver import RoundRunner, setup_round
from protocols.masking.graph import harary_graph, seeded_ring
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
from protocols.stages import Stage
from secagg.errors import InvalidParameterError, SecAggError, ShareError
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.keys import KeyPair, Purpose, derive_pair_key
from secagg.primitives.shamir import Share, reconstruct
from threat_models.model import ThreatModel
from threat_models.parameters import GraphKind, select_parameters

__all__ = [
    "LyingServer",
    "Harvest",
    "partner_keys_views",
    "partner_keys_attack",
    "padded_survivors_attack",
    "ring_order",
    "component_graph_attack",
    "colluders_around_victim_attack",
    "PREVIOUS_HARDENING",
    "COLLUDER_HARDENING",
    "ScenarioOutcome",
    "partner_keys_scenario",
    "padded_survivors_scenario",
    "component_graph_scenario",
    "colluders_scenario",
]

U64 = npt.NDArray[np.uint64]


@dataclass
class Harvest:
    """What the clients revealed in the unmasking stage, and who refused.

    Attributes:
        self_mask: owner -> self-mask shares received.
        mask_key: owner -> masking-key shares received.
        refusals: client -> name of the error it raised (at any stage the server drove).
    """

    self_mask: dict[int, list[Share]] = field(default_factory=dict)
    mask_key: dict[int, list[Share]] = field(default_factory=dict)
    refusals: dict[int, str] = field(default_factory=dict)


class LyingServer:
    """Replaces the honest server of ``runner`` from the key broadcast on.

    Use: :meth:`honest_setup` (advertise keys and graph seed, honestly), then
    :meth:`broadcast_keys`, :meth:`forward_shares`, :meth:`consistency`, :meth:`unmask`.
    """

    def __init__(self, runner: RoundRunner) -> None:
        self.runner = runner
        self.config = runner.server.config
        self.clients: dict[int, SecAggClient] = runner.clients
        self.advertised: dict[int, AdvertiseKeys] = {}
        self.reveals: tuple[bytes, ...] = ()
        self.share_keys: dict[int, ShareKeys] = {}
        self.forwarded: dict[int, tuple[int, ...]] = {}
        self.masked: dict[int, MaskedInput] = {}
        self.signatures: dict[tuple[int, ...], dict[int, bytes]] = {}
        self.harvest = Harvest()

    # ------------------------------------------------------------------ plumbing

    def send(self, client: int, message: Message) -> Message | None:
        """Deliver ``message`` to a client through the wire format; ``None`` if it refused."""
        try:
            replies = self.clients[client].handle(self.runner.transmit(message))
        except SecAggError as exc:
            self.harvest.refusals[client] = type(exc).__name__
            return None
        return self.runner.transmit(replies[0]) if replies else None

    @property
    def ids(self) -> tuple[int, ...]:
        """The cohort."""
        return tuple(sorted(self.clients))

    def honest_setup(self) -> None:
        """Run the stages before the key broadcast with the honest server."""
        runner = self.runner
        for stage in (Stage.ADVERTISE_KEYS, Stage.GRAPH_SEED):
            if stage in runner.stages:
                runner.step()
        self.advertised = {
            cid: m
            for cid, m in runner.history[Stage.ADVERTISE_KEYS][1].items()
            if isinstance(m, AdvertiseKeys)
        }
        pending = next(iter(runner.pending.values()))
        if isinstance(pending, KeyBroadcast):
            self.reveals = pending.reveals

    def peer_keys(self, v: int) -> PeerKeys:
        """``v``'s advertisement as the server relays it."""
        a = self.advertised[v]
        return PeerKeys(
            v, a.mask_public, a.share_public, a.signature, a.round_public, a.seed_commitment
        )

    def true_neighbours(self, v: int) -> frozenset[int]:
        """``v``'s neighbours in the graph the clients derive (or the honest server chose)."""
        return self.runner.server.neighbours(v)

    # ------------------------------------------------------------------ stages

    def broadcast_keys(
        self, neighbours: Mapping[int, Iterable[int]] | None = None, *, skip: Iterable[int] = ()
    ) -> None:
        """Send each client the keys of ``neighbours[client]`` (default: its true neighbours)."""
        gone = set(skip)
        for u in self.ids:
            if u in gone:
                continue
            peers = sorted(
                set(neighbours[u]) if neighbours is not None else self.true_neighbours(u)
            )
            peers = [p for p in peers if p in self.advertised and p not in gone]
            message = KeyBroadcast(
                round_id=self.config.round_id,
                recipient=u,
                peers=tuple(self.peer_keys(p) for p in peers),
                reveals=self.reveals,
            )
            reply = self.send(u, message)
            if isinstance(reply, ShareKeys):
                self.share_keys[u] = reply

    def forward_shares(
        self, only: Mapping[int, Iterable[int]] | None = None, *, skip: Iterable[int] = ()
    ) -> None:
        """Forward to each client the shares addressed to it (``only[client]``: those authors)."""
        gone = set(skip)
        inbox: dict[int, list[EncryptedShare]] = {u: [] for u in self.share_keys}
        for author, message in sorted(self.share_keys.items()):
            for enc in message.shares:
                if enc.peer in inbox:
                    inbox[enc.peer].append(EncryptedShare(author, enc.ciphertext))
        for u, items in sorted(inbox.items()):
            if u in gone:
                continue
            if only is not None and u in only:
                allowed = set(only[u])
                items = [e for e in items if e.peer in allowed]
            self.forwarded[u] = tuple(e.peer for e in items)
            reply = self.send(
                u, ShareForward(round_id=self.config.round_id, recipient=u, shares=tuple(items))
            )
            if isinstance(reply, MaskedInput):
                self.masked[u] = reply

    def consistency(self, views: Mapping[int, Sequence[int]]) -> None:
        """Ask each client to sign the survivor set of its view; pool the signatures by set."""
        if Stage.CONSISTENCY_CHECK not in self.config.stages:
            return
        for u, survivors in sorted(views.items()):
            s = tuple(sorted(survivors))
            reply = self.send(
                u, ConsistencyRequest(round_id=self.config.round_id, recipient=u, survivors=s)
            )
            if isinstance(reply, ConsistencySignature):
                self.signatures.setdefault(s, {})[u] = reply.signature

    def add_signatures(self, pool: Mapping[tuple[int, ...], Mapping[int, bytes]]) -> None:
        """Add signatures gathered elsewhere (for instance in another execution of the round)."""
        for s, sigs in pool.items():
            self.signatures.setdefault(s, {}).update(sigs)

    def _signature_records(self, survivors: tuple[int, ...]) -> tuple[SurvivorSignature, ...]:
        signed = self.config.signed
        return tuple(
            SurvivorSignature(
                v,
                sig,
                b"" if signed or v not in self.advertised else self.advertised[v].round_public,
            )
            for v, sig in sorted(self.signatures.get(survivors, {}).items())
        )

    def unmask(self, views: Mapping[int, tuple[Sequence[int], Sequence[int]]]) -> Harvest:
        """Send each client its ``(survivors, dropped)`` view; collect the shares it reveals."""
        sharers = tuple(sorted(self.share_keys))
        for u, (survivors, dropped) in sorted(views.items()):
            s = tuple(sorted(survivors))
            held = set(self.forwarded.get(u, ()))
            attestations = tuple(
                Attestation(v, self.masked[v].attestation)
                for v in sorted(held & set(s))
                if v in self.masked and self.masked[v].attestation
            )
            request = UnmaskRequest(
                round_id=self.config.round_id,
                recipient=u,
                survivors=s,
                dropped=tuple(sorted(dropped)),
                signatures=self._signature_records(s),
                key_sharers=sharers,
                attestations=attestations,
            )
            reply = self.send(u, request)
            if isinstance(reply, UnmaskResponse):
                for r in reply.self_mask_shares:
                    self.harvest.self_mask.setdefault(r.owner, []).append(Share.from_bytes(r.share))
                for r in reply.mask_key_shares:
                    self.harvest.mask_key.setdefault(r.owner, []).append(Share.from_bytes(r.share))
        return self.harvest

    # ------------------------------------------------------------------ what the server learns

    def _secret(self, shares: Mapping[int, list[Share]], owner: int) -> bytes | None:
        got = shares.get(owner, [])
        if len(got) < self.config.threshold:
            return None
        try:
            return reconstruct(got[: self.config.threshold], verify_extra=False)
        except ShareError:
            return None

    def unmask_one(self, v: int) -> U64 | None:
        """``x_v`` from ``y_v`` alone, if the harvest holds ``b_v`` and every mask of ``v``."""
        if v not in self.masked:
            return None
        b_seed = self._secret(self.harvest.self_mask, v)
        if b_seed is None:
            return None
        rid = self.config.round_id
        plus: list[bytes] = []
        minus: list[bytes] = [b_seed]
        own = self._secret(self.harvest.mask_key, v)
        for u in self.forwarded.get(v, ()):
            if own is not None:  # the victim's own masking key: every pairwise seed of v
                keys, other, pair = (
                    KeyPair.from_private_bytes(own),
                    self.advertised[u].mask_public,
                    (v, u),
                )
            else:
                private = self._secret(self.harvest.mask_key, u)
                if private is None:
                    return None
                keys, other, pair = (
                    KeyPair.from_private_bytes(private),
                    self.advertised[v].mask_public,
                    (u, v),
                )
            seed = derive_pair_key(
                keys,
                other,
                purpose=Purpose.MASK_SEED,
                round_id=rid,
                self_id=pair[0],
                peer_id=pair[1],
            )
            # v added +PRG(s_vu) when v < u
            (minus if v < u else plus).append(seed)
        acc: U64 = np.array(self.masked[v].words, dtype=np.uint64)
        bits = self.config.bits
        apply_masks(acc, add=plus, subtract=minus, algorithm=self.config.prg, bits=bits)
        reduce_words(acc, bits)
        return acc

    def partial_sum(self, group: Iterable[int]) -> U64 | None:
        """``sum_{u in group} (y_u - PRG(b_u))``: the group's sum if its pairwise masks cancel."""
        acc = np.zeros(self.config.vector_length, dtype=np.uint64)
        minus: list[bytes] = []
        for u in group:
            seed = self._secret(self.harvest.self_mask, u)
            if u not in self.masked or seed is None:
                return None
            np.add(acc, np.asarray(self.masked[u].words, dtype=np.uint64), out=acc)
            minus.append(seed)
        apply_masks(acc, subtract=minus, algorithm=self.config.prg, bits=self.config.bits)
        reduce_words(acc, self.config.bits)
        return acc


# ---------------------------------------------------------------------------------- attacks


def partner_keys_views(
    server: LyingServer, victim: int, partners: Sequence[int], *, respect_counts: bool = True
) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Per-client ``(survivors, dropped)`` views for the partner-keys attack.

    Every holder of the victim's shares hears that it survived; for each partner ``h``,
    ``t`` holders of ``h``'s shares hear that ``h`` dropped. No client sees a peer both ways,
    and each keeps at least ``t`` surviving peers, so every check a client makes on its own
    view passes. ``respect_counts=False`` lets a client hear of more dropped peers than it
    can lose (against clients that do not count, or to try anyway).

    Raises:
        InvalidParameterError: the cohort is too small to spread the views.
    """
    t = server.config.threshold
    everyone = set(server.ids)
    held = {u: set(server.forwarded.get(u, ())) for u in server.ids}
    spare = {u: len(held[u]) - t if respect_counts else len(held[u]) for u in server.ids}
    dropped: dict[int, set[int]] = {u: set() for u in server.ids}
    partner_set = set(partners)
    for h in partners:
        holders = [u for u in server.ids if u != h and h in held[u] and u != victim]
        holders.sort(key=lambda u: (-spare[u], u in partner_set, u))
        chosen = [u for u in holders if spare[u] > 0][:t]
        if len(chosen) < t:
            raise InvalidParameterError(f"only {len(chosen)} clients can be told that {h} dropped")
        for u in chosen:
            dropped[u].add(h)
            spare[u] -= 1
    views = {}
    for u in server.ids:
        if u == victim:
            continue
        survivors = tuple(sorted(everyone - dropped[u]))
        views[u] = (survivors, tuple(sorted(dropped[u] & held[u])))
    return views


def partner_keys_attack(
    runner: RoundRunner, victim: int, *, respect_counts: bool = True
) -> tuple[U64 | None, Harvest]:
    """Forward the victim only ``t`` peers' shares, then lie differently to different clients.

    Returns the victim's input if the server recovered it (else ``None``) and the harvest.
    """
    server = LyingServer(runner)
    server.honest_setup()
    server.broadcast_keys()
    t = server.config.threshold
    partners = sorted(server.true_neighbours(victim))[:t]
    server.forward_shares({victim: partners})
    views = partner_keys_views(server, victim, partners, respect_counts=respect_counts)
    server.consistency({u: s for u, (s, _) in views.items()})
    server.unmask(views)
    return server.unmask_one(victim), server.harvest


def padded_survivors_attack(
    runner: RoundRunner, plan: Callable[[LyingServer], tuple[Sequence[int], Sequence[int]]]
) -> tuple[U64 | None, tuple[int, ...], Harvest]:
    """Let some clients vanish before sharing keys, then list some of them among the survivors.

    ``plan(server)`` (called once the graph is fixed) returns ``(dropped, padding)``;
    ``padding`` never contributed an input: the survivor list looks long enough, the sum the
    server unmasks holds only the real survivors. Returns that sum (or ``None``), the real
    survivors and the harvest.
    """
    server = LyingServer(runner)
    server.honest_setup()
    dropped, padding = plan(server)
    server.broadcast_keys(skip=dropped)
    server.forward_shares()
    real = tuple(sorted(set(server.masked)))
    listed = tuple(sorted(set(real) | set(padding)))
    views = {u: (listed, ()) for u in real}
    server.consistency({u: listed for u in real})
    server.unmask(views)
    return server.partial_sum(real), real, server.harvest


def ring_order(server: LyingServer) -> tuple[int, ...]:
    """The ring order of the round's seeded graph (what every client computes)."""
    context = server.runner.server.context
    if context is None:
        raise InvalidParameterError("the round has no graph seed")
    return seeded_ring(server.ids, server.config.parameters.degree, context).order


def component_graph_attack(
    runner: RoundRunner, components: Sequence[Sequence[int]]
) -> tuple[list[U64 | None], Harvest]:
    """Run the round on a graph of separate components the server chose; unmask each part.

    Each component is a Harary graph of the round's degree. Returns each component's sum as
    the server computes it (``None`` where it could not) and the harvest.
    """
    server = LyingServer(runner)
    server.honest_setup()
    degree = server.config.parameters.degree
    chosen: dict[int, frozenset[int]] = {}
    for part in components:
        graph = harary_graph(list(part), degree)
        chosen.update({u: frozenset(graph[u]) for u in part})
    server.broadcast_keys(chosen)
    server.forward_shares()
    everyone = tuple(sorted(server.masked))
    server.consistency({u: everyone for u in everyone})
    server.unmask({u: (everyone, ()) for u in everyone})
    return [server.partial_sum(part) for part in components], server.harvest


def colluders_around_victim_attack(
    runner: RoundRunner, victim: int, colluders: Sequence[int], *, keep_graph: bool = False
) -> tuple[U64 | None, Harvest]:
    """Make the colluders the victim's only neighbours; they reveal both of its shares.

    The colluding clients sign like honest ones but run without the survivor-list checks,
    and are asked to list the victim as surviving and dropped at once. ``keep_graph``: the
    server relays the true graph instead (the colluders that happen to be the victim's
    neighbours reveal what they hold).
    """
    server = LyingServer(runner)
    server.honest_setup()
    if keep_graph:
        server.broadcast_keys()
    else:
        plan = {u: set(server.true_neighbours(u)) - {victim} for u in server.ids}
        plan[victim] = set(colluders)
        for c in colluders:
            plan[c].add(victim)
        server.broadcast_keys(plan)
    server.forward_shares()
    everyone = tuple(sorted(server.masked))
    views = {c: (everyone, (victim,)) for c in colluders}
    server.consistency({u: everyone for u in everyone})
    server.unmask(views)
    return server.unmask_one(victim), server.harvest


# ---------------------------------------------------------------------------------- scenarios
#
# Each scenario runs one attack above on float updates (encoded as a deployment encodes
# them) against a weakened configuration (the positive control of the adversarial tests)
# or against the defaults, and measures what the server recovered.

#: the checks of the release before the consistency quorum: survivor lists and counts and
#: key signatures, nothing more (the weakened configuration of partner keys and padding)
PREVIOUS_HARDENING = Hardening(
    consistency_check=False,
    verified_survivors=False,
    attest_masking_sets=False,
    derive_graph=False,
    fresh_signatures=False,
    refuse_round_reuse=False,
)
#: a colluding client: signs like an honest one, makes no check that would stop it revealing
COLLUDER_HARDENING = Hardening(
    check_survivor_lists=False,
    check_survivor_count=False,
    consistency_check=False,
    verified_survivors=False,
    attest_masking_sets=False,
    derive_graph=False,
    refuse_round_reuse=False,
)
_BITS = 32


@dataclass(frozen=True)
class ScenarioOutcome:
    """What the scripted server recovered in one scenario.

    Attributes:
        succeeded: the estimate is within ``tolerance`` of the target.
        error: max-abs error of the estimate (``inf`` without one).
        tolerance: two quantisation steps per summand of the target.
        target: what the server wanted (one client's update, or a sum of ``m`` clients).
        summands: clients in the target.
        recovered: the estimate, decoded.
        refusals: the names of the errors the clients raised.
        defense: the configuration in words.
        note: how the attack went.
    """

    succeeded: bool
    error: float
    tolerance: float
    target: str
    summands: int
    recovered: npt.NDArray[np.float64] | None
    refusals: tuple[str, ...]
    defense: str
    note: str


def _encoded(
    updates: Mapping[int, npt.NDArray[np.float64]], seed: int
) -> tuple[FixedPointEncoder, dict[int, U64]]:
    bound = max(float(np.max(np.abs(v))) for v in updates.values())
    bound = float(2.0 ** np.ceil(np.log2(max(bound, 1e-12))))
    encoder = FixedPointEncoder.symmetric(bound, bits=_BITS, max_clients=len(updates))
    rng = np.random.default_rng(seed)
    inputs = {c: encoder.encode(np.asarray(updates[c], dtype=np.float64), rng=rng) for c in updates}
    return encoder, inputs


def _measure(
    encoder: FixedPointEncoder,
    updates: Mapping[int, npt.NDArray[np.float64]],
    group: Sequence[int],
    got: U64 | None,
    refusals: Iterable[str],
    defense: str,
    note: str,
) -> ScenarioOutcome:
    m = len(group)
    target = f"client {group[0]}'s update" if m == 1 else f"the sum of {m} clients"
    tolerance = 2.0 * encoder.quantum * max(m, 1)
    errors = tuple(sorted(set(refusals)))
    if errors:
        note = f"{note}; refused with {','.join(errors)}"
    if got is None or m == 0:
        return ScenarioOutcome(
            False, float("inf"), tolerance, target, m, None, errors, defense, note
        )
    recovered = np.asarray(encoder.decode_sum(got, m), dtype=np.float64)
    truth = np.sum([np.asarray(updates[c], dtype=np.float64) for c in group], axis=0)
    error = float(np.max(np.abs(recovered - truth)))
    return ScenarioOutcome(
        error <= tolerance, error, tolerance, target, m, recovered, errors, defense, note
    )


def _protocol(graph: GraphKind) -> str:
    return "secagg" if graph is GraphKind.COMPLETE else "secagg+"


def partner_keys_scenario(
    updates: Mapping[int, npt.NDArray[np.float64]],
    victim: int,
    *,
    weakened: bool,
    graph: GraphKind = GraphKind.COMPLETE,
    seed: int = 0,
) -> ScenarioOutcome:
    """:func:`partner_keys_attack` under the default threat model (malicious server).

    Weakened: :data:`PREVIOUS_HARDENING` (on a sparse graph also without the survivor
    count, so that the lies can be spread over the overlapping holders).
    """
    encoder, inputs = _encoded(updates, seed)
    complete = graph is GraphKind.COMPLETE
    if weakened:
        hardening = (
            PREVIOUS_HARDENING
            if complete
            else replace(PREVIOUS_HARDENING, check_survivor_count=False)
        )
        defense = "survivor lists, counts and key signatures only (previous release)"
    else:
        hardening, defense = Hardening(), "every check on (consistency quorum, attestations)"
    runner = setup_round(inputs, bits=_BITS, protocol=_protocol(graph), hardening=hardening)
    t = runner.server.config.threshold
    try:
        got, harvest = partner_keys_attack(runner, victim, respect_counts=complete)
        refusals = list(harvest.refusals.values())
    except InvalidParameterError as exc:
        got, refusals = None, [type(exc).__name__]
    note = f"the victim is forwarded {t} peers' shares; each of them is told 'dropped' by {t}"
    return _measure(encoder, updates, [victim], got, refusals, defense, note)


def padded_survivors_scenario(
    updates: Mapping[int, npt.NDArray[np.float64]],
    *,
    weakened: bool,
    graph: GraphKind = GraphKind.COMPLETE,
    seed: int = 0,
) -> ScenarioOutcome:
    """:func:`padded_survivors_attack`: a third of the cohort vanishes before sharing keys.

    The minimum aggregate size is set just above the real survivors and the survivor list
    is padded to reach it with ids that sent nothing. Weakened: the previous release's
    checks without the survivor-list check, with the consistency stage.
    """
    n = len(updates)
    drop = n // 3
    minimum = n - drop + 2
    dropout = (n - minimum) / n
    threat = ThreatModel(min_aggregate_size=minimum, dropout_fraction=dropout)
    encoder, inputs = _encoded(updates, seed)
    if weakened:
        hardening = replace(PREVIOUS_HARDENING, check_survivor_lists=False, consistency_check=True)
        defense = "no survivor-list check, signatures counted but not verified (baseline)"
    else:
        hardening, defense = Hardening(), "every check on (verified survivor signatures)"
    runner = setup_round(
        inputs,
        bits=_BITS,
        protocol=_protocol(graph),
        threat_model=threat,
        hardening=hardening,
    )

    def plan(server: LyingServer) -> tuple[list[int], list[int]]:
        if server.config.parameters.complete:
            dropped = list(server.ids[-drop:])
        else:  # every third client of the ring: no survivor loses more than k - t neighbours
            dropped = list(ring_order(server)[::3][:drop])
        return dropped, dropped[:2]

    total, real, harvest = padded_survivors_attack(runner, plan)
    note = (
        f"{drop} clients vanish, 2 of them listed as survivors: {len(real)} real inputs "
        f"against a minimum aggregate of {minimum}"
    )
    return _measure(encoder, updates, list(real), total, harvest.refusals.values(), defense, note)


def component_graph_scenario(
    updates: Mapping[int, npt.NDArray[np.float64]], *, weakened: bool, seed: int = 0
) -> ScenarioOutcome:
    """:func:`component_graph_attack` on SecAgg+: two halves, each below the minimum.

    Weakened: the clients take the graph from the server (``derive_graph`` off).
    """
    n = len(updates)
    ids = sorted(updates)
    halves = [ids[: n // 2], ids[n // 2 :]]
    threat = ThreatModel(min_aggregate_size=n // 2 + 2)
    encoder, inputs = _encoded(updates, seed)
    if weakened:
        hardening = replace(Hardening(), derive_graph=False)
        defense = "the clients take the graph from the server (baseline)"
    else:
        hardening, defense = Hardening(), "the clients derive the graph from the graph seed"
    runner = setup_round(
        inputs, bits=_BITS, protocol="secagg+", threat_model=threat, hardening=hardening
    )
    degree = runner.server.config.parameters.degree
    sums, harvest = component_graph_attack(runner, halves)
    note = (
        f"two components of {len(halves[0])} and {len(halves[1])} clients (degree {degree}), "
        f"minimum aggregate {n // 2 + 2}"
    )
    return _measure(encoder, updates, halves[0], sums[0], harvest.refusals.values(), defense, note)


def colluders_scenario(
    updates: Mapping[int, npt.NDArray[np.float64]],
    victim: int,
    *,
    weakened: bool,
    beyond: bool = False,
    seed: int = 0,
) -> ScenarioOutcome:
    """:func:`colluders_around_victim_attack` on SecAgg+.

    Within the threat model (``beyond`` false): a threat model with a large colluding
    fraction (0.4), its ``C`` colluders, at least ``t``; the server tries to make them the
    victim's only neighbours. Weakened: the honest clients take the graph from the server.

    Beyond it (``beyond`` true): the default threat model, and ``t`` of the victim's
    neighbours in the derived graph collude (more than its ``C``): they hold ``t`` shares of
    both of the victim's secrets, which no check can stop; the server keeps the graph.
    """
    encoder, inputs = _encoded(updates, seed)
    n = len(updates)
    if beyond:
        threat = ThreatModel()
        params = select_parameters(n, threat, graph=GraphKind.HARARY)
        # the fewest colluders that leave the victim at most k - t honest neighbours,
        # whatever graph the clients derive
        count = n - 1 - (params.degree - params.threshold)
        colluders = [c for c in sorted(updates) if c != victim][:count]
        hardening = {c: COLLUDER_HARDENING if c in colluders else Hardening() for c in inputs}
        runner = setup_round(
            inputs, bits=_BITS, protocol="secagg+", threat_model=threat, hardening=hardening
        )
        got, harvest = colluders_around_victim_attack(runner, victim, colluders, keep_graph=True)
        defense = (
            f"every check on, {count} colluders where the threat model counts "
            f"{params.max_colluders} (beyond it)"
        )
    else:
        threat = ThreatModel(colluding_fraction=0.4, dropout_fraction=0.02)
        params = select_parameters(n, threat, graph=GraphKind.HARARY)
        colluders = [c for c in sorted(updates) if c != victim][: params.max_colluders]
        honest = replace(Hardening(), derive_graph=False) if weakened else Hardening()
        hardening = {c: COLLUDER_HARDENING if c in colluders else honest for c in inputs}
        runner = setup_round(
            inputs, bits=_BITS, protocol="secagg+", threat_model=threat, hardening=hardening
        )
        got, harvest = colluders_around_victim_attack(runner, victim, colluders)
        defense = (
            "the honest clients take the graph from the server (baseline)"
            if weakened
            else "the honest clients derive the graph from the graph seed"
        )
    note = f"{len(colluders)} colluders, t={params.threshold} of k={params.degree}"
    return _measure(encoder, updates, [victim], got, harvest.refusals.values(), defense, note)
