"""The in-process transport of a Paillier round, stage by stage.

:class:`PaillierRoundRunner` has the stepping interface of
:class:`protocols.masking.driver.RoundRunner` (the machinery is
:class:`protocols.runner.SteppedRound`'s) and adds what Paillier has of its own: its wire
format, the forwarding of every upload the server accepts to the committed decryptors, and
lazy decryption (decryptors asked one at a time until ``t`` partials are in). A reply the
server refuses leaves its sender out: it counts as dropped, the round goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from protocols.paillier.messages import (
    DecryptionRequest,
    NonceRequest,
    PaillierMessage,
    Upload,
    UploadRequest,
    decode_message,
    encode_message,
)
from protocols.paillier.party import PaillierParty
from protocols.paillier.server import STAGES, PaillierResult, PaillierServer
from protocols.runner import SteppedRound
from protocols.stages import Stage
from secagg.errors import SecAggError

__all__ = ["ProgressBar", "PaillierRoundRunner"]


class ProgressBar(Protocol):
    """What :class:`PaillierRoundRunner` needs of a progress bar (``tqdm`` is one)."""

    @property
    def desc(self) -> str:
        """The current description."""

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        """Replace the description."""

    def update(self, n: float | None = 1) -> bool | None:
        """Advance by ``n`` units."""


class PaillierRoundRunner(SteppedRound[PaillierMessage, PaillierResult]):
    """Runs one Paillier round in process, stage by stage (the interface of ``RoundRunner``).

    Stages are ``advertise_keys`` (nonce requests -> the decryptors' signed fresh nonces),
    ``masked_input`` (upload requests carrying the nonces -> uploads, each accepted upload
    forwarded at once to every live decryptor of the execution) and ``unmasking``
    (decryption requests -> partial decryptions). A reply the server refuses (an upload or
    nonce whose signature or proof fails, a bad partial decryption) is dropped and noted in
    :attr:`rejected`: its sender counts as dropped out, the round goes on. A stage is
    *collected* (:meth:`deliver_requests`, :meth:`deliver_replies`) then *closed*
    (:meth:`close`: ``server.advance()``). Between the two a test or a scripted attack may
    inject messages (:meth:`send_to_server`, :meth:`send_to_client`) and inspect
    :attr:`pending`, :attr:`requests`, :attr:`outbox` and :attr:`replies`. The stepping
    itself is :class:`~protocols.runner.SteppedRound`'s; this class adds the Paillier wire
    format, the forwarding of uploads to the decryptors and lazy decryption.

    Args:
        server: a fresh server.
        parties: party id -> :class:`PaillierParty` (clients and decryptors).
        dropouts: stage -> party ids that vanish at that stage.
        wire: pass every message through the binary encoding.
        record_view: keep every message the server accepted in :attr:`server_view`.
        lazy_decryption: ask decryptors one at a time and stop at ``t`` partials (what a
            simulation wants: partial decryption is the expensive step).
    """

    stages: tuple[Stage, ...] = STAGES
    server: PaillierServer
    clients: dict[int, PaillierParty]

    def __init__(
        self,
        server: PaillierServer,
        parties: Mapping[int, PaillierParty],
        *,
        dropouts: Mapping[Stage, Iterable[int]] | None = None,
        wire: bool = True,
        record_view: bool = True,
        lazy_decryption: bool = False,
    ) -> None:
        self.config = server.config
        self.lazy_decryption = lazy_decryption
        self.rejected: dict[int, list[str]] = {}
        super().__init__(server, parties, dropouts=dropouts, wire=wire, record_view=record_view)
        self.parties = self.clients  # ``clients`` is the name the conformance suite uses
        #: a bar advanced once per unit of work (an upload encrypted or verified by one
        #: party, a decryption share), or ``None``; see ``progress`` of
        #: :func:`protocols.paillier.driver.run_round`
        self.progress_bar: ProgressBar | None = None

    def transmit(self, message: PaillierMessage) -> PaillierMessage:
        """What the receiver gets; first advances :attr:`progress_bar` (if any)."""
        if self.progress_bar is not None:
            _advance_progress(self.progress_bar, message)
        return super().transmit(message)

    def _by_recipient(self, messages: Iterable[PaillierMessage]) -> dict[int, PaillierMessage]:
        out: dict[int, PaillierMessage] = {}
        for m in messages:
            if isinstance(m, (NonceRequest, UploadRequest, DecryptionRequest)):
                out[m.recipient] = m
        return out

    def _encode(self, message: PaillierMessage) -> bytes:
        return encode_message(message, self.config)

    def _decode(self, data: bytes | bytearray | memoryview) -> PaillierMessage:
        return decode_message(bytes(data), self.config)

    def _to_server(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Hand ``message`` to the server, record it, forward its forwards to the decryptors."""
        forwards = list(super()._to_server(message))
        committee = set(self.server.committee)
        for forward in forwards:
            for pid, party in sorted(self.parties.items()):
                if party.decryptor is not None and pid in committee and pid not in self.dead:
                    party.handle(self.transmit(forward))
        return forwards

    def _reply_to_server(self, sender: int, reply: PaillierMessage) -> None:
        """A party's reply; one the server refuses is dropped (its sender counts as dropped)."""
        try:
            super()._reply_to_server(sender, reply)
        except SecAggError as exc:
            self.rejected.setdefault(sender, []).append(type(exc).__name__)

    def _replies_at_once(self, stage: Stage) -> bool:
        return self.lazy_decryption and stage is Stage.UNMASKING

    def _stage_complete(self) -> bool:
        return self.server.partials_received >= self.config.public_key.threshold

    def send_to_client(
        self, party_id: int, message: PaillierMessage | bytes | bytearray | memoryview
    ) -> list[PaillierMessage]:
        """Deliver an extra message (object or raw bytes) to a party; return its reply."""
        return super().send_to_client(party_id, message)


_PROGRESS_PHASES: dict[type, str] = {
    UploadRequest: "paillier round: encrypting uploads",
    Upload: "paillier round: verifying uploads",
    DecryptionRequest: "paillier round: decryption shares",
}


def _advance_progress(bar: ProgressBar, message: PaillierMessage) -> None:
    """One unit of work starts: a client encrypts, a party verifies, a decryptor decrypts."""
    phase = _PROGRESS_PHASES.get(type(message))
    if phase is not None:
        if bar.desc != phase:
            bar.set_description_str(phase, refresh=False)
        bar.update(1)
