"""A key-share holder of a Paillier round, as a state machine.

Per execution of a round a decryptor:

1. on a :class:`~protocols.paillier.messages.NonceRequest`, claims
   ``("paillier-decrypt", round)`` in its round log (refusing a round it already took part
   in), draws a fresh 32-byte nonce and answers with a
   :class:`~protocols.paillier.messages.DecryptorNonce` signed with its identity key;
2. adopts the execution context of the upload request only if that request holds its own
   nonce of this execution, and keeps its own running product of the uploads forwarded to
   it that it verifies again (including that they name *its* context);
3. answers a :class:`~protocols.paillier.messages.DecryptionRequest` with a
   :class:`~protocols.paillier.messages.PartialDecryptionMessage` only if this is its first
   decryption in the round, the named set equals the set of valid contributions it
   received itself, and it holds at least ``min_aggregate_size`` of them (and no more than
   the packing capacity). It partially decrypts *its own* product, with a proof of
   correctness unless the server is curious.

Against a server that lies (``SEMI_MALICIOUS`` and ``MALICIOUS``) this needs quorums that
intersect in an honest decryptor (``2t - l > c``), so that two decryptions in one round
would need an honest decryptor to decrypt twice, which it refuses; and round logs that
persist across restarts, kept where the key share is
(:meth:`protocols.round_log.RoundLog.at`). Each check can be switched off for attack
demonstrations (:class:`~protocols.paillier.config.PaillierHardening`).
"""

from __future__ import annotations

import secrets

from protocols.paillier.config import PaillierHardening, PaillierRoundConfig, party_round_log
from protocols.paillier.messages import (
    NONCE_BYTES,
    DecryptionRequest,
    DecryptorNonce,
    NonceRequest,
    PaillierMessage,
    PartialDecryptionMessage,
    Upload,
    UploadRequest,
    check_message,
)
from protocols.paillier.verification import (
    check_contribution,
    check_round,
    check_upload_request,
    nonce_transcript,
)
from protocols.round_log import RoundLog
from secagg.errors import (
    AlreadyFinalizedError,
    InvalidParameterError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
    StageError,
)
from secagg.primitives.paillier import PaillierAggregator
from secagg.primitives.signing import IdentityKey
from secagg.primitives.threshold_paillier import (
    KeyShare,
    Workers,
    decryption_workers,
    partial_decrypt,
)

__all__ = ["DECRYPT_SCOPE", "PaillierDecryptor"]

DECRYPT_SCOPE = "paillier-decrypt"
"""Round-log scope a decryptor claims before it commits a nonce or decrypts."""


class PaillierDecryptor:
    """A key-share holder that decrypts only a legitimate aggregate, once per round.

    Per execution it draws a fresh nonce (signed with its identity key), accepts only the
    upload request whose nonce list holds that nonce, keeps its own running product of the
    uploads forwarded to it that are signed over that execution's context, and on a
    :class:`DecryptionRequest` checks that the named contributors are exactly those, at least
    ``min_aggregate_size`` of them, before partially decrypting that product. The round is
    claimed in its round log before the nonce leaves: a second execution of the round (a
    new object, a restart with the same log) is refused.

    Args:
        config: the round.
        share: this decryptor's key share.
        identity_key: its long-term signing key (the one in ``config.decryptor_keys``;
            required with ``signed_contributions``).
        hardening: the checks (all on by default; see :class:`PaillierHardening`).
        round_log: where it records the rounds it took part in; persist it where the key
            share is kept (:meth:`protocols.round_log.RoundLog.at`). Default: the process-wide
            log of the identity key (:func:`protocols.round_log.identity_log`), or a fresh
            in-memory log without one.
        workers: processes its partial decryption runs on (a positive int or ``"auto"``, see
            :func:`~secagg.primitives.threshold_paillier.decryption_workers`); default 1, in
            this process; the values do not depend on it. Worth it for long vectors on free
            cores (see :func:`~secagg.primitives.threshold_paillier.partial_decrypt`).
    """

    def __init__(
        self,
        config: PaillierRoundConfig,
        share: KeyShare,
        *,
        identity_key: IdentityKey | None = None,
        hardening: PaillierHardening = PaillierHardening(),  # noqa: B008 - frozen value
        round_log: RoundLog | None = None,
        workers: Workers = 1,
    ) -> None:
        self.workers = decryption_workers(workers)
        if not isinstance(share, KeyShare) or share.public_key.key_id != config.public_key.key_id:
            raise InvalidParameterError("the key share does not belong to the round's key")
        if not isinstance(hardening, PaillierHardening):
            raise InvalidParameterError("hardening must be a PaillierHardening")
        parties = [pid for pid, index in config.decryptor_parties.items() if index == share.index]
        party_id = parties[0]
        if identity_key is not None and not isinstance(identity_key, IdentityKey):
            raise InvalidParameterError("identity_key must be an IdentityKey")
        if config.signed_contributions and (
            identity_key is None
            or identity_key.public_bytes != config.decryptor_identities[party_id]
        ):
            raise InvalidParameterError("signed rounds need this decryptor's identity key")
        self.config = config
        self.index = share.index
        self.party_id = party_id
        self.hardening = hardening
        self._share = share
        self._identity = identity_key
        self._log = party_round_log(round_log, identity_key)
        self._aggregator = PaillierAggregator(
            config.public_key.paillier, config.packing, config.encoded_length
        )
        self._contributors: set[int] = set()
        self._nonce: bytes | None = None
        self._execution: bytes | None = None
        self._claimed = False
        self._decrypted = False

    @property
    def decrypted(self) -> bool:
        """Whether this decryptor has released a partial decryption in this round."""
        return self._decrypted

    @property
    def round_log(self) -> RoundLog:
        """The log this decryptor claims its rounds in."""
        return self._log

    @property
    def execution(self) -> bytes | None:
        """The execution context it accepted (``None`` before the upload request)."""
        return self._execution

    def _claim(self) -> None:
        if self.hardening.single_execution and not self._claimed:
            self._log.claim(DECRYPT_SCOPE, self.config.round_id)
        self._claimed = True

    def takes_part(self, request: UploadRequest) -> bool:
        """Whether ``request`` names this decryptor (without the freshness check: always)."""
        if not self.hardening.fresh_context:
            return True
        return any(m.party_id == self.party_id for m in request.nonces)

    def check_upload_request(self, request: UploadRequest) -> bytes:
        """Validate the execution an upload request opens; return its context (no state change).

        Raises:
            ReplayError: another round, or (``fresh_context``) a nonce list without this
                decryptor's nonce of this execution.
            AlreadyFinalizedError: it already accepted an execution context.
            StageError: (``fresh_context``) it has not committed a nonce yet.
            MessageError, AuthenticationError, ThresholdNotMetError: as for the client.
        """
        check_round(self.config, request.round_id)
        if request.recipient != self.party_id:
            raise MessageError("upload request addressed to another party")
        if self._execution is not None:
            raise AlreadyFinalizedError("this decryptor already accepted an execution context")
        if self.hardening.fresh_context:
            if self._nonce is None:
                raise StageError("no nonce committed for this execution")
            own = [m for m in request.nonces if m.party_id == self.party_id]
            if len(own) != 1 or own[0].nonce != self._nonce:
                raise ReplayError("the execution context lacks this decryptor's fresh nonce")
        return check_upload_request(self.config, request)

    def accept_upload_request(self, execution: bytes) -> None:
        """Adopt an execution context that :meth:`check_upload_request` returned."""
        self._execution = execution

    def handle(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Process a nonce request, the upload request, a forwarded upload or a decryption request.

        All-or-nothing: a refused message raises and changes no state (except that a round
        claimed in the round log stays claimed).

        Raises:
            ReplayError: another round, a round this decryptor's log already holds, an upload
                over another execution's context, a duplicate upload.
            AlreadyFinalizedError: a second nonce or context, or anything after decrypting.
            ProtocolAbortError: a decryption request for anything but the product of at least
                ``min_aggregate_size`` contributions it received itself.
            StageError, MessageError, AuthenticationError, ThresholdNotMetError: a message
                out of order, malformed (``MessageError`` also for an object that is not a
                Paillier message), unauthenticated or with too few committed decryptors.
            InvalidParameterError: the round log cannot be written.
        """
        check_message(message)
        if isinstance(message, (NonceRequest, UploadRequest, Upload, DecryptionRequest)):
            check_round(self.config, message.round_id)
        if self._decrypted and self.hardening.single_decryption:
            raise AlreadyFinalizedError("this decryptor already decrypted in this round")
        if isinstance(message, NonceRequest):
            return [self._commit_nonce(message)]
        if isinstance(message, UploadRequest):
            self.accept_upload_request(self.check_upload_request(message))
            return []
        if isinstance(message, Upload):
            self._accept_upload(message)
            return []
        if isinstance(message, DecryptionRequest):
            return [self._decrypt(message)]
        raise StageError(f"a decryptor does not accept {type(message).__name__}")

    def _commit_nonce(self, message: NonceRequest) -> DecryptorNonce:
        if message.recipient != self.party_id:
            raise MessageError("nonce request addressed to another decryptor")
        if self._nonce is not None:
            raise AlreadyFinalizedError("this decryptor already committed a nonce")
        self._claim()
        nonce = secrets.token_bytes(NONCE_BYTES)
        signature = b""
        if self.config.signed_contributions and self._identity is not None:
            signature = self._identity.sign(nonce_transcript(self.config, self.party_id, nonce))
        self._nonce = nonce
        return DecryptorNonce(
            round_id=self.config.round_id,
            party_id=self.party_id,
            nonce=nonce,
            signature=signature,
        )

    def _accept_upload(self, message: Upload) -> None:
        if self.hardening.fresh_context:
            if self._execution is None:
                raise StageError("no execution context accepted yet")
            if message.context != self._execution:
                raise ReplayError("upload bound to another execution of the round")
        check_contribution(self.config, message, check_proof=self.hardening.verify_plaintext_proofs)
        if message.client_id in self._contributors:
            raise ReplayError("this client's contribution was already forwarded")
        self._aggregator.add(message.vector)
        self._contributors.add(message.client_id)

    def _decrypt(self, message: DecryptionRequest) -> PartialDecryptionMessage:
        if message.recipient != self.party_id:
            raise MessageError("decryption request addressed to another decryptor")
        if self.hardening.fresh_context and self._execution is None:
            raise StageError("no execution context accepted yet")
        named = message.contributors
        if list(named) != sorted(set(named)):
            raise MessageError("contributors must be sorted and distinct")
        if set(named) != self._contributors:
            raise ProtocolAbortError(
                "the requested aggregate is not the set of signed contributions received"
            )
        if self.hardening.check_aggregate_size and len(named) < self.config.min_aggregate_size:
            raise ProtocolAbortError(
                f"refusing to decrypt an aggregate of {len(named)} contributions; "
                f"the minimum is {self.config.min_aggregate_size}"
            )
        if not named:
            raise ProtocolAbortError("nothing to decrypt")
        self._claim()
        partial = partial_decrypt(
            self._share,
            self._aggregator.result(),
            prove=self.config.decryption_proofs,
            context=self.config.context,
            workers=self.workers,
        )
        self._decrypted = True
        return PartialDecryptionMessage(round_id=self.config.round_id, partial=partial)
