"""One participant of a Paillier round: a contributing client, a decryptor, or both.

When the clients are the decryptors (the default committee), one party plays both roles
and must not let a refused message change either of them: an upload request is checked by
the decryptor before the client acts on it, and adopted by the decryptor only once the
client has answered.
"""

from __future__ import annotations

from protocols.paillier.client import PaillierClient
from protocols.paillier.decryptor import PaillierDecryptor
from protocols.paillier.messages import (
    DecryptionRequest,
    NonceRequest,
    PaillierMessage,
    Upload,
    UploadRequest,
    check_message,
)
from secagg.errors import InvalidParameterError, StageError

__all__ = ["PaillierParty"]


class PaillierParty:
    """One participant: a contributing client, a decryptor, or both (clients as decryptors)."""

    def __init__(self, client: PaillierClient | None, decryptor: PaillierDecryptor | None) -> None:
        if client is None and decryptor is None:
            raise InvalidParameterError("a party is a client, a decryptor or both")
        self.client = client
        self.decryptor = decryptor

    def handle(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Route a message to the client, the decryptor or (upload requests) both.

        An upload request is checked by both roles before either acts on it, so that a
        refused request changes neither.

        Raises:
            MessageError: not a Paillier message.
            StageError: a message neither of its roles accepts.
            the errors of :meth:`PaillierClient.handle` and :meth:`PaillierDecryptor.handle`.
        """
        check_message(message)
        if isinstance(message, UploadRequest):
            decryptor = self.decryptor
            execution = None
            if decryptor is not None and decryptor.takes_part(message):
                execution = decryptor.check_upload_request(message)
            elif self.client is None:
                raise StageError("this decryptor has no part in this execution")
            replies = self.client.handle(message) if self.client is not None else []
            if decryptor is not None and execution is not None:
                decryptor.accept_upload_request(execution)
            return replies
        if isinstance(message, (NonceRequest, Upload, DecryptionRequest)):
            if self.decryptor is None:
                raise StageError("this party does not decrypt")
            return self.decryptor.handle(message)
        raise StageError(f"a party does not accept {type(message).__name__}")
