"""The relay of distributed Paillier key generation: the aggregation server's part.

The server relays every message of the committee and learns only public values: the
broadcasts and the sizes of the pairwise ciphertexts. It checks each message's form,
session, membership and signature before forwarding it, so it can drop or delay messages
but not forge, redirect or replay them (the parties check again). :meth:`KeygenServer.missing`
names the members that sent nothing in the latest phase, which is what a restart without
them needs.
"""

from __future__ import annotations

from collections.abc import Mapping

from protocols.paillier.keygen_messages import (
    KeygenBroadcast,
    KeygenHello,
    KeygenMessage,
    KeygenPhase,
    KeygenShares,
    broadcast_transcript,
    hello_transcript,
)
from secagg.errors import MessageError, ReplayError
from secagg.primitives.distributed_paillier import KeygenParameters
from secagg.primitives.signing import verify_signature

__all__ = ["KeygenServer"]


class KeygenServer:
    """The relay: checks every message's form, session, membership and signature, forwards it.

    It learns the public values (broadcasts) and the sizes of the pairwise ciphertexts. A
    message that fails a check raises a typed error and is not forwarded.
    """

    def __init__(
        self, params: KeygenParameters, *, session: int, committee: Mapping[int, bytes]
    ) -> None:
        self._params = params
        self._session = session
        self._committee = dict(committee)
        self._seen: dict[tuple[int, KeygenPhase], set[int]] = {}
        self._latest: tuple[int, int] = (-1, 0)

    def handle(self, message: KeygenMessage) -> list[KeygenMessage]:
        """Validate one message from a member; return it for delivery (routing: see runner)."""
        if not isinstance(message, (KeygenHello, KeygenShares, KeygenBroadcast)):
            raise MessageError(f"not a key-generation message: {type(message).__name__}")
        if message.session != self._session:
            raise ReplayError("message of another key-generation session")
        if message.sender not in self._committee:
            raise MessageError("message from a non-member")
        if isinstance(message, KeygenHello):
            verify_signature(
                self._committee[message.sender],
                message.signature,
                hello_transcript(self._session, message.sender, message.exchange_key),
            )
            slot = (-1, KeygenPhase.HELLO)
        else:
            if isinstance(message, KeygenShares) and message.recipient not in self._committee:
                raise MessageError("shares addressed to a non-member")
            if isinstance(message, KeygenBroadcast):
                verify_signature(
                    self._committee[message.sender],
                    message.signature,
                    broadcast_transcript(
                        self._session,
                        message.sender,
                        message.phase,
                        message.attempt,
                        message.payload,
                    ),
                )
            slot = (message.attempt, message.phase)
        self._seen.setdefault(slot, set()).add(message.sender)
        self._latest = max(self._latest, (slot[0], slot[1].value))
        return [message]

    @property
    def phases_seen(self) -> int:
        """Message rounds relayed so far (hello included)."""
        return len(self._seen)

    def missing(self) -> frozenset[int]:
        """Members that sent nothing in the latest phase any member reached."""
        attempt, value = self._latest
        seen = self._seen.get((attempt, KeygenPhase(value)), set())
        return frozenset(set(self._committee) - seen)
