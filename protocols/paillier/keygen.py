"""Distributed threshold Paillier key generation by the decryption committee, run in process.

The committee of ``l >= 3`` parties (:class:`~protocols.paillier.keygen_party.KeygenParty`)
runs the steps of :mod:`secagg.primitives.distributed_paillier` through the aggregation
server (:class:`~protocols.paillier.keygen_server.KeygenServer`), which relays and learns
only public values. Nobody ever holds ``p``, ``q``, ``phi`` or the decryption exponent;
each party ends with a :class:`~secagg.primitives.threshold_paillier.KeyShare` that
:func:`~secagg.primitives.threshold_paillier.partial_decrypt` uses unchanged. This module
is the in-process driver (:class:`KeygenRunner`, :func:`generate_distributed_key`) and the
choice of who makes a round's key (:class:`KeyGeneration`); it re-exports the parties and
the messages, so that the whole key generation is reachable from here.

Pairwise payloads travel encrypted and authenticated, broadcasts signed: the server can
drop or delay messages but not read, forge, redirect or replay them.

Adversary: semi-honest committee members with an honest majority (see
:mod:`secagg.primitives.distributed_paillier`), and a server that controls delivery. A
member that vanishes stalls the phase: the runner raises
:class:`~secagg.errors.RoundRestartError` naming the members that did not send, and
:func:`generate_distributed_key` restarts (a new session: nothing of the stalled one is
reused) without them while at least ``max(3, threshold)`` remain, else raises
:class:`~secagg.errors.ThresholdNotMetError`.

Wire format (:func:`encode_keygen_message`, :func:`decode_keygen_message`, in
:mod:`protocols.paillier.keygen_messages`):
``magic "SAPK" | version 1 | type | session (u64) | body``, strictly decoded. The relay
delivers one phase's messages before the next phase's.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from protocols.paillier.keygen_messages import (
    KeygenBroadcast,
    KeygenHello,
    KeygenMessage,
    KeygenPhase,
    KeygenShares,
    decode_keygen_message,
    encode_keygen_message,
)
from protocols.paillier.keygen_party import KeygenParty
from protocols.paillier.keygen_server import KeygenServer
from secagg.errors import InvalidParameterError, RoundRestartError, ThresholdNotMetError
from secagg.primitives.distributed_paillier import KeygenParameters
from secagg.primitives.paillier import DEFAULT_KEY_BITS
from secagg.primitives.signing import IdentityKey
from secagg.primitives.threshold_paillier import KeyShare, ThresholdPublicKey

__all__ = [
    "KeyGeneration",
    "KeygenPhase",
    "KeygenHello",
    "KeygenShares",
    "KeygenBroadcast",
    "KeygenMessage",
    "encode_keygen_message",
    "decode_keygen_message",
    "KeygenParty",
    "KeygenServer",
    "KeygenStats",
    "KeygenRunner",
    "DistributedKey",
    "generate_distributed_key",
]


class KeyGeneration(Enum):
    """Who makes a Paillier round's threshold key (``key_generation=`` of the drivers)."""

    DEALER = "dealer"
    """A trusted dealer (:func:`secagg.primitives.threshold_paillier.deal_threshold_key`): it
    knows the factorisation and must forget it; safe primes, a checked fixed encryption base."""

    DISTRIBUTED = "distributed"
    """The decryption committee itself (:func:`generate_distributed_key`): nobody ever knows
    the factorisation, assuming an honest majority of semi-honest members; textbook
    encryption randomness; see :mod:`secagg.primitives.distributed_paillier` for what else
    differs."""


@dataclass
class KeygenStats:
    """What one key generation cost (filled in by :class:`KeygenRunner`).

    Attributes:
        cpu_seconds: party id -> process CPU time spent in its ``start`` / ``handle``.
        bytes_sent: party id -> bytes of encoded messages it sent.
        messages_sent: party id -> messages it sent.
        rounds: message rounds (phases) the slowest party went through.
        attempts: candidate batches drawn.
        candidates: candidate pairs ``(p, q)`` drawn.
        restarts: sessions abandoned because members vanished.
    """

    cpu_seconds: dict[int, float] = field(default_factory=dict)
    bytes_sent: dict[int, int] = field(default_factory=dict)
    messages_sent: dict[int, int] = field(default_factory=dict)
    rounds: int = 0
    attempts: int = 0
    candidates: int = 0
    restarts: int = 0


class KeygenRunner:
    """In-process transport: delivers every message through the server (and the wire format).

    Args:
        params: the public parameters.
        parties: party id -> :class:`KeygenParty` (all of one session).
        server: the relay.
        dropouts: phase -> party ids that vanish when they would first send a message of that
            phase (they send and receive nothing from then on).
        wire: pass every message through its binary encoding (default True).
    """

    def __init__(
        self,
        params: KeygenParameters,
        parties: Mapping[int, KeygenParty],
        server: KeygenServer,
        *,
        dropouts: Mapping[KeygenPhase, Iterable[int]] | None = None,
        wire: bool = True,
    ) -> None:
        self._params = params
        self.parties = dict(parties)
        self.server = server
        self._dropouts = {KeygenPhase(k): set(v) for k, v in (dropouts or {}).items()}
        unknown = (
            set().union(*self._dropouts.values()) - set(self.parties) if self._dropouts else set()
        )
        if unknown:
            raise InvalidParameterError(f"dropouts name non-members: {sorted(unknown)}")
        self._wire = wire
        self._gone: set[int] = set()
        self.stats = KeygenStats(
            cpu_seconds=dict.fromkeys(self.parties, 0.0),
            bytes_sent=dict.fromkeys(self.parties, 0),
            messages_sent=dict.fromkeys(self.parties, 0),
        )

    def _outgoing(
        self,
        sender: int,
        messages: Sequence[KeygenMessage],
        queue: deque[tuple[int, bytes | KeygenMessage]],
    ) -> None:
        for m in messages:
            phase = KeygenPhase.HELLO if isinstance(m, KeygenHello) else m.phase
            if sender in self._dropouts.get(phase, set()):
                self._gone.add(sender)
            if sender in self._gone:
                continue
            item: bytes | KeygenMessage = (
                encode_keygen_message(m, self._params) if self._wire else m
            )
            self.stats.bytes_sent[sender] += (
                len(item)
                if isinstance(item, bytes)
                else len(encode_keygen_message(m, self._params))
            )
            self.stats.messages_sent[sender] += 1
            queue.append((sender, item))

    def _timed(self, pid: int, call: Callable[[], list[KeygenMessage]]) -> list[KeygenMessage]:
        start = time.process_time()
        try:
            return call()
        finally:
            self.stats.cpu_seconds[pid] += time.process_time() - start

    def run(self) -> dict[int, KeygenParty]:
        """Run to the end; return the parties (each holding its share).

        Raises:
            RoundRestartError: members vanished; ``excluded`` names them.
            ProtocolAbortError: the committee disagreed (a deviating member).
        """
        queue: deque[tuple[int, bytes | KeygenMessage]] = deque()
        for pid, party in self.parties.items():
            self._outgoing(pid, self._timed(pid, party.start), queue)
        while queue:
            sender, item = queue.popleft()
            message = decode_keygen_message(item, self._params) if isinstance(item, bytes) else item
            for out in self.server.handle(message):
                if isinstance(out, KeygenShares):
                    recipients = [out.recipient]
                else:
                    recipients = [pid for pid in self.parties if pid != out.sender]
                for pid in recipients:
                    if pid in self._gone:
                        continue
                    party = self.parties[pid]
                    replies = self._timed(pid, functools.partial(party.handle, out))
                    self._outgoing(pid, replies, queue)
        alive = [p for pid, p in self.parties.items() if pid not in self._gone]
        self.stats.attempts = max((p.attempts for p in self.parties.values()), default=0)
        self.stats.candidates = self.stats.attempts * self._params.batch_size
        self.stats.rounds = self.server.phases_seen
        if self._gone or not all(p.finished for p in alive):
            missing = self.server.missing() | frozenset(self._gone)
            raise RoundRestartError(
                f"key generation stalled: members {sorted(missing)} sent nothing", missing
            )
        return self.parties


@dataclass(frozen=True)
class DistributedKey:
    """The outcome of :func:`generate_distributed_key`.

    Attributes:
        public_key: the threshold key (``encryption_base`` is ``None``: STANDARD randomness).
        shares: party id -> that member's :class:`KeyShare` (in a deployment each member keeps
            only its own; the in-process driver collects them for the round that follows).
        committee: party id -> share index of the members that generated the key.
        stats: costs of the successful session (restarts counted).
    """

    public_key: ThresholdPublicKey
    shares: Mapping[int, KeyShare] = field(repr=False)
    committee: Mapping[int, int]
    stats: KeygenStats


def generate_distributed_key(
    committee: Mapping[int, IdentityKey] | Sequence[int],
    *,
    threshold: int,
    key_bits: int = DEFAULT_KEY_BITS,
    hazmat_allow_weak_key: bool = False,
    batch_size: int = 0,
    dropouts: Mapping[KeygenPhase, Iterable[int]] | None = None,
    restart: bool = True,
    wire: bool = True,
) -> DistributedKey:
    """Run a distributed key generation in-process (no dealer).

    Args:
        committee: party id -> identity key of every member, or just the party ids (fresh
            identity keys are made). At least 3 members.
        threshold: ``t`` partial decryptions needed.
        key_bits: modulus size (3072 by default, at least 2048).
        hazmat_allow_weak_key: allow smaller keys. INSECURE: tests only.
        batch_size: candidates per attempt (0: the parameters' default).
        dropouts: phase -> members that vanish at that phase (first session only).
        restart: after a dropout, restart without the vanished members (else raise).
        wire: pass every message through its binary encoding.

    Raises:
        RoundRestartError: members vanished and ``restart`` is False.
        ThresholdNotMetError: fewer than ``max(3, threshold)`` members remain.
        InvalidParameterError: bad arguments.
    """
    if isinstance(committee, Mapping):
        identities = dict(committee)
    else:
        identities = {pid: IdentityKey.generate() for pid in committee}
    if not all(isinstance(v, IdentityKey) for v in identities.values()):
        raise InvalidParameterError("committee must map party ids to IdentityKey objects")
    restarts = 0
    pending = dropouts
    while True:
        if len(identities) < max(3, threshold):
            raise ThresholdNotMetError(
                f"{len(identities)} committee members remain; distributed key generation needs "
                f"at least max(3, threshold={threshold})"
            )
        params = KeygenParameters(
            key_bits=key_bits,
            n_parties=len(identities),
            threshold=threshold,
            batch_size=batch_size,
            hazmat_allow_weak_key=hazmat_allow_weak_key,
        )
        session = secrets.randbits(64)
        public = {pid: key.public_bytes for pid, key in identities.items()}
        parties = {
            pid: KeygenParty(params, session=session, party_id=pid, committee=public, identity=key)
            for pid, key in identities.items()
        }
        runner = KeygenRunner(
            params,
            parties,
            KeygenServer(params, session=session, committee=public),
            dropouts=pending,
            wire=wire,
        )
        pending = None
        try:
            runner.run()
        except RoundRestartError as exc:
            if not restart:
                raise
            restarts += 1
            identities = {pid: k for pid, k in identities.items() if pid not in exc.excluded}
            continue
        runner.stats.restarts = restarts
        first = next(iter(parties.values()))
        return DistributedKey(
            public_key=first.public_key,
            shares={pid: p.key_share for pid, p in parties.items()},
            committee={pid: p.index for pid, p in parties.items()},
            stats=runner.stats,
        )
