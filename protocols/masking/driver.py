"""In-process transport: run a whole round (``simulate``) or step through one (``RoundRunner``).

:func:`simulate` is the entry point that tests, the recipe, the DP and the attack code use.
It encodes each client's float vector, derives ``k`` and ``t`` from the threat model,
builds one :class:`~protocols.masking.server.SecAggServer` and one
:class:`~protocols.masking.client.SecAggClient` per client, runs every stage (passing each message
through the binary wire format unless ``wire=False``), removes the clients named in
``dropouts`` at the stage given, unmasks and decodes the sum.

:class:`RoundRunner` is the same transport exposed stage by stage, so that a test or an
attack can stop in the middle of a stage, inject extra (malformed, replayed,
cross-round) messages, inspect what every party received, or replace the honest server by
a scripted one that talks to the real clients (see :func:`setup_round`).

Randomness: ``seed`` drives only simulation choices (stochastic rounding of the default
encoder). Keys, mask seeds, Shamir polynomials and the graph order always come from the
operating system's CSPRNG.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from protocols.inputs import (
    DEFAULT_BITS,
    K,
    WireIds,
    client_weights,
    default_encoder,
    parse_dropouts,
    weight_encoder,
)
from protocols.masking.client import SecAggClient
from protocols.masking.config import Hardening, RoundConfig
from protocols.masking.graph import CommunicationGraph
from protocols.masking.messages import Message, decode_message, encode_message
from protocols.masking.server import AggregateResult, SecAggServer
from protocols.masking.transcripts import MODEL_HASH_BYTES
from protocols.options import ProtocolName
from protocols.result import SimulationResult
from protocols.runner import SteppedRound
from protocols.stages import Stage
from secagg.errors import CapacityError, InvalidParameterError, RoundRestartError
from secagg.primitives.encoding import FixedPointEncoder, VectorEncoder
from secagg.primitives.prg import PrgAlgorithm
from secagg.primitives.signing import IdentityKey
from threat_models.model import ThreatModel
from threat_models.parameters import GraphKind, ProtocolParameters, select_parameters

__all__ = ["RoundRunner", "setup_round", "simulate_masking"]

F64 = npt.NDArray[np.float64]


class RoundRunner(SteppedRound[Message, AggregateResult]):
    """Runs one round in process, stage by stage.

    Each stage goes through three steps: :meth:`deliver_requests` (the server's requests,
    still in :attr:`pending`, go to every live client; their replies wait in
    :attr:`outbox`), :meth:`deliver_replies` (the replies go to the server) and
    :meth:`close` (``server.advance()``, which queues the next stage's requests).
    :meth:`collect` does the first two, :meth:`step` all three, :meth:`run` every
    remaining stage. Between the steps the caller may inject messages with
    :meth:`send_to_server` / :meth:`send_to_client` and inspect :attr:`pending`,
    :attr:`requests`, :attr:`outbox`, :attr:`replies` and :attr:`history`. The stepping
    itself is :class:`~protocols.runner.SteppedRound`'s; this class adds the masking
    protocols' wire format.

    Args:
        server: a fresh server (not started).
        clients: id -> client.
        dropouts: stage -> ids that vanish at that stage (they neither process the
            stage's request nor send anything afterwards).
        wire: pass every message through :func:`encode_message` / :func:`decode_message`.
        record_view: keep every accepted server message in :attr:`server_view` (this
            keeps all masked inputs alive; turn off for large benchmarks).
        identities: the clients' identity keys (signed rounds), for scripted attacks.
        pki: the identity public keys the clients trust.
    """

    server: SecAggServer
    clients: dict[int, SecAggClient]

    def __init__(
        self,
        server: SecAggServer,
        clients: Mapping[int, SecAggClient],
        *,
        dropouts: Mapping[Stage, Iterable[int]] | None = None,
        wire: bool = True,
        record_view: bool = True,
        identities: Mapping[int, IdentityKey] | None = None,
        pki: Mapping[int, bytes] | None = None,
    ) -> None:
        self.identities = dict(identities or {})
        self.pki = dict(pki or {})
        self.stages = server.config.stages
        super().__init__(server, clients, dropouts=dropouts, wire=wire, record_view=record_view)

    def _by_recipient(self, messages: Iterable[Message]) -> dict[int, Message]:
        return {m.recipient: m for m in messages}

    def _encode(self, message: Message) -> bytes:
        return encode_message(message)

    def _decode(self, data: bytes | bytearray | memoryview) -> Message:
        return decode_message(data)


def _model_hash_for(model_hash: bytes | Mapping[int, bytes], cid: int) -> bytes:
    value = model_hash[cid] if isinstance(model_hash, Mapping) else model_hash
    if not isinstance(value, bytes) or len(value) != MODEL_HASH_BYTES:
        raise InvalidParameterError("model hashes are 32 bytes")
    return value


def setup_round(
    inputs: Mapping[int, npt.ArrayLike],
    *,
    bits: int,
    protocol: str | ProtocolName = ProtocolName.SECAGG_PLUS,
    threat_model: ThreatModel | None = None,
    parameters: ProtocolParameters | None = None,
    round_id: int | None = None,
    hardening: Hardening | Mapping[int, Hardening] | None = None,
    model_hash: bytes | Mapping[int, bytes] = bytes(MODEL_HASH_BYTES),
    dropouts: Mapping[str | Stage, Iterable[int]] | None = None,
    graph: CommunicationGraph | None = None,
    prg: PrgAlgorithm = PrgAlgorithm.AES_256_CTR,
    wire: bool = True,
    record_view: bool = True,
    identities: Mapping[int, IdentityKey] | None = None,
) -> RoundRunner:
    """Build server, clients (and identity keys / PKI when signed) for one round.

    Args:
        inputs: client id -> encoded input (elements of Z_(2^bits)); all the same length.
        bits: ring exponent.
        protocol: ``"secagg"`` (complete graph) or ``"secagg+"`` (derived graph).
        threat_model: default :class:`ThreatModel()` (malicious server).
        parameters: explicit ``k``/``t`` (e.g. from :func:`check_parameters`) instead of
            deriving them.
        round_id: default a fresh random 63-bit id.
        hardening: for all clients, or per client id (default: full hardening).
        model_hash: the global-model hash, for all clients or per client.
        dropouts: stage name -> client ids that vanish at that stage.
        graph: the communication graph against a curious server (default: drawn by the
            server); against a server that may lie the clients derive it from the graph seed.
        prg: mask expansion cipher.
        wire: route messages through the binary encoding.
        record_view: keep the server's view.
        identities: long-term identity keys to reuse (signed rounds), e.g. across the
            rounds of one training run; default fresh keys.

    Returns:
        A :class:`RoundRunner`; its ``clients``, ``server``, ``identities`` and ``pki``
        attributes expose the parties, e.g. for a scripted malicious server.
    """
    name = ProtocolName(protocol)
    if name is ProtocolName.PAILLIER:
        raise InvalidParameterError(
            "setup_round builds masking rounds; Paillier has its own driver"
        )
    ids = sorted(inputs)
    tm = threat_model if threat_model is not None else ThreatModel()
    if parameters is None:
        graph_kind = GraphKind.COMPLETE if name is ProtocolName.SECAGG else GraphKind.HARARY
        parameters = select_parameters(len(ids), tm, graph=graph_kind)
    elif parameters.num_clients != len(ids):
        raise InvalidParameterError(
            f"parameters are for {parameters.num_clients} clients, got {len(ids)}"
        )
    lengths = {np.asarray(v).shape[0] if np.asarray(v).ndim == 1 else -1 for v in inputs.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise InvalidParameterError("every input must be a 1-D vector of the same length")
    length = lengths.pop()
    rid = round_id if round_id is not None else secrets.randbits(63)
    config = RoundConfig(
        round_id=rid, parameters=parameters, bits=bits, vector_length=length, prg=prg
    )
    keys: dict[int, IdentityKey] = {}
    pki: dict[int, bytes] = {}
    if config.signed:
        given = identities or {}
        keys = {cid: given[cid] if cid in given else IdentityKey.generate() for cid in ids}
        pki = {cid: key.public_bytes for cid, key in keys.items()}
    clients = {}
    for cid in ids:
        hard = (
            hardening.get(cid, Hardening())
            if isinstance(hardening, Mapping)
            else (hardening or Hardening())
        )
        clients[cid] = SecAggClient(
            config,
            cid,
            input_vector=inputs[cid],
            identity=keys.get(cid),
            pki=pki if config.signed else None,
            model_hash=_model_hash_for(model_hash, cid),
            hardening=hard,
        )
    hardenings = (
        list(hardening.values()) if isinstance(hardening, Mapping) else [hardening or Hardening()]
    )
    hashes = set(model_hash.values()) if isinstance(model_hash, Mapping) else {model_hash}
    # a baseline whose clients sign weaker transcripts, or a server that sent several models,
    # cannot be checked by an honest server's verification: it relays unverified
    verifiable = len(hashes) == 1 and all(
        h.round_bound_signatures and h.model_bound_signatures and h.fresh_signatures
        for h in hardenings
    )
    server_hash = next(iter(hashes)) if len(hashes) == 1 else bytes(MODEL_HASH_BYTES)
    server = SecAggServer(
        config,
        ids,
        graph=graph,
        pki=pki if config.signed else None,
        model_hash=_model_hash_for(server_hash, ids[0]),
        verify_relayed=verifiable,
    )
    runner = RoundRunner(
        server,
        clients,
        dropouts=parse_dropouts(dropouts, stages=config.stages, cohort=ids),
        wire=wire,
        record_view=record_view,
        identities=keys,
        pki=pki,
    )
    return runner


def simulate_masking(
    updates: Mapping[K, npt.ArrayLike],
    *,
    protocol: ProtocolName | str = ProtocolName.SECAGG_PLUS,
    dropouts: Mapping[str | Stage, Iterable[K]] | None = None,
    seed: int | None = None,
    threat_model: ThreatModel | None = None,
    encoder: VectorEncoder | None = None,
    bits: int = DEFAULT_BITS,
    weights: Mapping[K, float] | None = None,
    max_weight: float | None = None,
    round_id: int | None = None,
    wire: bool = True,
    record_view: bool = True,
    hardening: Hardening | Mapping[K, Hardening] | None = None,
    parameters: ProtocolParameters | None = None,
    model_hash: bytes | Mapping[K, bytes] | None = None,
    graph: CommunicationGraph | None = None,
    prg: PrgAlgorithm | None = None,
) -> SimulationResult:
    """Run one secure aggregation round in process and decode the survivors' sum.

    Args:
        updates: client id -> 1-D float vector, all the same length. Ids are non-negative
            ints (0 included) or strings (:class:`~protocols.inputs.WireIds` maps them to the
            protocol's ids;
            ``server_view`` and ``details`` use those, the result's survivors use yours).
        protocol: ``"secagg+"`` (default: graph and threshold derived from the threat
            model) or ``"secagg"`` (complete graph).
        dropouts: stage name (``Stage`` value) -> client ids that vanish at that stage.
        seed: makes the simulation's own randomness reproducible (stochastic rounding
            of the default encoder); never any cryptographic secret.
        threat_model, encoder, bits, weights, max_weight, round_id, wire, record_view,
            hardening, parameters, model_hash, graph, prg: as documented on
            :func:`protocols.simulate`.

    A client that withholds its graph-seed contribution makes the server start a new round
    without it (fresh round id; ``details["restarts"]`` counts them), as a deployment's
    server would.

    Returns:
        :class:`SimulationResult`.

    Raises:
        ThresholdNotMetError: too few clients remain (the round aborts; nothing revealed).
        InvalidParameterError: bad arguments or unknown option.
        InfeasibleThreatModelError: no parameters satisfy the threat model.
        SecAggError: any other protocol failure.
    """
    name = ProtocolName.parse(protocol)
    if not isinstance(updates, Mapping) or not updates:
        raise InvalidParameterError("updates must be a non-empty mapping of client id -> vector")
    numbering = WireIds.of(updates)
    by_wire = numbering.keyed(updates)
    weights_given = numbering.keyed(weights) if weights is not None else None
    wire_hardening = numbering.per_client(hardening)
    wire_model_hash = numbering.per_client(model_hash)
    wire_dropouts = {
        stage: [numbering.wire(c) for c in members] for stage, members in (dropouts or {}).items()
    }
    ids = sorted(by_wire)
    vectors = {cid: np.asarray(by_wire[cid], dtype=np.float64) for cid in ids}
    shapes = {v.shape for v in vectors.values()}
    if len(shapes) != 1 or next(iter(shapes)).__len__() != 1:
        raise InvalidParameterError("every update must be a 1-D vector of the same length")
    n = len(ids)

    checked_weights: dict[int, float] | None = None
    if weights_given is not None:
        checked_weights = client_weights(weights_given, ids)
        vectors = {cid: vectors[cid] * checked_weights[cid] for cid in ids}

    rng = np.random.default_rng(seed)
    if encoder is None:
        encoder = default_encoder(vectors.values(), bits=bits, max_clients=n)
    if encoder.max_clients < n:
        raise CapacityError(
            f"the encoder sums at most {encoder.max_clients} clients, the cohort has {n}"
        )
    bits = encoder.bits
    d = next(iter(vectors.values())).shape[0]
    length = encoder.encoded_length(d)

    # rings of at most 32 bits take their inputs as 32-bit words: the client's cheapest copy
    narrow = bits <= 32

    def encode(values: npt.NDArray[np.float64]) -> npt.NDArray[np.unsignedinteger]:
        if isinstance(encoder, FixedPointEncoder):
            if narrow:
                return encoder.encode(values, rng=rng, dtype=np.uint32)
            return encoder.encode(values, rng=rng)
        return np.asarray(encoder.encode(values), dtype=np.uint64)

    weight_coder: FixedPointEncoder | None = None
    if checked_weights is not None:
        weight_coder = weight_encoder(
            checked_weights, max_weight=max_weight, bits=bits, max_clients=n
        )

    inputs: dict[int, npt.NDArray[np.unsignedinteger]] = {}
    for cid in ids:
        encoded = encode(vectors[cid])
        if encoded.shape != (length,):
            raise InvalidParameterError(
                f"the encoder returned {encoded.shape}, expected ({length},)"
            )
        if weight_coder is not None and checked_weights is not None:
            weight_word = (
                weight_coder.encode([checked_weights[cid]], rng=rng, dtype=np.uint32)
                if narrow
                else weight_coder.encode([checked_weights[cid]], rng=rng)
            )
            encoded = np.concatenate([encoded, weight_word.astype(encoded.dtype)])
        inputs[cid] = encoded

    excluded: set[int] = set()
    restarts = 0
    while True:
        live = [cid for cid in ids if cid not in excluded]
        runner = setup_round(
            {cid: inputs[cid] for cid in live},
            bits=bits,
            protocol=name,
            threat_model=threat_model,
            parameters=parameters,
            # a restarted round is a new execution: it needs a fresh round id
            round_id=round_id if not restarts else None,
            hardening=wire_hardening,
            model_hash=wire_model_hash if wire_model_hash is not None else bytes(MODEL_HASH_BYTES),
            dropouts={
                stage: [c for c in members if c not in excluded]
                for stage, members in wire_dropouts.items()
                if not restarts or stage not in (Stage.GRAPH_SEED, Stage.GRAPH_SEED.value)
            },
            graph=graph,
            prg=prg if prg is not None else PrgAlgorithm.AES_256_CTR,
            wire=wire,
            record_view=record_view,
        )
        try:
            outcome = runner.run()
            break
        except RoundRestartError as exc:
            if parameters is not None or not exc.excluded & set(live):
                raise
            excluded |= exc.excluded
            restarts += 1
    survivors = tuple(numbering.from_wire[c] for c in outcome.survivors)
    # the protocol numbers the cohort in the caller's order: sorted wire ids, sorted user ids
    summed = set(outcome.survivors)
    dropped = tuple(numbering.from_wire[c] for c in ids if c not in summed)
    ring_sum = outcome.ring_sum
    aggregate = np.asarray(encoder.decode_sum(ring_sum[:length], len(survivors)), dtype=np.float64)
    weight_sum = None
    if weight_coder is not None:
        weight_sum = float(weight_coder.decode_sum(ring_sum[length:], len(survivors))[0])
    params = runner.server.config.parameters
    return SimulationResult(
        aggregate=aggregate,
        survivors=survivors,
        server_view=tuple(runner.server_view),
        protocol=name.value,
        dropped=dropped,
        weight_sum=weight_sum,
        parameters=params,
        details={
            "round_id": runner.server.config.round_id,
            "degree": params.degree,
            "threshold": params.threshold,
            "graph": params.graph.value,
            "server": params.server.value,
            "bits": bits,
            "stages": tuple(s.value for s in runner.stages),
            "restarts": restarts,
            "wire_ids": dict(numbering.to_wire),
        },
    )
