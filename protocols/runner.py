"""Stage-by-stage in-process transport shared by the round runners.

:class:`SteppedRound` is the machinery that :class:`protocols.masking.driver.RoundRunner` (the
masking protocols) and :class:`protocols.paillier.PaillierRoundRunner` have in common.
A round is a sequence of stages; each stage goes through three steps:

1. :meth:`~SteppedRound.deliver_requests`: the server's requests, waiting in
   :attr:`~SteppedRound.pending`, go (through the wire format) to every live party; the
   parties' replies wait in :attr:`~SteppedRound.outbox`. A party named in the stage's
   dropouts vanishes: it is marked dead and never hears from the round again.
2. :meth:`~SteppedRound.deliver_replies`: the replies go (through the wire format) to the
   server.
3. :meth:`~SteppedRound.close`: ``server.advance()`` closes the stage and queues the next
   stage's requests.

Between the steps a test or a scripted attack may inject messages
(:meth:`~SteppedRound.send_to_server`, :meth:`~SteppedRound.send_to_client`) and inspect
what every party received. Once the round is over (:attr:`~SteppedRound.finished`) every
step raises :class:`~secagg.errors.StageError`, as ``server.advance()`` does.

A subclass supplies the protocol-specific parts: the wire codec (:meth:`~SteppedRound._encode`,
:meth:`~SteppedRound._decode`), which of the server's messages are requests to whom
(:meth:`~SteppedRound._by_recipient`), what handing a message to the server involves
(:meth:`~SteppedRound._to_server`) and, optionally, a stage whose replies go to the server
one by one and whose delivery stops early (:meth:`~SteppedRound._replies_at_once`,
:meth:`~SteppedRound._stage_complete`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from protocols.stages import Stage
from secagg.errors import InvalidParameterError, MessageError, StageError

__all__ = ["StagedServer", "StagedParty", "SteppedRound"]

MessageT = TypeVar("MessageT")
ResultT = TypeVar("ResultT")
_ResultT_co = TypeVar("_ResultT_co", covariant=True)

RawMessage = bytes | bytearray | memoryview


class StagedServer(Protocol[MessageT, _ResultT_co]):
    """What a runner needs of a server: start, handle, advance, its stage and its result."""

    @property
    def stage(self) -> Stage | None:
        """The stage being run (``None`` once the round is over)."""

    @property
    def result(self) -> _ResultT_co:
        """The round's outcome (once it is over)."""

    def start(self) -> Sequence[MessageT]:
        """Open the round; return the first stage's requests."""

    def handle(self, message: MessageT) -> Sequence[MessageT]:
        """Accept one message; return what it makes the server send at once."""

    def advance(self) -> Sequence[MessageT]:
        """Close the current stage; return the next stage's requests."""


class StagedParty(Protocol[MessageT]):
    """What a runner needs of a client (or any other party): ``handle``."""

    def handle(self, message: MessageT) -> list[MessageT]:
        """Process one message; return the replies."""


class SteppedRound(ABC, Generic[MessageT, ResultT]):
    """Runs one round in process, stage by stage (see the module docstring).

    Attributes:
        server: the server.
        clients: party id -> party.
        wire: whether every message goes through the wire format.
        record_view: whether :attr:`server_view` keeps every message the server accepted.
        dropouts: stage -> ids that vanish at that stage.
        stages: the round's stages, in order.
        server_view: every message the server accepted (with ``record_view``).
        pending: the current stage's requests not yet delivered, by recipient.
        requests: the current stage's requests as the parties received them.
        outbox: the current stage's replies not yet delivered, by sender.
        replies: the current stage's replies as the server received them.
        history: closed stage -> ``(requests, replies)``.
        dead: ids that vanished.

    Args:
        server: a fresh server (not started); it is started here.
        clients: party id -> party.
        dropouts: stage -> ids that vanish at that stage (they neither process the
            stage's request nor send anything afterwards).
        wire: pass every message through the wire format.
        record_view: keep every accepted server message in :attr:`server_view`.
    """

    stages: tuple[Stage, ...]

    def __init__(
        self,
        server: StagedServer[MessageT, ResultT],
        clients: Mapping[int, StagedParty[MessageT]],
        *,
        dropouts: Mapping[Stage, Iterable[int]] | None = None,
        wire: bool = True,
        record_view: bool = True,
    ) -> None:
        self.server = server
        self.clients: Mapping[int, StagedParty[MessageT]] = dict(clients)
        self.wire = wire
        self.record_view = record_view
        self.dropouts = {Stage(k): frozenset(v) for k, v in (dropouts or {}).items()}
        self.server_view: list[MessageT] = []
        self.requests: dict[int, MessageT] = {}
        self.outbox: dict[int, list[MessageT]] = {}
        self.replies: dict[int, MessageT] = {}
        self.history: dict[Stage, tuple[dict[int, MessageT], dict[int, MessageT]]] = {}
        self.dead: set[int] = set()
        self.refused: dict[int, MessageError] = {}
        self.pending: dict[int, MessageT] = self._by_recipient(server.start())
        self._requests_delivered = False
        self._replies_delivered = False

    # -- protocol-specific parts -------------------------------------------------------

    @abstractmethod
    def _by_recipient(self, messages: Iterable[MessageT]) -> dict[int, MessageT]:
        """The requests among ``messages``, by recipient."""

    @abstractmethod
    def _encode(self, message: MessageT) -> bytes:
        """The wire encoding of ``message``."""

    @abstractmethod
    def _decode(self, data: RawMessage) -> MessageT:
        """The message that ``data`` encodes (strict: bad input raises a typed error)."""

    def _to_server(self, message: MessageT) -> Sequence[MessageT]:
        """Hand ``message`` to the server, record it, return what the server sends at once."""
        out = self.server.handle(message)
        if self.record_view:
            self.server_view.append(message)
        return out

    def _replies_at_once(self, stage: Stage) -> bool:
        """Whether ``stage``'s replies go to the server as each party answers (default no)."""
        return False

    def _stage_complete(self) -> bool:
        """With :meth:`_replies_at_once`: whether the stage needs no more requests delivered."""
        return False

    # -- shared machinery --------------------------------------------------------------

    def transmit(self, message: MessageT) -> MessageT:
        """What the receiver gets: ``message`` after a trip through the wire format."""
        return self._decode(self._encode(message)) if self.wire else message

    def _receive(self, message: MessageT | RawMessage) -> MessageT:
        if isinstance(message, (bytes, bytearray, memoryview)):
            return self._decode(message)
        return self.transmit(message)

    @property
    def stage(self) -> Stage | None:
        """The stage being run (``None`` when the round is over)."""
        return self.server.stage

    @property
    def finished(self) -> bool:
        """Whether the round is over (result computed or aborted)."""
        return self.server.stage is None

    def _running(self) -> Stage:
        stage = self.stage
        if stage is None:
            raise StageError("the round is over")
        return stage

    def _reply_to_server(self, sender: int, reply: MessageT) -> None:
        received = self.transmit(reply)
        try:
            self._to_server(received)
        except MessageError as exc:
            # as a deployed server does: a reply that fails validation or verification is
            # refused and its sender counts as dropped from this stage on
            self.refused[sender] = exc
            self.dead.add(sender)
            return
        self.replies[sender] = received

    def deliver_requests(self) -> None:
        """Hand the pending requests to the live parties; keep their replies in :attr:`outbox`."""
        stage = self._running()
        if self._requests_delivered:
            return
        vanish = self.dropouts.get(stage, frozenset())
        self.requests, self.outbox, self.replies = {}, {}, {}
        at_once = self._replies_at_once(stage)
        for cid, request in sorted(self.pending.items()):
            if cid in self.dead or cid in vanish:
                self.dead.add(cid)
                continue
            if at_once and self._stage_complete():
                break
            delivered = self.transmit(request)
            self.requests[cid] = delivered
            self.outbox[cid] = self.clients[cid].handle(delivered)
            if at_once:
                for reply in self.outbox.pop(cid):
                    self._reply_to_server(cid, reply)
        self.pending = {}
        self._requests_delivered = True

    def deliver_replies(self) -> None:
        """Hand the replies in :attr:`outbox` to the server."""
        self._running()
        if not self._requests_delivered:
            self.deliver_requests()
        if self._replies_delivered:
            return
        for cid, replies in sorted(self.outbox.items()):
            for reply in replies:
                self._reply_to_server(cid, reply)
        self._replies_delivered = True

    def collect(self) -> None:
        """:meth:`deliver_requests` then :meth:`deliver_replies` (the stage stays open)."""
        self.deliver_requests()
        self.deliver_replies()

    def close(self) -> None:
        """Close the current stage (``server.advance()``) and queue the next requests."""
        stage = self._running()
        self.collect()
        self.history[stage] = (self.requests, self.replies)
        self.pending = self._by_recipient(self.server.advance())
        self._requests_delivered = self._replies_delivered = False

    def step(self) -> Stage:
        """Collect and close the current stage; return it.

        Raises:
            StageError: the round is over.
        """
        stage = self._running()
        self.close()
        return stage

    def run_until(self, stage: Stage) -> None:
        """Close every stage before ``stage`` (its requests are then :attr:`pending`).

        Raises:
            InvalidParameterError: this round has no such stage.
            StageError: the round ended before ``stage``.
        """
        target = Stage(stage)
        if target not in self.stages:
            raise InvalidParameterError(f"this round has no stage {target.value!r}")
        while self._running() is not target:
            self.step()

    def run(self) -> ResultT:
        """Run the remaining stages; return the server's result."""
        while not self.finished:
            self.step()
        return self.server.result

    def send_to_server(self, message: MessageT | RawMessage) -> None:
        """Deliver an extra message (object or raw bytes) to the server; errors propagate."""
        self._to_server(self._receive(message))

    def send_to_client(self, client_id: int, message: MessageT | RawMessage) -> list[MessageT]:
        """Deliver an extra message (object or raw bytes) to a client; return its reply."""
        return self.clients[client_id].handle(self._receive(message))
