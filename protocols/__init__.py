"""Secure aggregation protocols: pure state machines, wire messages and in-process drivers.

Running a round
---------------
>>> import numpy as np
>>> from protocols import simulate
>>> updates = {cid: np.full(4, 0.25 * cid) for cid in range(1, 7)}
>>> result = simulate(updates, protocol="secagg+", dropouts={"masked_input": [3]})
>>> result.survivors
(1, 2, 4, 5, 6)
>>> bool(np.allclose(result.aggregate, sum(updates[c] for c in result.survivors), atol=1e-6))
True

``simulate(updates, *, protocol="secagg+", dropouts=None, seed=None, ...)`` returns a
:class:`SimulationResult` (``.aggregate``, ``.survivors``, ``.server_view``, ``.mean``,
``.weight_sum``); rounds that cannot finish raise
:class:`~secagg.errors.ThresholdNotMetError`. Every option (``threat_model``, ``encoder`` —
any :class:`~secagg.primitives.encoding.VectorEncoder` —, ``weights``, ``hardening``,
``model_hash``, ``wire``, ...) is a typed keyword documented on
:func:`~protocols.simulate.simulate`; an unknown one is an
:class:`~secagg.errors.InvalidParameterError`. ``protocol="paillier"`` runs
:func:`protocols.paillier.driver.run_round`.

The parties
-----------
:class:`SecAggClient` and :class:`SecAggServer` (SecAgg with the complete graph, SecAgg+
with a Harary graph: one implementation) exchange the frozen messages of
:mod:`protocols.masking.messages` through ``handle(message) -> list[message]``; the server
also has ``start()`` and ``advance()`` (the transport owns the clock). Stages:
:class:`Stage` (``advertise_keys``, ``graph_seed`` and ``consistency_check`` — against a
server that may lie only —, ``share_keys``, ``masked_input``, ``unmasking``).
:class:`RoundRunner` steps a round stage by stage; :func:`setup_round` builds one from
already encoded inputs.

Driving the real clients with an adversarial server
---------------------------------------------------
A scripted malicious server replaces :class:`SecAggServer` and talks to the genuine
clients::

    runner = setup_round(inputs, bits=32, protocol="secagg", threat_model=ThreatModel())
    clients, pki, identities = runner.clients, runner.pki, runner.identities
    # stage by stage: run the honest server until the point of attack ...
    runner.step(); runner.step(); runner.collect()        # advertise, share, masked input
    masked = runner.replies                               # what the server holds so far
    # ... then forge requests and hand them to the clients directly:
    victim_peer = clients[2]
    forged = UnmaskRequest(round_id=runner.server.config.round_id, recipient=2,
                           survivors=(...), dropped=(...))
    victim_peer.handle(forged)   # hardened: raises ProtocolAbortError, reveals nothing

Every attack of the evaluation suite maps to a check that can be switched off to build
the *unhardened baseline* (only by explicit opt-in): pass
``hardening=Hardening.unhardened()`` (or a :class:`Hardening` with single flags off) to
:func:`simulate` / :func:`setup_round` / :class:`SecAggClient`:

| attack | check (``Hardening`` flag) |
| --- | --- |
| client listed both dropped and surviving | ``check_survivor_lists`` |
| dropouts faked below the minimum aggregate size | ``check_survivor_count`` |
| public keys substituted by the server | ``authenticate_keys`` (malicious variant) |
| signed keys replayed from an older round | ``round_bound_signatures`` |
| different global models to different clients | ``model_bound_signatures`` (``model_hash``) |
| different survivor sets to different clients | ``consistency_check`` (lying server) |
| survivor list padded with ids that gave nothing | ``verified_survivors`` (lying server) |
| victim given only ``t`` peers' shares | ``attest_masking_sets`` (lying server) |
| graph chosen by the server (SecAgg+) | ``derive_graph`` (lying server) |
| signatures replayed from another execution | ``fresh_signatures`` (lying server) |
| one round id executed twice | ``refuse_round_reuse`` (identity's round log) |

Message-level replays (an old round's message, a stage already passed) are always
refused (:class:`~secagg.errors.ReplayError`); they are not a hardening option. The
semi-malicious :class:`~threat_models.model.ThreatModel` needs no PKI (clients sign with
per-round keys the server relays faithfully by assumption); the malicious one needs the
identity keys of a PKI. :func:`advertise_transcript` and :func:`consistency_transcript` give
the exact bytes clients sign, so a scripted server with a stolen identity key can forge
valid signatures.
"""

from __future__ import annotations

from protocols.inputs import parse_dropouts, wire_ids
from protocols.masking.client import SecAggClient, ShareKind
from protocols.masking.codec import MessageType
from protocols.masking.config import Hardening, RoundConfig, round_stages
from protocols.masking.driver import RoundRunner, setup_round
from protocols.masking.graph import CommunicationGraph, complete_graph, harary_graph
from protocols.masking.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyBroadcast,
    MaskedInput,
    Message,
    RoundStart,
    SeedRequest,
    SeedReveal,
    ShareForward,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
    decode_message,
    encode_message,
)
from protocols.masking.records import (
    SERVER_ID,
    Attestation,
    EncryptedShare,
    PeerKeys,
    RevealedShare,
    SeedEntry,
    SurvivorSignature,
)
from protocols.masking.server import AggregateResult, SecAggServer
from protocols.masking.transcripts import advertise_transcript, consistency_transcript
from protocols.options import ProtocolName
from protocols.result import SimulationResult
from protocols.round_log import RoundLog, identity_log
from protocols.simulate import simulate
from protocols.stages import Stage
from secagg._moved import install as _install_moved_paths

__all__ = [
    "simulate",
    "SimulationResult",
    "ProtocolName",
    "Stage",
    "SecAggClient",
    "SecAggServer",
    "AggregateResult",
    "RoundConfig",
    "Hardening",
    "round_stages",
    "RoundRunner",
    "setup_round",
    "parse_dropouts",
    "wire_ids",
    "RoundLog",
    "identity_log",
    "ShareKind",
    "advertise_transcript",
    "consistency_transcript",
    "CommunicationGraph",
    "complete_graph",
    "harary_graph",
    "SERVER_ID",
    "Message",
    "MessageType",
    "RoundStart",
    "AdvertiseKeys",
    "SeedEntry",
    "SeedRequest",
    "SeedReveal",
    "Attestation",
    "PeerKeys",
    "KeyBroadcast",
    "EncryptedShare",
    "ShareKeys",
    "ShareForward",
    "MaskedInput",
    "ConsistencyRequest",
    "ConsistencySignature",
    "SurvivorSignature",
    "UnmaskRequest",
    "RevealedShare",
    "UnmaskResponse",
    "encode_message",
    "decode_message",
]

_install_moved_paths()
