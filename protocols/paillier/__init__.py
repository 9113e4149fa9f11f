"""Paillier aggregation with threshold decryption: clients, server and decryptors as state machines.

The threat model and the parameters are in :mod:`threat_models.paillier`. One execution of a
round has three stages:

1. ``advertise_keys``: every decryptor commits a fresh nonce, signed with its identity key
   and claimed in its round log (:mod:`protocols.paillier.decryptor`); with fewer than
   ``t`` valid nonces the round aborts.
2. ``masked_input``: the hash of key, round and nonces is the execution's context
   (:mod:`protocols.paillier.verification`). Each client encrypts its quantised, packed
   update under the threshold key, proves that it knows the plaintexts and signs the
   upload over that context (:mod:`protocols.paillier.client`). The server verifies it,
   multiplies it into its aggregate and forwards it to every committed decryptor, which
   verifies it again and keeps its own product (:mod:`protocols.paillier.server`).
3. ``unmasking``: a decryptor partially decrypts its own product once, only for exactly
   the contributions it received itself and at least ``min_aggregate_size`` of them; the
   server combines ``t`` partials and decodes the sum.

What each server class gets, and what it needs:

* Against every class: the server learns the sum of at least ``min_aggregate_size``
  contributions of one execution, nothing about a single one, provided that the key's
  maker is honest (the dealer erased the factorisation, or the committee that generated it
  among themselves, :mod:`protocols.paillier.keygen`, has an honest majority), that fewer
  than ``t`` decryptors collude (``t > c``, with ``c`` counted by
  :meth:`threat_models.model.ThreatModel.max_colluders`) and that the public key reached
  the clients authenticated.
* ``SEMI_MALICIOUS`` and ``MALICIOUS`` (a server that lies about contributions, re-runs a
  round id, forwards different uploads to different decryptors, replays old messages,
  colludes with ``C`` clients and ``c`` decryptors) additionally need: a PKI for the
  clients' and the decryptors' identity keys (nonces and uploads are signed); quorums that
  intersect in an honest decryptor (``2t - l > c``); and round logs that persist across
  restarts, kept where the party's keys are (:meth:`protocols.round_log.RoundLog.at`), so
  that no party takes part in two executions of one round.
* ``CURIOUS`` follows the protocol: no signatures or proofs (the nonces, contexts and round
  logs are still used).

A bad message raises a typed error (:class:`~secagg.errors.MessageError` for malformed
ones, also at construction of a message object) and changes no state; its sender is left
out and the round goes on (:mod:`protocols.paillier.driver`). The package mirrors
:mod:`protocols.masking`: ``config``, ``messages`` (the strict wire codec, magic
``"SAPM"``), ``client``, ``server``, ``driver``, plus what Paillier has of its own:
``decryptor``, ``party``, ``runner``, ``verification``, ``encoding`` and the distributed key
generation (``keygen``, ``keygen_party``, ``keygen_server``, ``keygen_messages``).
Every public name is re-exported here.
"""

from __future__ import annotations

import functools
import warnings

from protocols.inputs import client_weights as client_weights
from protocols.inputs import default_encoder as default_encoder
from protocols.inputs import weight_encoder as weight_encoder
from protocols.paillier.client import PaillierClient
from protocols.paillier.config import PaillierHardening, PaillierRoundConfig
from protocols.paillier.decryptor import PaillierDecryptor
from protocols.paillier.driver import (
    PaillierRoundOutcome,
    PaillierSetup,
    run_round,
    setup_paillier_round,
    simulation_result,
)
from protocols.paillier.encoding import WeightedEncoder
from protocols.paillier.messages import (
    CONTEXT_BYTES,
    NONCE_BYTES,
    DecryptionRequest,
    DecryptorNonce,
    MessageType,
    NonceRequest,
    PaillierMessage,
    PartialDecryptionMessage,
    Upload,
    UploadRequest,
    decode_message,
    encode_message,
)
from protocols.paillier.party import PaillierParty
from protocols.paillier.runner import PaillierRoundRunner
from protocols.paillier.server import PaillierResult, PaillierServer
from protocols.paillier.verification import (
    contribution_transcript,
    execution_context,
    nonce_transcript,
    plaintext_proof_context,
)

__all__ = [
    "PaillierRoundConfig",
    "MessageType",
    "Upload",
    "DecryptionRequest",
    "PartialDecryptionMessage",
    "PaillierMessage",
    "encode_message",
    "decode_message",
    "contribution_transcript",
    "plaintext_proof_context",
    "PaillierClient",
    "PaillierServer",
    "PaillierDecryptor",
    "PaillierHardening",
    "PaillierRoundOutcome",
    "PaillierRoundRunner",
    "PaillierParty",
    "PaillierResult",
    "PaillierSetup",
    "UploadRequest",
    "NonceRequest",
    "DecryptorNonce",
    "NONCE_BYTES",
    "CONTEXT_BYTES",
    "execution_context",
    "nonce_transcript",
    "setup_paillier_round",
    "WeightedEncoder",
    "run_round",
    "simulation_result",
]


def __getattr__(name: str) -> object:
    # ``simulate_paillier`` (0.1) is ``protocols.simulate(..., protocol="paillier")``
    if name == "simulate_paillier":
        # lazy: protocols.simulate imports this package's modules
        from protocols.simulate import simulate

        warnings.warn(
            "protocols.paillier.simulate_paillier is deprecated (removed in 0.3): "
            "use protocols.simulate(..., protocol='paillier')",
            DeprecationWarning,
            stacklevel=2,
        )
        return functools.partial(simulate, protocol="paillier")
    raise AttributeError(f"module 'protocols.paillier' has no attribute {name!r}")
