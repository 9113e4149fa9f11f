"""The SecAgg / SecAgg+ server as a pure state machine.

The transport calls :meth:`SecAggServer.start` once (the returned messages go to the
clients), then :meth:`SecAggServer.handle` for each client reply as it arrives, and
:meth:`SecAggServer.advance` when the current stage is over (every reply arrived, or the
deadline passed: the clock belongs to the transport). ``advance`` returns the next
stage's requests; after the unmasking stage it computes :attr:`SecAggServer.result`.

Memory: masked inputs are added into one running sum as they arrive and are not kept, so
the server holds O(d) numbers whatever ``n`` (plus O(n k) small ciphertexts). The sum is
kept in the ring's machine word (``uint32`` for ``bits <= 32``, like the wire, else
``uint64``; wrapping modulo ``2^32`` or ``2^64`` is exact modulo ``2^bits``) and unmasked in
it; only the result is widened to ``uint64``.

Sets (Bonawitz et al. 2017 notation): ``U1`` advertised keys, ``U2`` shared keys, ``U3``
sent masked inputs (the *survivors*, whose inputs are in the sum), ``U4`` signed the
survivor set (malicious variant; otherwise ``U4 = U3``), ``U5`` answered the unmask
request. Unmasking computes::

    sum_{u in U3} x_u = sum_{u in U3} y_u - sum_{u in U3} PRG(b_u)
                        - sum_{v in U2 \\ U3} sum_{u in U3, v in M(u)} sign(u, v) PRG(s_uv)

where ``M(u)`` is the masking set of ``u`` (the peers whose shares the server forwarded to
``u``), ``b_u`` is rebuilt from ``t`` self-mask shares and ``s_v``'s private key from ``t``
masking-key shares (:func:`secagg.primitives.shamir.reconstruct_many`, one batched call), and every
rebuilt secret is checked against the client's commitment (``SHA-256(b_u)``) or
advertised public key before use.

Against a server class that may lie the round has two more stages (``graph_seed``,
``consistency_check``, see :mod:`protocols.masking.client`); the honest server then also verifies
everything it relays -- signed keys (with the PKI), reveals against commitments, masking-set
attestations, survivor-set signatures -- and refuses a message that fails, so that its
sender counts as dropped instead of making honest clients abort. If a committed client does
not reveal its graph-seed contribution, :meth:`SecAggServer.advance` raises
:class:`~secagg.errors.RoundRestartError`: the seed needs every committed contribution, and
the transport starts a new round without that client.

Before each stage the server checks that the round can still succeed (every remaining
client keeps at least ``t`` live peers, at least ``min_aggregate_size`` survive) and
raises :class:`~secagg.errors.ThresholdNotMetError` otherwise: the round aborts before any
client is asked to reveal anything. Client messages are validated like the clients
validate the server's: a bad one raises a typed error and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from protocols.masking.config import RoundConfig
from protocols.masking.graph import CommunicationGraph, complete_graph, harary_graph, seeded_ring
from protocols.masking.masks import apply_masks, reduce_words
from protocols.masking.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyBroadcast,
    MaskedInput,
    Message,
    RoundStart,
    SeedRequest,
    SeedReveal,
    ShareForward,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from protocols.masking.records import (
    Attestation,
    EncryptedShare,
    PeerKeys,
    SeedEntry,
    SurvivorSignature,
)
from protocols.masking.transcripts import (
    MODEL_HASH_BYTES,
    advertise_transcript,
    cohort_digest,
    consistency_transcript,
    execution_context,
    masking_set_transcript,
    seed_commitment,
)
from protocols.masking.unmasking import (
    mask_key_check,
    parse_revealed_shares,
    reconstruct_secrets,
    self_mask_check,
)
from protocols.stages import Stage
from secagg.errors import (
    AlreadyFinalizedError,
    AuthenticationError,
    InvalidParameterError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
    RoundRestartError,
    StageError,
    ThresholdNotMetError,
)
from secagg.primitives.keys import KeyPair, Purpose, derive_pair_key
from secagg.primitives.shamir import Share
from secagg.primitives.signing import verify_signature
from secagg.validation import require_bytes

__all__ = ["SecAggServer", "AggregateResult"]


@dataclass(frozen=True, eq=False)
class AggregateResult:
    """What the server learns at the end of a round.

    Attributes:
        ring_sum: ``sum_{u in survivors} x_u mod 2^bits`` as ``uint64``.
        survivors: sorted ids whose inputs are in the sum (``U3``).
        dropped: sorted ids of the cohort whose inputs are not.
    """

    ring_sum: npt.NDArray[np.uint64] = field(repr=False)
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]


class SecAggServer:
    """The server of one SecAgg / SecAgg+ round (see the module docstring).

    Args:
        config: the round's public parameters.
        clients: the cohort's ids (exactly ``config.parameters.num_clients`` of them).
        graph: the communication graph against a curious server; default a fresh Harary
            graph of degree ``config.parameters.degree`` on a CSPRNG-shuffled ring (complete
            graph when ``k = n - 1``). Against a server that may lie the graph follows from
            the clients' graph seed and cannot be given.
        pki: client id -> identity public key (signed rounds): the server verifies every
            signature it relays and treats a client whose message fails as dropped.
        model_hash: the hash of the global model the server sent (bound into signed keys).
        verify_relayed: UNSAFE when off: relay signatures without verifying them (only to
            show what one malicious client can then do to a round).

    Raises:
        InvalidParameterError: inconsistent cohort, graph or configuration.
    """

    def __init__(
        self,
        config: RoundConfig,
        clients: Iterable[int],
        *,
        graph: CommunicationGraph | None = None,
        pki: Mapping[int, bytes] | None = None,
        model_hash: bytes = bytes(MODEL_HASH_BYTES),
        verify_relayed: bool = True,
    ) -> None:
        if not isinstance(config, RoundConfig):
            raise InvalidParameterError("config must be a RoundConfig")
        ids = tuple(sorted(clients))
        params = config.parameters
        if len(ids) != params.num_clients:
            raise InvalidParameterError(
                f"the parameters were derived for {params.num_clients} clients, got {len(ids)}"
            )
        if config.consistent and graph is not None:
            raise InvalidParameterError(
                "against a server that may lie, the graph follows from the clients' graph seed"
            )
        if graph is None and not config.consistent:
            graph = complete_graph(ids) if params.complete else harary_graph(ids, params.degree)
        if graph is not None and (
            not isinstance(graph, CommunicationGraph)
            or graph.nodes != ids
            or graph.degree != params.degree
        ):
            raise InvalidParameterError(
                "graph must cover exactly the cohort with the configured degree"
            )
        require_bytes("model_hash", model_hash, size=MODEL_HASH_BYTES)
        if not isinstance(verify_relayed, bool):
            raise InvalidParameterError("verify_relayed must be a bool")
        if config.signed and verify_relayed and pki is None:
            raise InvalidParameterError(
                "a signed round's server needs the PKI to verify what it relays"
            )
        if pki is not None and any(cid not in pki for cid in ids):
            raise InvalidParameterError("the PKI has no key for some client of the cohort")
        self.config = config
        self.graph = graph
        self._pki: Mapping[int, bytes] = pki if pki is not None else {}
        self._model_hash = model_hash
        self._verify = verify_relayed
        self._ids = ids
        self._cohort = frozenset(ids)
        self._cohort_digest = cohort_digest(ids) if config.consistent else None
        self._survivor_transcript = b""
        self._nbrs: dict[int, frozenset[int]] = (
            {u: frozenset(graph[u]) for u in ids} if graph is not None else {}
        )
        self._stage: Stage | None = None
        self._started = False
        self._expected: frozenset[int] = frozenset()
        self._keys: dict[int, AdvertiseKeys] = {}
        self._seen_keys: set[bytes] = set()
        self._entries: tuple[SeedEntry, ...] = ()
        self._reveals: dict[int, bytes] = {}
        self._context: bytes | None = None
        self._shared: dict[int, ShareKeys] = {}
        self._forwarded: dict[int, frozenset[int]] = {}
        self._attestations: dict[int, bytes] = {}
        self._accusations: dict[int, frozenset[int]] = {}
        self._probe = KeyPair.generate()
        self._signatures: dict[int, bytes] = {}
        self._self_mask_shares: dict[int, list[Share]] = {}
        self._mask_key_shares: dict[int, list[Share]] = {}
        self._responders: set[int] = set()
        self._requested: dict[int, tuple[frozenset[int], frozenset[int]]] = {}
        self._u1: frozenset[int] = frozenset()
        self._u2: frozenset[int] = frozenset()
        self._u3: frozenset[int] = frozenset()
        self._u4: frozenset[int] = frozenset()
        self._sum: npt.NDArray[np.uint32] | npt.NDArray[np.uint64] | None = None
        self._result: AggregateResult | None = None

    # ------------------------------------------------------------------ public API

    @property
    def stage(self) -> Stage | None:
        """The stage whose replies are being collected (``None`` before start and after the end)."""
        return self._stage

    @property
    def result(self) -> AggregateResult:
        """The unmasked sum, once the unmasking stage was advanced.

        Raises:
            StageError: the round is not finished.
        """
        if self._result is None:
            raise StageError("the round is not finished")
        return self._result

    @property
    def responded(self) -> frozenset[int]:
        """Clients whose reply for the current stage was accepted."""
        return frozenset(self._responders)

    @property
    def context(self) -> bytes | None:
        """The execution context (graph seed) once every committed client revealed."""
        return self._context

    def neighbours(self, client_id: int) -> frozenset[int]:
        """``client_id``'s neighbours (known once the graph is fixed)."""
        if client_id not in self._nbrs:
            raise StageError("the graph is not fixed yet")
        return self._nbrs[client_id]

    def start(self) -> list[Message]:
        """Open the round: one :class:`RoundStart` per client.

        Raises:
            AlreadyFinalizedError: the round was already started.
        """
        if self._started:
            raise AlreadyFinalizedError("the round was already started")
        self._started = True
        self._stage = Stage.ADVERTISE_KEYS
        self._expected = self._cohort
        rid = self.config.round_id
        if self.config.consistent:
            return [
                RoundStart(round_id=rid, recipient=u, neighbours=(), cohort=self._ids)
                for u in self._ids
            ]
        return [
            RoundStart(round_id=rid, recipient=u, neighbours=tuple(sorted(self._nbrs[u])))
            for u in self._ids
        ]

    def handle(self, message: Message) -> list[Message]:
        """Accept one client reply for the current stage (always returns ``[]``).

        Raises:
            MessageError, ReplayError, StageError, AlreadyFinalizedError: the message is
                refused and the server's state is unchanged. A message whose signature,
                commitment or attestation fails verification is refused the same way: its
                sender then counts as dropped from this stage on.
        """
        self._check_envelope(message)
        if isinstance(message, AdvertiseKeys):
            self._on_advertise(message)
        elif isinstance(message, SeedReveal):
            self._on_reveal(message)
        elif isinstance(message, ShareKeys):
            self._on_share_keys(message)
        elif isinstance(message, MaskedInput):
            self._on_masked_input(message)
        elif isinstance(message, ConsistencySignature):
            self._on_consistency_signature(message)
        elif isinstance(message, UnmaskResponse):
            self._on_unmask_response(message)
        else:  # pragma: no cover - every client message type is handled above
            raise MessageError(f"unexpected message {type(message).__name__}")
        self._responders.add(message.sender)
        return []

    def advance(self) -> list[Message]:
        """Close the current stage and return the next stage's requests.

        Raises:
            ThresholdNotMetError: too few clients remain for the round to succeed; the
                round is aborted (nothing was revealed).
            RoundRestartError: committed clients withheld their graph-seed contribution;
                start a new round without them (nothing was revealed).
            ProtocolAbortError: a reconstructed secret contradicts its commitment.
            StageError: the round has not started or is over.
        """
        if self._stage is None:
            raise StageError("the round is not running")
        stage = self._stage
        responders = frozenset(self._responders)
        if stage is Stage.ADVERTISE_KEYS:
            out = self._after_advertise(responders)
        elif stage is Stage.GRAPH_SEED:
            out = self._after_seed(responders)
        elif stage is Stage.SHARE_KEYS:
            out = self._after_share_keys(responders)
        elif stage is Stage.MASKED_INPUT:
            out = self._after_masked_input(responders)
        elif stage is Stage.CONSISTENCY_CHECK:
            out = self._after_consistency(responders)
        else:
            self._finish(responders)
            out = []
        self._responders = set()
        return out

    # ------------------------------------------------------------------ helpers

    def _abort_if(self, condition: bool, reason: str) -> None:
        if condition:
            self._stage = None
            self._sum = None
            raise ThresholdNotMetError(f"round aborted: {reason}")

    def _check_envelope(self, message: object) -> None:
        if not isinstance(message, Message) or type(message) is Message:
            raise MessageError(f"not a protocol message: {type(message).__name__}")
        if message.FROM_SERVER:
            raise MessageError(f"{type(message).__name__} is not a client message")
        if self._result is not None or (self._started and self._stage is None):
            raise AlreadyFinalizedError("the round is over")
        if self._stage is None:
            raise StageError("the round has not started")
        if message.round_id != self.config.round_id:
            raise ReplayError("message belongs to another round")
        if message.sender not in self._cohort:
            raise MessageError("sender is not in the cohort")
        if message.STAGE not in self.config.stages:
            raise StageError(f"stage {message.STAGE.value} is not part of this round")
        if message.STAGE.position < self._stage.position:
            raise ReplayError(f"{type(message).__name__} replayed or out of order (stage passed)")
        if message.STAGE is not self._stage:
            raise StageError(f"{type(message).__name__} arrived before stage {message.STAGE.value}")
        if message.sender in self._responders:
            raise ReplayError("duplicate reply for this stage")
        if message.sender not in self._expected:
            raise MessageError("sender was not asked to take part in this stage")

    def _verify_key(self, client_id: int) -> bytes:
        if self.config.signed:
            return self._pki[client_id]
        return self._keys[client_id].round_public

    def _check_signature(
        self, client_id: int, signature: bytes, transcript: bytes, what: str
    ) -> None:
        if not self._verify:
            return
        try:
            verify_signature(self._verify_key(client_id), signature, transcript)
        except AuthenticationError:
            raise MessageError(
                f"client {client_id}'s {what} does not verify; the client counts as dropped"
            ) from None

    def _check_live_peers(self, alive: frozenset[int], members: Iterable[int], what: str) -> None:
        t = self.config.threshold
        for u in members:
            live = len(self._nbrs[u] & alive)
            self._abort_if(live < t, f"client {u} has {live} {what}, threshold is {t}")

    def _check_size(self, alive: frozenset[int], what: str) -> None:
        params = self.config.parameters
        need = max(params.min_aggregate_size, params.threshold + 1)
        if self.config.consistent:
            need = max(need, params.consistency_quorum)
        self._abort_if(len(alive) < need, f"{len(alive)} clients {what}, at least {need} needed")

    # ------------------------------------------------------------------ stage 1

    def _on_advertise(self, m: AdvertiseKeys) -> None:
        if m.mask_public == m.share_public:
            raise MessageError("the masking and encryption keys must differ")
        if self.config.signed != bool(m.signature):
            raise MessageError(
                "signature required" if self.config.signed else "unexpected signature"
            )
        if m.mask_public in self._seen_keys or m.share_public in self._seen_keys:
            raise MessageError("public key already advertised by another client")
        for key in (m.mask_public, m.share_public):
            try:
                self._probe.exchange(key)
            except AuthenticationError:
                raise MessageError("an advertised key is not a valid X25519 public key") from None
        if self.config.consistent:
            if len(m.seed_commitment) != 32:
                raise MessageError("a graph-seed commitment is required")
            if not self.config.signed and len(m.round_public) != 32:
                raise MessageError("a round signing key is required")
        if self.config.signed:
            transcript = advertise_transcript(
                client_id=m.sender,
                mask_public=m.mask_public,
                share_public=m.share_public,
                round_id=self.config.round_id,
                model_hash=self._model_hash,
                cohort=self._cohort_digest,
                commitment=m.seed_commitment if self.config.consistent else None,
            )
            self._check_signature(m.sender, m.signature, transcript, "key signature")
        self._keys[m.sender] = m
        self._seen_keys.update((m.mask_public, m.share_public))

    def _after_advertise(self, u1: frozenset[int]) -> list[Message]:
        self._check_size(u1, "advertised keys")
        rid = self.config.round_id
        if self.config.consistent:
            self._u1 = u1
            self._expected = u1
            self._stage = Stage.GRAPH_SEED
            self._entries = tuple(SeedEntry(u, self._keys[u].seed_commitment) for u in sorted(u1))
            return [
                SeedRequest(round_id=rid, recipient=u, entries=self._entries) for u in sorted(u1)
            ]
        self._check_live_peers(u1, u1, "neighbours with keys")
        self._u1 = u1
        return self._key_broadcast(u1)

    def _key_broadcast(self, u1: frozenset[int]) -> list[Message]:
        self._expected = u1
        self._stage = Stage.SHARE_KEYS
        rid = self.config.round_id
        reveals = tuple(self._reveals[e.client_id] for e in self._entries)
        out: list[Message] = []
        for u in sorted(u1):
            peers = tuple(
                PeerKeys(
                    v,
                    self._keys[v].mask_public,
                    self._keys[v].share_public,
                    self._keys[v].signature,
                    self._keys[v].round_public,
                    self._keys[v].seed_commitment,
                )
                for v in sorted(self._nbrs[u] & u1)
            )
            out.append(KeyBroadcast(round_id=rid, recipient=u, peers=peers, reveals=reveals))
        return out

    # ------------------------------------------------------------------ graph seed

    def _on_reveal(self, m: SeedReveal) -> None:
        expected = seed_commitment(
            round_id=self.config.round_id, client_id=m.sender, reveal=m.reveal
        )
        if self._verify and expected != self._keys[m.sender].seed_commitment:
            raise MessageError(
                f"client {m.sender}'s reveal does not match its commitment; it counts as dropped"
            )
        self._reveals[m.sender] = m.reveal

    def _after_seed(self, revealed: frozenset[int]) -> list[Message]:
        missing = self._u1 - revealed
        if missing:
            self._stage = None
            raise RoundRestartError(
                f"{len(missing)} committed clients did not reveal their graph-seed contribution; "
                "start a new round without them",
                excluded=missing,
            )
        reveals = [self._reveals[e.client_id] for e in self._entries]
        context = execution_context(
            round_id=self.config.round_id, cohort=self._ids, entries=self._entries, reveals=reveals
        )
        params = self.config.parameters
        if params.complete:
            self.graph = complete_graph(self._ids)
        else:
            self.graph = seeded_ring(self._ids, params.degree, context).graph()
        self._nbrs = {u: frozenset(self.graph[u]) for u in self._ids}
        self._context = context
        u1 = self._u1
        self._check_live_peers(u1, u1, "neighbours with keys")
        return self._key_broadcast(u1)

    # ------------------------------------------------------------------ stage 2

    def _on_share_keys(self, m: ShareKeys) -> None:
        targets = [s.peer for s in m.shares]
        if len(set(targets)) != len(targets) or set(targets) != self._nbrs[m.sender] & self._u1:
            raise MessageError(
                "shares must go to exactly the sender's neighbours that advertised keys"
            )
        self._shared[m.sender] = m

    def _after_share_keys(self, u2: frozenset[int]) -> list[Message]:
        self._check_size(u2, "shared keys")
        self._check_live_peers(u2, u2, "neighbours that shared keys")
        self._u2 = u2
        self._expected = u2
        self._stage = Stage.MASKED_INPUT
        inbox: dict[int, list[tuple[int, bytes]]] = {u: [] for u in u2}
        for v in sorted(u2):
            for enc in self._shared[v].shares:
                if enc.peer in inbox:
                    inbox[enc.peer].append((v, enc.ciphertext))
        rid = self.config.round_id
        out: list[Message] = []
        for u in sorted(u2):
            items = tuple(EncryptedShare(v, ct) for v, ct in inbox[u])
            self._forwarded[u] = frozenset(v for v, _ in inbox[u])
            out.append(ShareForward(round_id=rid, recipient=u, shares=items))
        d = self.config.vector_length
        self._sum = (
            np.zeros(d, dtype=np.uint32) if self.config.bits <= 32 else np.zeros(d, dtype=np.uint64)
        )
        return out

    # ------------------------------------------------------------------ stage 3

    def _on_masked_input(self, m: MaskedInput) -> None:
        if m.bits != self.config.bits:
            raise MessageError(
                f"masked input in Z_(2^{m.bits}), the round uses Z_(2^{self.config.bits})"
            )
        if m.words.shape[0] != self.config.vector_length:
            raise MessageError(
                f"masked input has {m.words.shape[0]} elements, "
                f"the round uses {self.config.vector_length}"
            )
        if self._sum is None:  # pragma: no cover - allocated when the stage opens
            raise StageError("no accumulator")
        if self.config.consistent:
            if len(m.attestation) != 64:
                raise MessageError("a masking-set attestation is required")
            transcript = masking_set_transcript(
                client_id=m.sender,
                masking_set=sorted(self._forwarded[m.sender]),
                round_id=self.config.round_id,
                context=self._context,
            )
            self._check_signature(m.sender, m.attestation, transcript, "masking-set attestation")
            if not set(m.rejected) <= self._forwarded[m.sender]:
                raise MessageError("a client can only reject shares the server forwarded to it")
            self._attestations[m.sender] = m.attestation
            if m.rejected:
                self._accusations[m.sender] = frozenset(m.rejected)
        np.add(self._sum, m.words, out=self._sum)  # same word: wraps, no conversion

    def _holders(self, v: int) -> frozenset[int]:
        """Clients that received shares of ``v``'s secrets."""
        return frozenset(u for u in self._nbrs[v] & self._u2 if v in self._forwarded.get(u, ()))

    def _secrets_needed(self, survivors: frozenset[int]) -> tuple[list[int], list[int]]:
        """(survivors whose self mask must go, dropped clients whose pairwise masks must go)."""
        dropped = [
            v
            for v in sorted(self._u2 - survivors)
            if any(v in self._forwarded[u] for u in self._nbrs[v] & survivors)
        ]
        return sorted(survivors), dropped

    def _check_recoverable(self, survivors: frozenset[int], helpers: frozenset[int]) -> None:
        t = self.config.threshold
        live, dropped = self._secrets_needed(survivors)
        for v in live + dropped:
            n = len(self._holders(v) & helpers)
            self._abort_if(
                n < t, f"only {n} clients can reveal shares of client {v}, threshold is {t}"
            )

    def _after_masked_input(self, u3: frozenset[int]) -> list[Message]:
        accused = {v for u, peers in self._accusations.items() if u in u3 for v in peers}
        if accused:
            # the server cannot tell who lies; both ends of every accusation leave, so a
            # colluding client takes at most its accusers (or the accused) out with it, once
            excluded = frozenset(accused | {u for u in self._accusations if u in u3})
            self._stage = None
            self._sum = None
            raise RoundRestartError(
                f"{len(accused)} clients sent shares that did not open; start a new round without "
                "them and their accusers",
                excluded=excluded,
            )
        self._check_size(u3, "sent masked inputs")
        t = self.config.threshold
        for u in u3:
            alive = len(self._forwarded[u] & u3)
            self._abort_if(alive < t, f"client {u} has {alive} surviving peers, threshold is {t}")
        params = self.config.parameters
        if self.config.consistent and not params.complete:
            gone = params.num_clients - len(u3)
            self._abort_if(
                gone > params.max_dropouts,
                f"{gone} dropouts exceed the {params.max_dropouts} tolerated",
            )
        self._check_recoverable(u3, u3)
        self._u3 = u3
        self._expected = u3
        rid = self.config.round_id
        survivors = tuple(sorted(u3))
        if Stage.CONSISTENCY_CHECK in self.config.stages:
            self._survivor_transcript = consistency_transcript(
                survivors=survivors, round_id=self.config.round_id, context=self._context
            )
            self._stage = Stage.CONSISTENCY_CHECK
            return [
                ConsistencyRequest(round_id=rid, recipient=u, survivors=survivors)
                for u in survivors
            ]
        self._u4 = u3
        self._stage = Stage.UNMASKING
        return self._unmask_requests()

    # ------------------------------------------------------------------ stage 4

    def _on_consistency_signature(self, m: ConsistencySignature) -> None:
        self._check_signature(
            m.sender, m.signature, self._survivor_transcript, "survivor-set signature"
        )
        self._signatures[m.sender] = m.signature

    def _after_consistency(self, u4: frozenset[int]) -> list[Message]:
        quorum = self.config.parameters.consistency_quorum
        self._abort_if(
            len(u4) < quorum, f"{len(u4)} clients signed the survivor set, the quorum is {quorum}"
        )
        self._check_recoverable(self._u3, u4)
        self._u4 = u4
        self._expected = u4
        self._stage = Stage.UNMASKING
        return self._unmask_requests()

    # ------------------------------------------------------------------ stage 5

    def _unmask_requests(self) -> list[Message]:
        rid = self.config.round_id
        survivors = tuple(sorted(self._u3))
        gone = self._u2 - self._u3
        out: list[Message] = []
        self._requested = {}
        sigs: tuple[SurvivorSignature, ...] = ()
        sharers: tuple[int, ...] = ()
        if self.config.consistent:
            # the quorum is all a client needs (and all it checks): O(Q) per request, not O(n)
            quorum = self.config.parameters.consistency_quorum
            sigs = tuple(
                SurvivorSignature(
                    v,
                    self._signatures[v],
                    b"" if self.config.signed else self._keys[v].round_public,
                )
                for v in sorted(self._u4)[:quorum]
            )
            sharers = tuple(sorted(self._u2))
        for u in sorted(self._u4):
            held = self._forwarded[u]
            dropped = tuple(sorted(held & gone))
            attestations: tuple[Attestation, ...] = ()
            if self.config.consistent:
                attestations = tuple(
                    Attestation(v, self._attestations[v]) for v in sorted(held & self._u3)
                )
            self._requested[u] = (held & self._u3, frozenset(dropped))
            out.append(
                UnmaskRequest(
                    round_id=rid,
                    recipient=u,
                    survivors=survivors,
                    dropped=dropped,
                    signatures=sigs,
                    key_sharers=sharers,
                    attestations=attestations,
                )
            )
        return out

    def _on_unmask_response(self, m: UnmaskResponse) -> None:
        want_self, want_key = self._requested[m.sender]
        t = self.config.threshold
        self_shares = parse_revealed_shares(m.self_mask_shares, want_self, m.sender, t)
        key_shares = parse_revealed_shares(m.mask_key_shares, want_key, m.sender, t)
        for owner, share in self_shares:
            self._self_mask_shares.setdefault(owner, []).append(share)
        for owner, share in key_shares:
            self._mask_key_shares.setdefault(owner, []).append(share)

    def _finish(self, u5: frozenset[int]) -> None:
        t = self.config.threshold
        live, dropped = self._secrets_needed(self._u3)
        groups: list[list[Share]] = []
        for v in live:
            shares = self._self_mask_shares.get(v, [])
            self._abort_if(
                len(shares) < t, f"{len(shares)} self-mask shares of client {v}, threshold is {t}"
            )
            groups.append(shares)
        for v in dropped:
            shares = self._mask_key_shares.get(v, [])
            self._abort_if(
                len(shares) < t, f"{len(shares)} masking-key shares of client {v}, threshold is {t}"
            )
            groups.append(shares)
        owners = live + dropped
        checks = [self_mask_check(self._shared[v].commitment) for v in live] + [
            mask_key_check(self._keys[v].mask_public) for v in dropped
        ]
        try:
            secrets_ = reconstruct_secrets(owners, groups, checks, threshold=t)
        except ProtocolAbortError:
            self._stage = None
            raise
        rid = self.config.round_id
        minus: list[bytes] = []
        plus: list[bytes] = []
        minus.extend(secrets_[: len(live)])
        for v, private in zip(dropped, secrets_[len(live) :], strict=True):
            keys = KeyPair.from_private_bytes(private)
            for u in sorted(self._nbrs[v] & self._u3):
                if v not in self._forwarded[u]:
                    continue
                seed = derive_pair_key(
                    keys,
                    self._keys[u].mask_public,
                    purpose=Purpose.MASK_SEED,
                    round_id=rid,
                    self_id=v,
                    peer_id=u,
                )
                # u added +PRG(s_uv) when u < v and -PRG(s_uv) otherwise
                (minus if u < v else plus).append(seed)
        acc = self._sum
        if acc is None:  # pragma: no cover - allocated at the masked-input stage
            raise StageError("no accumulator")
        bits = self.config.bits
        apply_masks(acc, add=plus, subtract=minus, algorithm=self.config.prg, bits=bits)
        reduce_words(acc, bits)
        self._sum = None
        self._result = AggregateResult(
            ring_sum=acc.astype(np.uint64, copy=False),
            survivors=tuple(sorted(self._u3)),
            dropped=tuple(sorted(self._cohort - self._u3)),
        )
        self._stage = None
