"""The contributing client of a Paillier round, as a state machine.

A client answers one :class:`~protocols.paillier.messages.UploadRequest` per round. It
checks the decryptors' nonce signatures and that at least ``t`` decryptors committed to the
execution, claims ``("paillier-upload", round)`` in its round log (refusing a round it
already took part in), quantises its update (a
:class:`~secagg.primitives.encoding.VectorEncoder`), packs and encrypts it under the round's
key (:mod:`secagg.primitives.paillier`), proves that it knows the plaintexts and signs
``(key id, round, context, client id, ciphertext digest)``
(:func:`~protocols.paillier.verification.contribution_transcript`); the proof is bound to
the same execution context and sender. Its memory is O(d).
"""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt

from protocols.paillier.config import PaillierRoundConfig, party_round_log
from protocols.paillier.encoding import RoundingEncoder, WeightedEncoder
from protocols.paillier.messages import PaillierMessage, Upload, UploadRequest, check_message
from protocols.paillier.verification import (
    check_upload_request,
    contribution_transcript,
    plaintext_proof_context,
)
from protocols.round_log import RoundLog
from secagg.errors import AlreadyFinalizedError, InvalidParameterError, MessageError, StageError
from secagg.primitives.encoding import FixedPointEncoder
from secagg.primitives.signing import IdentityKey

__all__ = ["UPLOAD_SCOPE", "PaillierClient"]

UPLOAD_SCOPE = "paillier-upload"
"""Round-log scope a client claims before it encrypts anything."""

F64 = npt.NDArray[np.float64]


class PaillierClient:
    """A contributing client: encode, encrypt, prove, sign, upload -- once per round.

    Args:
        config: the round.
        client_id: this client's id (must be in the roster).
        identity_key: its long-term signing key (required with ``signed_contributions``).
        update: the float update to send when the server's :class:`UploadRequest` arrives
            (:meth:`handle`); :meth:`upload` takes it directly instead.
        rng: generator for the encoder's stochastic rounding (simulation data only).
        round_log: where this client records the rounds it uploaded in (claimed before
            anything is encrypted; a second execution of a round is refused). Keep it with
            the identity key (:meth:`protocols.round_log.RoundLog.at`). Default: the
            process-wide log of the identity key (:func:`protocols.round_log.identity_log`),
            or a fresh in-memory log without one.
    """

    def __init__(
        self,
        config: PaillierRoundConfig,
        client_id: int,
        identity_key: IdentityKey | None,
        *,
        update: npt.ArrayLike | None = None,
        rng: np.random.Generator | None = None,
        round_log: RoundLog | None = None,
    ) -> None:
        if client_id not in config.roster:
            raise InvalidParameterError(f"client {client_id} is not in the round's roster")
        if config.signed_contributions:
            if (
                not isinstance(identity_key, IdentityKey)
                or identity_key.public_bytes != config.roster[client_id]
            ):
                raise InvalidParameterError(
                    "signed contributions need this client's rostered identity key"
                )
        self.config = config
        self.client_id = client_id
        self._identity = identity_key
        self._log = party_round_log(round_log, identity_key)
        self._encryptor = config.public_key.encryptor(config.packing, randomness=config.randomness)
        self._update = None if update is None else self._check_update(update)
        self._rng = rng
        self._done = False

    @property
    def round_log(self) -> RoundLog:
        """The log this client claims its rounds in."""
        return self._log

    def _check_update(self, update: npt.ArrayLike) -> F64:
        x = np.asarray(update, dtype=np.float64)
        if x.ndim != 1 or x.size != self.config.length:
            raise InvalidParameterError(
                f"update must be a 1-D vector of length {self.config.length}"
            )
        return x

    def handle(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Answer the server's :class:`UploadRequest` with this client's :class:`Upload`.

        Raises:
            StageError: a Paillier message other than an upload request.
            ReplayError: a request of another round, or this client (its round log) already
                took part in an execution of this round.
            MessageError: not a Paillier message, a request addressed to someone else, or a
                nonce from a party that is not a decryptor of the round.
            AuthenticationError: a decryptor's nonce signature does not verify.
            ThresholdNotMetError: fewer than ``t`` decryptors committed to the execution.
            AlreadyFinalizedError: this client object already uploaded.
            InvalidParameterError: the client was built without an update, or its round log
                cannot be written.
            EncodingError: the update does not fit the encoder.
        """
        check_message(message)
        if not isinstance(message, UploadRequest):
            raise StageError(f"a client does not accept {type(message).__name__}")
        if self._update is None:
            raise InvalidParameterError("this client was built without an update")
        return [self.upload(message, self._update)]

    def upload(
        self,
        request: UploadRequest,
        update: npt.ArrayLike,
        *,
        rng: np.random.Generator | None = None,
    ) -> Upload:
        """Encode, encrypt, prove and sign ``update`` over the execution ``request`` opens.

        The round is claimed in the round log after every check and before any ciphertext
        exists; a second execution of the round is refused.

        Args:
            request: the server's upload request, addressed to this client.
            update: the float update (a 1-D vector of the round's length).
            rng: generator for the encoder's stochastic rounding; default the client's own
                (``rng`` of the constructor) when the encoder rounds stochastically.

        Raises:
            the errors of :meth:`handle` (except ``StageError``).
        """
        if self._done:
            raise AlreadyFinalizedError("this client already uploaded in this round")
        if not isinstance(request, UploadRequest):
            raise MessageError("an upload answers an UploadRequest")
        if request.recipient != self.client_id:
            raise MessageError("upload request addressed to another client")
        execution = check_upload_request(self.config, request)
        x = self._check_update(update)
        encoder = self.config.encoder
        if rng is None and isinstance(encoder, (FixedPointEncoder, WeightedEncoder)):
            rng = self._rng
        if rng is None:
            encoded = encoder.encode(x)
        else:
            encoded = cast(RoundingEncoder, encoder).encode(x, rng=rng)
        self._log.claim(UPLOAD_SCOPE, self.config.round_id)
        self._done = True
        vector, witness = self._encryptor.encrypt_with_witness(encoded)
        proof = None
        if self.config.plaintext_proofs:
            proof = self._encryptor.prove_knowledge(
                vector,
                witness,
                context=plaintext_proof_context(self.config, execution, self.client_id),
            )
        del witness
        signature = b""
        if self.config.signed_contributions and self._identity is not None:
            signature = self._identity.sign(
                contribution_transcript(self.config, execution, self.client_id, vector.digest())
            )
        return Upload(
            round_id=self.config.round_id,
            client_id=self.client_id,
            vector=vector,
            context=execution,
            signature=signature,
            proof=proof,
        )
