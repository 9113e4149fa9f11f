"""What the parties of a Paillier round sign and prove, and the checks every receiver makes.

Freshness: the server picks the round id, so it is not fresh by itself. Every execution of
a round therefore gets an *execution context* (:func:`execution_context`): the hash of the
key, the round and the fresh nonces that at least ``t`` decryptors signed for this
execution (:func:`nonce_transcript`). A client signs its contribution over that context
(:func:`contribution_transcript`) and binds its proof of plaintext knowledge to the same
context and to itself (:func:`plaintext_proof_context`); an honest decryptor accepts only
the context that holds the nonce it drew for the current execution. Uploads of an earlier
execution are thus refused even by a decryptor whose round log was lost.

The checks (:func:`check_nonce`, :func:`check_upload_request`, :func:`check_contribution`)
are the ones the client, the server and the decryptors share. Each raises a typed error
and never mutates anything, so a party that calls them before it commits a change stays
all-or-nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from protocols.paillier.config import PROTOCOL, PaillierRoundConfig
from protocols.paillier.messages import DecryptorNonce, Upload, UploadRequest
from secagg.errors import AuthenticationError, MessageError, ReplayError, ThresholdNotMetError
from secagg.primitives.paillier import verify_plaintext_knowledge
from secagg.primitives.signing import verify_signature
from secagg.primitives.transcript import canonical

__all__ = [
    "nonce_transcript",
    "execution_context",
    "plaintext_proof_context",
    "contribution_transcript",
    "check_round",
    "check_nonce",
    "check_upload_request",
    "check_contribution",
]


def nonce_transcript(config: PaillierRoundConfig, party_id: int, nonce: bytes) -> bytes:
    """What a decryptor signs with its fresh nonce: ``(protocol, key id, round, party, nonce)``."""
    return canonical(
        PROTOCOL, "decryptor-nonce", config.public_key.key_id, config.round_id, party_id, nonce
    )


def execution_context(config: PaillierRoundConfig, nonces: Sequence[DecryptorNonce]) -> bytes:
    """The fresh context of one execution of the round (32 bytes).

    ``SHA-256(protocol, key id, round, (party, nonce) for every committed decryptor)``, the
    nonces sorted by party id. Every upload is signed and proven over it, and an honest
    decryptor accepts only uploads over the context that holds the nonce it drew for this
    execution.
    """
    fields: list[bytes | str | int] = [
        PROTOCOL,
        "execution",
        config.public_key.key_id,
        config.round_id,
    ]
    for m in sorted(nonces, key=lambda m: m.party_id):
        fields += [m.party_id, m.nonce]
    return hashlib.sha256(canonical(*fields)).digest()


def plaintext_proof_context(config: PaillierRoundConfig, execution: bytes, client_id: int) -> bytes:
    """What a client's proof of plaintext knowledge is bound to: key, round, execution, sender."""
    return canonical(
        PROTOCOL, "plaintext", config.public_key.key_id, config.round_id, execution, client_id
    )


def contribution_transcript(
    config: PaillierRoundConfig, execution: bytes, client_id: int, digest: bytes
) -> bytes:
    """What a client signs: ``(protocol, key id, round, execution context, client id, digest)``."""
    return canonical(
        PROTOCOL,
        "contribution",
        config.public_key.key_id,
        config.round_id,
        execution,
        client_id,
        digest,
    )


def check_round(config: PaillierRoundConfig, round_id: int) -> None:
    """Refuse a message of another round.

    Raises:
        ReplayError: ``round_id`` is not the configured round.
    """
    if round_id != config.round_id:
        raise ReplayError(f"message of round {round_id} in round {config.round_id}")


def check_nonce(config: PaillierRoundConfig, message: DecryptorNonce) -> None:
    """One decryptor's signed nonce.

    Raises:
        ReplayError: a nonce of another round.
        MessageError: from a party that is not a decryptor of the round.
        AuthenticationError: (signed rounds) the signature does not verify.
    """
    check_round(config, message.round_id)
    keys = config.decryptor_identities
    if message.party_id not in keys:
        raise MessageError("nonce from a party that is not a decryptor of the round")
    if config.signed_contributions:
        verify_signature(
            keys[message.party_id],
            message.signature,
            nonce_transcript(config, message.party_id, message.nonce),
        )


def check_upload_request(config: PaillierRoundConfig, message: UploadRequest) -> bytes:
    """The checks every receiver of an upload request makes; returns the execution context.

    At least ``t`` distinct decryptors of the round, each nonce signed by its decryptor.

    Raises:
        ReplayError, MessageError, AuthenticationError: a nonce fails :func:`check_nonce`.
        ThresholdNotMetError: fewer than ``t`` decryptors committed to the execution.
    """
    check_round(config, message.round_id)
    for nonce in message.nonces:
        check_nonce(config, nonce)
    if len(message.nonces) < config.public_key.threshold:
        raise ThresholdNotMetError(
            f"{len(message.nonces)} decryptors committed to this execution, "
            f"the threshold is {config.public_key.threshold}"
        )
    return execution_context(config, message.nonces)


def check_contribution(
    config: PaillierRoundConfig, message: Upload, *, check_proof: bool = True
) -> None:
    """Validation of an upload shared by the server and the decryptors.

    The signature and the proof are checked over the context the upload names; the caller
    checks that this context is the execution's.

    Raises:
        ReplayError: an upload of another round.
        MessageError: from a client outside the roster, or a vector of the wrong length.
        AuthenticationError: the signature or (``check_proof``) the proof does not verify,
            or a required proof is missing.
    """
    check_round(config, message.round_id)
    if message.client_id not in config.roster:
        raise MessageError("contribution from a client outside the round's roster")
    vector = message.vector
    if vector.length != config.encoded_length:
        raise MessageError("contribution has the wrong vector length")
    if config.signed_contributions:
        verify_signature(
            config.roster[message.client_id],
            message.signature,
            contribution_transcript(config, message.context, message.client_id, vector.digest()),
        )
    if config.plaintext_proofs and check_proof:
        if message.proof is None:
            raise AuthenticationError()
        verify_plaintext_knowledge(
            config.public_key.paillier,
            vector,
            message.proof,
            context=plaintext_proof_context(config, message.context, message.client_id),
        )
