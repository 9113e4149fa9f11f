"""The SecAgg / SecAgg+ client as a pure state machine.

One :class:`SecAggClient` takes part in one round. It has no I/O, clock or thread: the
transport calls :meth:`SecAggClient.handle` with each message from the server and sends
back whatever it returns. Stages and what the client does (Bonawitz et al. 2017 with the
sparse graph of Bell et al. 2020; ``N(u)`` the client's neighbours). Against a curious
server there are four stages and the server names the neighbours; against a server that
may lie (semi-malicious, malicious) there are six, and the client trusts only what it can
verify itself (:mod:`threat_models.model` gives the argument):

1. ``ADVERTISE_KEYS`` (:class:`~protocols.masking.messages.RoundStart`): check the cohort (lying
   server: sorted, contains this client, ``n`` ids, all in the PKI when signed) or the
   neighbour list (curious: ``k`` distinct ids); record the round in the client's
   :class:`~protocols.round_log.RoundLog` (a second execution of a round id is refused);
   draw two X25519 key pairs (masking key ``s_u``, share-encryption key ``c_u``) and, against
   a lying server, 32 random bytes ``r_u`` for the graph seed, advertised as the commitment
   ``SHA-256(..., round, u, r_u)``, and (semi-malicious) a per-round Ed25519 signing key.
   Malicious: sign ``canonical(protocol, version, "advertise-keys", u, s_pk, c_pk, "round",
   round_id, "model", model_hash, "cohort", H(cohort), "commitment", c_u)`` with the
   identity key.
2. ``GRAPH_SEED`` (lying server, :class:`~protocols.masking.messages.SeedRequest`): check that the
   committed list holds this client's own commitment, only cohort members, and at least the
   consistency quorum; reveal ``r_u``.
3. ``SHARE_KEYS`` (:class:`~protocols.masking.messages.KeyBroadcast`): lying server: check every
   reveal against its commitment and compute the *execution context* (hash of round, cohort,
   commitments, reveals), which seeds the ring (:func:`~protocols.masking.graph.seeded_ring`):
   ``N(u)`` follows, and a peer outside it is refused. Accept the peers' keys (only
   neighbours, distinct keys, at least ``t`` peers, their commitments as listed, valid
   signatures); draw the self-mask seed ``b_u`` (32 bytes, ``os.urandom``); Shamir-share
   ``b_u`` and ``s_u``'s private half ``t``-of-``|peers|`` with the peers' ids as
   x-coordinates; encrypt each peer's pair of shares with AES-GCM under ``HKDF(c_u x c_v)``,
   bound to ``(round, u, v)``.
4. ``MASKED_INPUT`` (:class:`~protocols.masking.messages.ShareForward`): decrypt the shares the
   peers sent (at least ``t``); the peers that sent them are the *masking set* ``M(u)``;
   send ``y_u = x_u + PRG(b_u) + sum_{v in M(u)} sign(u, v) PRG(s_uv) mod 2^bits`` with
   ``s_uv = HKDF(s_u x s_v)`` and ``sign = +1`` if ``u < v`` else ``-1``; against a lying
   server, with a signature on ``M(u)`` bound to the execution context (the *attestation*).
5. ``CONSISTENCY_CHECK`` (lying server, :class:`~protocols.masking.messages.ConsistencyRequest`):
   check the survivor set ``S`` (this client in it, only committed clients, every surviving
   neighbour in ``M(u)``, at least ``t`` surviving peers and ``min_aggregate_size`` ids, in
   SecAgg+ at most ``D`` declared dropped) and sign ``canonical(..., "consistency-check",
   "round", round_id, "context", context, S)``.
6. ``UNMASKING`` (:class:`~protocols.masking.messages.UnmaskRequest`): after every check of
   :class:`~protocols.masking.config.Hardening` -- against a lying server, ``S`` is the set this
   client signed and carries valid signatures from the consistency quorum of distinct
   survivors, and every surviving peer's attestation names all of that peer's surviving
   neighbours -- reveal the share of ``b_v`` for each surviving peer and the share of
   ``s_v`` for each dropped peer, never both for one peer, and finish. The client then
   refuses every further message (:class:`~secagg.errors.AlreadyFinalizedError`).

Rejections: a message that is malformed, addressed to another client, from another round
(:class:`~secagg.errors.ReplayError`), for a stage already passed (``ReplayError``) or not
yet reached (:class:`~secagg.errors.StageError`), that fails authentication
(:class:`~secagg.errors.AuthenticationError`), shows a lying server
(:class:`~secagg.errors.ProtocolAbortError`) or too few survivors
(:class:`~secagg.errors.ThresholdNotMetError`) raises, and leaves the client exactly as it
was: every handler computes in locals and commits only after all checks pass. Nothing
secret is revealed before a request passes all checks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from protocols.masking.config import Hardening, RoundConfig
from protocols.masking.graph import Ring, seeded_ring
from protocols.masking.masks import apply_masks, reduce_words, ring_words
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
from protocols.masking.records import EncryptedShare, PeerKeys, RevealedShare, SeedEntry
from protocols.masking.request_checks import (
    check_attestations,
    check_peer_keys,
    check_quorum,
    check_reveals,
    check_round_start,
    check_seed_request,
    check_survivor_set,
    check_unmask_lists,
    strictly_increasing,
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
from protocols.parties import MAX_CLIENT_ID
from protocols.round_log import RoundLog, identity_log
from protocols.stages import Stage
from secagg.errors import (
    AlreadyFinalizedError,
    AuthenticationError,
    InvalidParameterError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
    ShareError,
    StageError,
    ThresholdNotMetError,
)
from secagg.primitives.aead import ShareCipher
from secagg.primitives.keys import KeyPair, Purpose, derive_pair_key
from secagg.primitives.shamir import SHARE_BYTES, Share, split
from secagg.primitives.signing import IdentityKey
from secagg.validation import require_bytes, require_int

__all__ = [
    "SecAggClient",
    "ShareKind",
    "advertise_transcript",
    "consistency_transcript",
    "masking_set_transcript",
    "seed_commitment",
    "execution_context",
    "cohort_digest",
    "MODEL_HASH_BYTES",
    "ROUND_LOG_SCOPE",
]

FULL_HARDENING = Hardening()
ROUND_LOG_SCOPE = "secagg"
"""The :class:`~protocols.round_log.RoundLog` scope under which clients record their rounds."""


class ShareKind(str, Enum):
    """Which of a peer's two secrets a revealed share belongs to."""

    SELF_MASK = "self_mask"
    MASK_KEY = "mask_key"


@dataclass(frozen=True, slots=True)
class _Held:
    """The two shares a peer entrusted to this client."""

    self_mask: Share
    mask_key: Share


class SecAggClient:
    """One client of one SecAgg / SecAgg+ round (see the module docstring).

    Args:
        config: the round's public parameters.
        client_id: this client's id in ``[1, 2^63 - 1]`` (also its Shamir x-coordinate).
        input_vector: the encoded input, ``config.vector_length`` elements of
            Z_(2^bits) (any unsigned/signed integer array with values in ``[0, 2^bits)``);
            may instead be given later with :meth:`set_input`, before the masked-input stage.
        identity: the client's long-term Ed25519 key (required when ``config.signed``).
        pki: client id -> identity public key, from a source the server does not control
            (required when ``config.signed``).
        model_hash: 32-byte hash of the global model this client trained on; bound into
            its signed keys so that peers on another model reject them.
        hardening: the checks against a lying server (default: all of them).
        round_log: where this client records the rounds it takes part in (it refuses a
            second execution of a round id). Default: with an identity key, the process-wide
            log of that identity (:func:`~protocols.round_log.identity_log`); deployments pass
            :meth:`RoundLog.at(path) <protocols.round_log.RoundLog.at>` beside the key file.

    Raises:
        InvalidParameterError: bad arguments.
    """

    def __init__(
        self,
        config: RoundConfig,
        client_id: int,
        *,
        input_vector: npt.ArrayLike | None = None,
        identity: IdentityKey | None = None,
        pki: Mapping[int, bytes] | None = None,
        model_hash: bytes = bytes(MODEL_HASH_BYTES),
        hardening: Hardening = FULL_HARDENING,
        round_log: RoundLog | None = None,
    ) -> None:
        if not isinstance(config, RoundConfig):
            raise InvalidParameterError("config must be a RoundConfig")
        client_id = require_int("client_id", client_id, lo=1, hi=MAX_CLIENT_ID)
        require_bytes("model_hash", model_hash, size=MODEL_HASH_BYTES)
        if not isinstance(hardening, Hardening):
            raise InvalidParameterError("hardening must be a Hardening")
        if round_log is not None and not isinstance(round_log, RoundLog):
            raise InvalidParameterError("round_log must be a RoundLog")
        if config.signed:
            if not isinstance(identity, IdentityKey):
                raise InvalidParameterError(
                    "a signed (malicious-server) round needs the client's identity key"
                )
            if pki is None:
                raise InvalidParameterError(
                    "a signed (malicious-server) round needs the PKI of identity keys"
                )
        self.config = config
        self.client_id = client_id
        self.hardening = hardening
        self._identity = identity
        self._pki: Mapping[int, bytes] = pki if pki is not None else {}
        self._model_hash = model_hash
        if round_log is None and isinstance(identity, IdentityKey):
            round_log = identity_log(identity.public_bytes)
        self._round_log = round_log
        self._input: npt.NDArray[np.uint32] | npt.NDArray[np.uint64] | None = None
        if input_vector is not None:
            self.set_input(input_vector)
        self._stage: Stage | None = Stage.ADVERTISE_KEYS
        self._neighbours: frozenset[int] = frozenset()
        self._cohort: tuple[int, ...] = ()
        self._entries: tuple[SeedEntry, ...] = ()
        self._committed: frozenset[int] = frozenset()
        self._reveal: bytes | None = None
        self._commitment: bytes = b""
        self._context: bytes | None = None
        self._ring: Ring | None = None
        self._signer: IdentityKey | None = identity if config.signed else None
        self._peer_signing: dict[int, bytes] = {}
        self._mask_keys: KeyPair | None = None
        self._share_keys: KeyPair | None = None
        self._peers: dict[int, PeerKeys] = {}
        self._share_ciphers: dict[int, ShareCipher] = {}
        self._self_mask_seed: bytes | None = None
        self._held: dict[int, _Held] = {}
        self._signed_survivors: tuple[int, ...] | None = None
        self._own_signature = b""
        self._revealed: dict[int, frozenset[ShareKind]] = {}

    # ------------------------------------------------------------------ public API

    @property
    def stage(self) -> Stage | None:
        """The stage whose server message the client waits for; ``None`` once finished."""
        return self._stage

    @property
    def finished(self) -> bool:
        """Whether the client has revealed its unmasking shares (it then refuses everything)."""
        return self._stage is None

    @property
    def neighbours(self) -> frozenset[int]:
        """The client's neighbours (announced, or derived from the graph seed)."""
        return self._neighbours

    @property
    def masking_set(self) -> frozenset[int]:
        """Peers whose shares this client holds (and whose pairwise masks it added)."""
        return frozenset(self._held)

    @property
    def context(self) -> bytes | None:
        """The execution context (graph seed) once fixed, else ``None``."""
        return self._context

    @property
    def revealed(self) -> Mapping[int, frozenset[ShareKind]]:
        """Peer id -> which of its secrets this client revealed a share of (hardened: one)."""
        return dict(self._revealed)

    def set_input(self, input_vector: npt.ArrayLike) -> None:
        """Provide (or replace) the encoded input before the masked-input stage.

        The client keeps its own copy (it masks it in place): changing ``input_vector``
        afterwards does not change what it sends. The cheapest input is the ring's word,
        ``uint32`` for rings of at most 32 bits (``FixedPointEncoder.encode(...,
        dtype=np.uint32)``): one range check fused with a plain copy; ``uint64`` words are
        range-checked and narrowed in the same single pass.

        Raises:
            InvalidParameterError: wrong length, non-integer values or values outside
                ``[0, 2^bits)``.
            StageError: the masked input was already sent.
        """
        stage = getattr(self, "_stage", Stage.ADVERTISE_KEYS)
        if stage is None or stage.position > Stage.MASKED_INPUT.position:
            raise StageError("the masked input was already sent")
        arr = np.asarray(input_vector)
        if arr.ndim != 1 or arr.shape[0] != self.config.vector_length:
            raise InvalidParameterError(
                f"input must be a 1-D vector of {self.config.vector_length} ring elements, "
                f"got shape {arr.shape}"
            )
        if arr.dtype.kind not in "ui":
            raise InvalidParameterError(
                f"input must be integers in Z_(2^bits), got dtype {arr.dtype}"
            )
        # one pass: range check and copy into the ring's word (uint32 for bits <= 32)
        self._input = ring_words(arr, self.config.bits)

    def handle(self, message: Message) -> list[Message]:
        """Process one server message; return the reply (a list of zero or one message).

        Raises:
            MessageError, ReplayError, StageError, AuthenticationError,
            ProtocolAbortError, ThresholdNotMetError, AlreadyFinalizedError: see the
                module docstring. The client's state is unchanged after any of them.
        """
        self._check_envelope(message)
        if isinstance(message, RoundStart):
            return [self._on_round_start(message)]
        if isinstance(message, SeedRequest):
            return [self._on_seed_request(message)]
        if isinstance(message, KeyBroadcast):
            return [self._on_key_broadcast(message)]
        if isinstance(message, ShareForward):
            return [self._on_share_forward(message)]
        if isinstance(message, ConsistencyRequest):
            return [self._on_consistency_request(message)]
        if isinstance(message, UnmaskRequest):
            return [self._on_unmask_request(message)]
        raise MessageError(f"unexpected message {type(message).__name__}")  # pragma: no cover

    # ------------------------------------------------------------------ checks

    def _check_envelope(self, message: object) -> None:
        if not isinstance(message, Message) or type(message) is Message:
            raise MessageError(f"not a protocol message: {type(message).__name__}")
        if not message.FROM_SERVER:
            raise MessageError(f"{type(message).__name__} is not a server message")
        if self._stage is None:
            raise AlreadyFinalizedError(
                "the client finished this round and accepts no more messages"
            )
        if message.round_id != self.config.round_id:
            raise ReplayError("message belongs to another round")
        if message.recipient != self.client_id:
            raise MessageError("message addressed to another client")
        stages = self.config.stages
        if message.STAGE not in stages:
            raise StageError(f"stage {message.STAGE.value} is not part of this round")
        if message.STAGE.position < self._stage.position:
            raise ReplayError(f"{type(message).__name__} replayed or out of order (stage passed)")
        if message.STAGE is not self._stage:
            raise StageError(f"{type(message).__name__} arrived before stage {message.STAGE.value}")

    def _next_stage(self, after: Stage) -> Stage | None:
        stages = self.config.stages
        i = stages.index(after)
        return stages[i + 1] if i + 1 < len(stages) else None

    def _signing_round(self) -> int | None:
        return self.config.round_id if self.hardening.round_bound_signatures else None

    def _signing_model(self) -> bytes | None:
        return self._model_hash if self.hardening.model_bound_signatures else None

    def _signing_context(self) -> bytes | None:
        return self._context if self.hardening.fresh_signatures else None

    def _neighbours_of(self, v: int) -> frozenset[int] | None:
        """``N(v)`` when this client can compute it (derived graph or complete graph)."""
        if self._ring is not None:
            return self._ring.neighbours(v)
        if self.config.parameters.complete and self._cohort:
            return frozenset(self._cohort) - {v}
        return None

    def _verify_key(self, v: int, offered: bytes = b"") -> bytes:
        """The key that verifies ``v``'s post-advertisement signatures."""
        if self.config.signed:
            key = self._pki.get(v)
            if key is None:
                raise AuthenticationError()
            return key
        known = self._peer_signing.get(v)
        if known is not None:
            if offered and offered != known:
                raise ProtocolAbortError(f"the server relayed another round key for client {v}")
            return known
        # semi-malicious class: keys the server relays are authentic by assumption
        if len(offered) != 32:
            raise MessageError(f"no round key for client {v}")
        return offered

    # ------------------------------------------------------------------ stage 1

    def _on_round_start(self, m: RoundStart) -> AdvertiseKeys:
        consistent = self.config.consistent
        cohort, neighbours = check_round_start(
            m, client_id=self.client_id, config=self.config, pki=self._pki
        )
        mask_keys = KeyPair.generate()
        share_keys = KeyPair.generate()
        reveal: bytes | None = None
        commitment = b""
        round_key: IdentityKey | None = None
        if consistent:
            reveal = os.urandom(32)
            commitment = seed_commitment(
                round_id=self.config.round_id, client_id=self.client_id, reveal=reveal
            )
            if not self.config.signed:
                round_key = IdentityKey.generate()
        signature = b""
        if self.config.signed:
            if self._identity is None:  # pragma: no cover - checked in __init__
                raise InvalidParameterError("missing identity key")
            signature = self._identity.sign(
                advertise_transcript(
                    client_id=self.client_id,
                    mask_public=mask_keys.public_bytes,
                    share_public=share_keys.public_bytes,
                    round_id=self._signing_round(),
                    model_hash=self._signing_model(),
                    cohort=cohort_digest(cohort) if consistent else None,
                    commitment=commitment if consistent else None,
                )
            )
        reply = AdvertiseKeys(
            round_id=self.config.round_id,
            sender=self.client_id,
            mask_public=mask_keys.public_bytes,
            share_public=share_keys.public_bytes,
            signature=signature,
            round_public=round_key.public_bytes if round_key is not None else b"",
            seed_commitment=commitment,
        )
        if self._round_log is not None and self.hardening.refuse_round_reuse:
            self._round_log.claim(ROUND_LOG_SCOPE, self.config.round_id)
        self._neighbours = neighbours
        self._cohort = cohort
        self._reveal, self._commitment = reveal, commitment
        if round_key is not None:
            self._signer = round_key
        self._mask_keys, self._share_keys = mask_keys, share_keys
        self._stage = self._next_stage(Stage.ADVERTISE_KEYS)
        return reply

    # ------------------------------------------------------------------ graph seed

    def _on_seed_request(self, m: SeedRequest) -> SeedReveal:
        if self._reveal is None:  # pragma: no cover - stage order
            raise StageError("no contribution committed")
        committed = check_seed_request(
            m,
            client_id=self.client_id,
            config=self.config,
            hardening=self.hardening,
            cohort=self._cohort,
            commitment=self._commitment,
        )
        reply = SeedReveal(
            round_id=self.config.round_id, sender=self.client_id, reveal=self._reveal
        )
        self._entries = m.entries
        self._committed = committed
        self._stage = self._next_stage(Stage.GRAPH_SEED)
        return reply

    # ------------------------------------------------------------------ stage 2

    def _on_key_broadcast(self, m: KeyBroadcast) -> ShareKeys:
        if self._mask_keys is None or self._share_keys is None:  # pragma: no cover - stage order
            raise StageError("keys not generated")
        ids = [p.client_id for p in m.peers]
        if len(set(ids)) != len(ids):
            raise MessageError("a peer is listed twice")
        consistent = self.config.consistent
        context: bytes | None = None
        ring: Ring | None = None
        neighbours = self._neighbours
        commitments: dict[int, bytes] = {}
        if consistent:
            commitments = check_reveals(self._entries, m.reveals, round_id=self.config.round_id)
            context = execution_context(
                round_id=self.config.round_id,
                cohort=self._cohort,
                entries=self._entries,
                reveals=m.reveals,
            )
            if self.hardening.derive_graph:
                ring = seeded_ring(self._cohort, self.config.parameters.degree, context)
                neighbours = ring.neighbours(self.client_id)
            else:
                # trusts the server's graph: whoever it lists is a neighbour
                neighbours = frozenset(ids)
        peer_signing = check_peer_keys(
            m.peers,
            config=self.config,
            hardening=self.hardening,
            neighbours=neighbours,
            commitments=commitments,
            own_keys={self._mask_keys.public_bytes, self._share_keys.public_bytes},
            pki=self._pki,
            cohort=self._cohort,
            round_id=self._signing_round(),
            model_hash=self._signing_model(),
        )
        t = self.config.threshold
        seed = os.urandom(32)
        order = sorted(ids)
        b_shares = split(seed, threshold=t, indices=order)
        s_shares = split(self._mask_keys.private_bytes(), threshold=t, indices=order)
        peers = {p.client_id: p for p in m.peers}
        round_id = self.config.round_id
        out = []
        ciphers: dict[int, ShareCipher] = {}
        for v, b_share, s_share in zip(order, b_shares, s_shares, strict=True):
            key = derive_pair_key(
                self._share_keys,
                peers[v].share_public,
                purpose=Purpose.SHARE_ENCRYPTION,
                round_id=round_id,
                self_id=self.client_id,
                peer_id=v,
            )
            # the same pair key decrypts v's shares in the next stage
            ciphers[v] = ShareCipher(key)
            token = ciphers[v].encrypt(
                b_share.to_bytes() + s_share.to_bytes(),
                round_id=round_id,
                sender=self.client_id,
                recipient=v,
            )
            out.append(EncryptedShare(v, token))
        reply = ShareKeys(
            round_id=round_id,
            sender=self.client_id,
            shares=tuple(out),
            commitment=hashlib.sha256(seed).digest(),
        )
        self._context, self._ring, self._neighbours = context, ring, neighbours
        self._peer_signing = peer_signing
        self._peers = peers
        self._share_ciphers = ciphers
        self._self_mask_seed = seed
        self._stage = self._next_stage(Stage.SHARE_KEYS)
        return reply

    # ------------------------------------------------------------------ stage 3

    def _on_share_forward(self, m: ShareForward) -> MaskedInput:
        if self._input is None:
            raise StageError("no input vector: call set_input() before the masked-input stage")
        if self._mask_keys is None or self._share_keys is None or self._self_mask_seed is None:
            raise StageError("keys not shared")  # pragma: no cover - stage order
        authors = [s.peer for s in m.shares]
        if len(set(authors)) != len(authors):
            raise MessageError("two ciphertexts from the same peer")
        if any(v not in self._peers for v in authors):
            raise MessageError("ciphertext from a client whose keys were not accepted")
        t = self.config.threshold
        if len(authors) < t:
            raise ThresholdNotMetError(f"{len(authors)} peers shared keys, {t} needed")
        round_id = self.config.round_id
        held: dict[int, _Held] = {}
        rejected: list[int] = []
        for enc in m.shares:
            v = enc.peer
            try:
                held[v] = self._open_shares(enc)
            except (AuthenticationError, MessageError):
                if not self.config.consistent:
                    raise
                # a peer (or the relay) sent shares that do not open: report it rather than
                # abort, so that one bad client cannot stop the round for its neighbours
                rejected.append(v)
        if len(held) < t:
            raise ThresholdNotMetError(f"{len(held)} peers' shares opened, {t} needed")
        attestation = b""
        if self.config.consistent and self._signer is not None:
            attestation = self._signer.sign(
                masking_set_transcript(
                    client_id=self.client_id,
                    masking_set=authors,
                    round_id=self._signing_round(),
                    context=self._signing_context(),
                )
            )
        plus = [self._self_mask_seed]
        minus: list[bytes] = []
        for v in authors:
            seed = derive_pair_key(
                self._mask_keys,
                self._peers[v].mask_public,
                purpose=Purpose.MASK_SEED,
                round_id=round_id,
                self_id=self.client_id,
                peer_id=v,
            )
            (plus if self.client_id < v else minus).append(seed)
        # masked in place: the input is the client's own copy, and is dropped below
        words = self._input
        bits = self.config.bits
        apply_masks(words, add=plus, subtract=minus, algorithm=self.config.prg, bits=bits)
        reduce_words(words, bits)
        reply = MaskedInput(
            round_id=round_id,
            sender=self.client_id,
            bits=bits,
            words=words,
            attestation=attestation,
            rejected=tuple(sorted(rejected)),
        )
        self._held = held
        self._input = None
        self._self_mask_seed = None
        self._share_ciphers = {}
        self._stage = self._next_stage(Stage.MASKED_INPUT)
        return reply

    def _open_shares(self, enc: EncryptedShare) -> _Held:
        v = enc.peer
        plain = self._share_ciphers[v].decrypt(
            enc.ciphertext, round_id=self.config.round_id, sender=v, recipient=self.client_id
        )
        if len(plain) != 2 * SHARE_BYTES:
            raise MessageError("decrypted share payload has the wrong size")
        try:
            b_share = Share.from_bytes(plain[:SHARE_BYTES])
            s_share = Share.from_bytes(plain[SHARE_BYTES:])
        except ShareError as exc:
            raise MessageError(f"malformed share from peer: {exc}") from None
        for share in (b_share, s_share):
            if share.index != self.client_id or share.threshold != self.config.threshold:
                raise MessageError("share carries the wrong index or threshold")
        return _Held(b_share, s_share)

    # ------------------------------------------------------------------ stage 4

    def _check_survivor_set(self, survivors: Sequence[int]) -> None:
        check_survivor_set(
            survivors,
            client_id=self.client_id,
            config=self.config,
            hardening=self.hardening,
            neighbours=self._neighbours,
            held=self._held.keys(),
            committed=self._committed,
        )

    def _on_consistency_request(self, m: ConsistencyRequest) -> ConsistencySignature:
        self._check_survivor_set(m.survivors)
        if self._signer is None:  # pragma: no cover - every consistent round has a signing key
            raise InvalidParameterError("missing signing key")
        signature = self._signer.sign(
            consistency_transcript(
                survivors=m.survivors,
                round_id=self._signing_round(),
                context=self._signing_context(),
            )
        )
        reply = ConsistencySignature(
            round_id=self.config.round_id, sender=self.client_id, signature=signature
        )
        self._signed_survivors = m.survivors
        self._own_signature = signature
        self._stage = self._next_stage(Stage.CONSISTENCY_CHECK)
        return reply

    # ------------------------------------------------------------------ stage 5

    def _on_unmask_request(self, m: UnmaskRequest) -> UnmaskResponse:
        survivors, dropped = m.survivors, m.dropped
        strictly_increasing("dropped", dropped)
        self._check_survivor_set(survivors)
        survivor_set, dropped_set = set(survivors), set(dropped)
        held = self._held.keys()
        check_unmask_lists(survivor_set, dropped_set, held=held, hardening=self.hardening)
        if self.config.consistent and self.hardening.consistency_check:
            check_quorum(
                m,
                survivor_set,
                client_id=self.client_id,
                config=self.config,
                hardening=self.hardening,
                signed_survivors=self._signed_survivors,
                own_signature=self._own_signature,
                round_id=self._signing_round(),
                context=self._signing_context(),
                verify_key=self._verify_key,
            )
        if self.config.consistent and self.hardening.attest_masking_sets:
            check_attestations(
                m,
                survivor_set,
                held=held,
                committed=self._committed,
                round_id=self._signing_round(),
                context=self._signing_context(),
                neighbours_of=self._neighbours_of,
                verify_key=self._verify_key,
            )
        revealed: dict[int, frozenset[ShareKind]] = {}
        self_mask: list[RevealedShare] = []
        mask_key: list[RevealedShare] = []
        for v in sorted(held & survivor_set):
            self_mask.append(RevealedShare(v, self._held[v].self_mask.to_bytes()))
            revealed[v] = frozenset({ShareKind.SELF_MASK})
        for v in sorted(held & dropped_set):
            if (
                self.hardening.check_survivor_lists and v in revealed
            ):  # pragma: no cover - disjoint above
                raise ProtocolAbortError("refusing to reveal both shares of one peer")
            mask_key.append(RevealedShare(v, self._held[v].mask_key.to_bytes()))
            revealed[v] = revealed.get(v, frozenset()) | {ShareKind.MASK_KEY}
        reply = UnmaskResponse(
            round_id=self.config.round_id,
            sender=self.client_id,
            self_mask_shares=tuple(self_mask),
            mask_key_shares=tuple(mask_key),
        )
        self._revealed = revealed
        self._held = {}
        self._stage = None
        return reply
