"""The aggregator of a Paillier round, as a state machine.

The server never holds key material. It runs three stages
(:class:`~protocols.stages.Stage` values):

1. ``advertise_keys``: it sends each decryptor a
   :class:`~protocols.paillier.messages.NonceRequest` and verifies each signed nonce on
   receipt; with fewer than ``t`` valid nonces the round aborts
   (:class:`~secagg.errors.ThresholdNotMetError`).
2. ``masked_input``: it sends every client and every committed decryptor an
   :class:`~protocols.paillier.messages.UploadRequest` carrying the nonces, whose hash is
   the execution context. It verifies each upload on receipt (round, stage, context,
   roster, signature, proof, ciphertexts), multiplies it into its running aggregate and
   forwards it to every committed decryptor.
3. ``unmasking``: it sends each committed decryptor a
   :class:`~protocols.paillier.messages.DecryptionRequest` naming the contributors,
   verifies the partial decryptions' proofs, combines ``t`` of them, unpacks and decodes
   the sum.

Everything is verified before anything is relayed, so one client cannot abort a round the
honest parties could finish: a message that fails raises a typed error and changes
nothing, and its sender is simply left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from protocols.paillier.config import PaillierRoundConfig
from protocols.paillier.messages import (
    DecryptionRequest,
    DecryptorNonce,
    NonceRequest,
    PaillierMessage,
    PartialDecryptionMessage,
    Upload,
    UploadRequest,
)
from protocols.paillier.verification import (
    check_contribution,
    check_nonce,
    check_round,
    execution_context,
)
from protocols.stages import Stage
from secagg.errors import (
    AlreadyFinalizedError,
    AuthenticationError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
    StageError,
    ThresholdNotMetError,
)
from secagg.primitives.paillier import EncryptedVector, PaillierAggregator, validate_ciphertext
from secagg.primitives.threshold_paillier import (
    PartialDecryption,
    combine_partial_decryptions,
    verify_partial_decryption,
)

__all__ = ["STAGES", "PaillierResult", "PaillierServer"]

STAGES: tuple[Stage, ...] = (Stage.ADVERTISE_KEYS, Stage.MASKED_INPUT, Stage.UNMASKING)
"""The stages of a Paillier round, in order: commit nonces, upload, decrypt."""

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class PaillierResult:
    """The server's result: ring sums (Z_(2^bits)), decoded aggregate and contributors."""

    ring_sum: U64 = field(repr=False)
    aggregate: F64 = field(repr=False)
    survivors: tuple[int, ...]


class PaillierServer:
    """The aggregator: relays nonces, verifies and multiplies uploads, combines partials.

    It never holds key material. The transport drives it like the masking server:
    :meth:`start` returns the nonce requests, :meth:`handle` processes one incoming message
    and returns what to forward (an accepted upload, to every committed decryptor),
    :meth:`advance` closes the current stage and returns the next stage's requests;
    :attr:`stage` is ``advertise_keys``, ``masked_input``, ``unmasking``, then ``None`` with
    :attr:`result` set.

    Everything is verified on receipt -- nonce signatures, upload context, signature and
    proof, partial-decryption proofs -- so that what it relays is valid: a message that fails
    raises a typed error and changes nothing, and its sender is simply left out (a client
    whose upload fails is dropped, not a reason to abort the round).
    """

    def __init__(self, config: PaillierRoundConfig) -> None:
        self.config = config
        self._aggregator = PaillierAggregator(
            config.public_key.paillier, config.packing, config.encoded_length
        )
        self._nonces: dict[int, DecryptorNonce] = {}
        self._execution: bytes | None = None
        self._contributors: list[int] = []
        self._partials: dict[int, PartialDecryption] = {}
        self._stage: Stage | None = Stage.ADVERTISE_KEYS
        self._started = False
        self._aggregate: EncryptedVector | None = None
        self._result: PaillierResult | None = None

    @property
    def stage(self) -> Stage | None:
        """The stage being run, ``None`` when the round is over."""
        return self._stage

    @property
    def result(self) -> PaillierResult:
        """The round's result (after the last :meth:`advance`)."""
        if self._result is None:
            raise StageError("the round has not finished")
        return self._result

    @property
    def execution_context(self) -> bytes | None:
        """This execution's context (once the nonces are in), see :func:`execution_context`."""
        return self._execution

    @property
    def committee(self) -> tuple[int, ...]:
        """Party ids of the decryptors whose nonces are in this execution's context."""
        return tuple(sorted(self._nonces)) if self._execution is not None else ()

    @property
    def contributors(self) -> tuple[int, ...]:
        """Clients whose uploads are in the aggregate, sorted."""
        return tuple(sorted(self._contributors))

    @property
    def partials_received(self) -> int:
        """Valid partial decryptions received so far."""
        return len(self._partials)

    def start(self) -> list[PaillierMessage]:
        """Open the round: one :class:`NonceRequest` per decryptor."""
        if self._started:
            raise StageError("the round has already started")
        self._started = True
        return [
            NonceRequest(round_id=self.config.round_id, recipient=party)
            for party in sorted(self.config.decryptor_parties)
        ]

    def handle(self, message: PaillierMessage) -> list[PaillierMessage]:
        """Process one incoming message (all-or-nothing; typed error on anything wrong).

        Raises:
            ReplayError: another round, a duplicate, a message after its stage closed, or an
                upload over another execution's context.
            StageError: a message the server does not accept, or one before its stage.
            AuthenticationError: a signature or a proof does not verify.
            MessageError: malformed, or from a party outside the round.
        """
        if isinstance(message, DecryptorNonce):
            check_round(self.config, message.round_id)
            if self._stage is not Stage.ADVERTISE_KEYS:
                raise ReplayError("nonce after the commitment stage closed")
            if message.party_id in self._nonces:
                raise ReplayError("this decryptor already committed a nonce")
            check_nonce(self.config, message)
            self._nonces[message.party_id] = message
            return []
        if isinstance(message, Upload):
            check_round(self.config, message.round_id)
            if self._stage is Stage.ADVERTISE_KEYS:
                raise StageError("upload before the round opened for uploads")
            if self._stage is not Stage.MASKED_INPUT:
                raise ReplayError("upload after the input stage closed")
            if message.context != self._execution:
                raise ReplayError("upload bound to another execution of the round")
            check_contribution(self.config, message)
            if message.client_id in self._contributors:
                raise ReplayError("this client already contributed in this round")
            self._aggregator.add(message.vector)
            self._contributors.append(message.client_id)
            return [message]
        if isinstance(message, PartialDecryptionMessage):
            check_round(self.config, message.round_id)
            self._accept_partial(message.partial)
            return []
        if isinstance(message, (NonceRequest, UploadRequest, DecryptionRequest)):
            raise StageError(f"the server does not accept {type(message).__name__}")
        raise MessageError(f"not a Paillier message: {type(message).__name__}")

    def _accept_partial(self, partial: PartialDecryption) -> None:
        if self._stage is not Stage.UNMASKING or self._aggregate is None:
            raise StageError("no decryption is in progress")
        if partial.index in self._partials:
            raise ReplayError("this decryptor already answered")
        if not 1 <= partial.index <= self.config.public_key.n_decryptors:
            raise MessageError("partial decryption from an unknown decryptor")
        if self.config.decryption_proofs:
            verify_partial_decryption(
                self.config.public_key, self._aggregate, partial, context=self.config.context
            )
        else:
            if len(partial.values) != len(self._aggregate.ciphertexts):
                raise MessageError("partial decryption has the wrong length")
            pk = self.config.public_key
            for value in partial.values:
                validate_ciphertext(value, pk.n, pk.n_squared)
        self._partials[partial.index] = partial

    def advance(self) -> list[PaillierMessage]:
        """Close the current stage; return the next stage's requests (none after the last).

        Raises:
            ThresholdNotMetError: too few nonces, contributions or partial decryptions.
        """
        if self._stage is Stage.ADVERTISE_KEYS:
            return list(self.open_uploads())
        if self._stage is Stage.MASKED_INPUT:
            return list(self.request_decryption())
        if self._stage is Stage.UNMASKING:
            self.finalize()
            return []
        raise StageError("the round is over")

    def open_uploads(self) -> list[UploadRequest]:
        """Close the commitments; send every client and committed decryptor the nonces.

        Raises:
            ThresholdNotMetError: fewer than ``t`` decryptors committed (no quorum could
                decrypt; nothing is sent).
            StageError: called twice.
        """
        if self._stage is not Stage.ADVERTISE_KEYS:
            raise StageError("uploads were already opened")
        threshold = self.config.public_key.threshold
        if len(self._nonces) < threshold:
            raise ThresholdNotMetError(
                f"{len(self._nonces)} decryptors committed, the threshold is {threshold}"
            )
        nonces = tuple(self._nonces[p] for p in sorted(self._nonces))
        self._execution = execution_context(self.config, nonces)
        self._stage = Stage.MASKED_INPUT
        recipients = sorted(set(self.config.roster) | set(self._nonces))
        return [
            UploadRequest(round_id=self.config.round_id, recipient=party, nonces=nonces)
            for party in recipients
        ]

    def request_decryption(self) -> list[DecryptionRequest]:
        """Close the uploads; ask every committed decryptor to decrypt the contributors' product.

        Raises:
            ThresholdNotMetError: fewer contributions than the minimum aggregate size (the
                decryptors would refuse anyway; nothing is sent).
            StageError: called out of order.
        """
        if self._stage is not Stage.MASKED_INPUT:
            raise StageError("decryption was already requested or uploads are not open")
        if len(self._contributors) < self.config.min_aggregate_size:
            raise ThresholdNotMetError(
                f"{len(self._contributors)} contributions, the minimum aggregate size is "
                f"{self.config.min_aggregate_size}"
            )
        self._stage = Stage.UNMASKING
        self._aggregate = self._aggregator.result()
        return [
            DecryptionRequest(
                round_id=self.config.round_id, recipient=party, contributors=self.contributors
            )
            for party in self.committee
        ]

    def finalize(self) -> F64:
        """Combine ``t`` partial decryptions and decode the sum of the contributors' updates.

        Raises:
            ThresholdNotMetError: fewer than ``t`` (valid) partial decryptions.
            ProtocolAbortError: the partials do not combine (only possible without proofs).
            AlreadyFinalizedError: called twice.
        """
        if self._stage is None:
            raise AlreadyFinalizedError("the round is already finalised")
        if self._stage is not Stage.UNMASKING or self._aggregate is None:
            raise StageError("decryption has not been requested")
        pk = self.config.public_key
        if len(self._partials) < pk.threshold:
            raise ThresholdNotMetError(
                f"{len(self._partials)} partial decryptions, the threshold is {pk.threshold}"
            )
        try:
            plaintexts = combine_partial_decryptions(
                pk,
                self._aggregate,
                [self._partials[i] for i in sorted(self._partials)],
                verify=False,  # proofs were checked on arrival when required
                context=self.config.context,
            )
        except AuthenticationError:
            raise ProtocolAbortError("partial decryptions are inconsistent") from None
        count = len(self._contributors)
        ring_sums = self.config.packing.unpack(
            plaintexts, self.config.encoded_length, summands=count
        )
        aggregate = np.asarray(self.config.encoder.decode_sum(ring_sums, count), dtype=np.float64)
        self._stage = None
        self._result = PaillierResult(
            ring_sum=ring_sums, aggregate=aggregate, survivors=self.contributors
        )
        return aggregate
