"""In-process transport: run a whole round (``simulate``) or step through one (``RoundRunner``).

:func:`simulate` is the entry point that tests, the recipe, the DP and the attack code use.
It encodes each client's float vector, derives ``k`` and ``t`` from the threat model,
builds one :class:`~protocols.server.SecAggServer` and one
:class:`~protocols.client.SecAggClient` per client, runs every stage (passing each message
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

import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from protocols.client import MODEL_HASH_BYTES, SecAggClient
from protocols.config import Hardening, RoundConfig
from protocols.graph import MAX_CLIENT_ID, CommunicationGraph
from protocols.messages import Message, Stage, decode_message, encode_message
from protocols.runner import SteppedRound
from protocols.server import AggregateResult, SecAggServer
from secagg.encoding import FixedPointEncoder, VectorEncoder
from secagg.errors import CapacityError, InvalidParameterError, RoundRestartError
from secagg.prg import PrgAlgorithm
from secagg.signing import IdentityKey
from threat_models.model import ThreatModel
from threat_models.parameters import (
    GraphKind,
    ProtocolParameters,
    select_parameters,
)

__all__ = [
    "ProtocolName",
    "SimulationResult",
    "RoundRunner",
    "setup_round",
    "simulate",
    "parse_dropouts",
    "wire_ids",
    "DEFAULT_BITS",
]

DEFAULT_BITS = 32
F64 = npt.NDArray[np.float64]


class ProtocolName(str, Enum):
    """Protocols :func:`simulate` can run."""

    SECAGG = "secagg"
    SECAGG_PLUS = "secagg+"
    PAILLIER = "paillier"


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Outcome of one simulated round (shared by every protocol, Paillier included).

    Attributes:
        aggregate: the decoded sum of the survivors' inputs (float64, the input length);
            with weights, the sum of ``w_u * x_u``.
        survivors: sorted ids whose inputs are in the sum.
        server_view: every message the server accepted, in arrival order.
        protocol: the protocol's name (:class:`ProtocolName` value).
        dropped: sorted ids whose inputs are not in the sum.
        weight_sum: with weights, the decoded sum of the survivors' weights (the only
            thing the server learns about the weights); otherwise ``None``.
        parameters: the protocol parameters used (``ProtocolParameters`` for the masking
            protocols; protocol-specific otherwise).
        details: protocol-specific extras (degree, threshold, round id, ...).
    """

    aggregate: F64 = field(repr=False)
    survivors: tuple[int, ...]
    server_view: tuple[Any, ...] = field(repr=False)
    protocol: str = ""
    dropped: tuple[int, ...] = ()
    weight_sum: float | None = None
    parameters: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> F64:
        """``aggregate / weight_sum`` with weights, else ``aggregate / len(survivors)``."""
        denominator = self.weight_sum if self.weight_sum is not None else float(len(self.survivors))
        if not denominator:
            raise InvalidParameterError("the mean of an empty aggregate is undefined")
        return np.asarray(self.aggregate, dtype=np.float64) / denominator


def parse_dropouts(
    dropouts: Mapping[str | Stage, Iterable[int]] | None, *, stages: Iterable[Stage], cohort: Iterable[int]
) -> dict[Stage, frozenset[int]]:
    """Validate a ``stage name -> client ids`` mapping.

    Raises:
        InvalidParameterError: an unknown stage, a stage the round does not have, an id
            outside the cohort, or an id listed at two stages.
    """
    allowed = tuple(stages)
    members = frozenset(cohort)
    out: dict[Stage, frozenset[int]] = {}
    seen: set[int] = set()
    for key, ids in (dropouts or {}).items():
        try:
            stage = Stage(key)
        except ValueError:
            raise InvalidParameterError(
                f"unknown stage {key!r}; stages: {[s.value for s in Stage]}"
            ) from None
        if stage not in allowed:
            raise InvalidParameterError(
                f"this round has no stage {stage.value!r}; its stages are {[s.value for s in allowed]}"
            )
        group = frozenset(int(i) for i in ids)
        if not group <= members:
            raise InvalidParameterError(f"dropouts name clients outside the cohort: {sorted(group - members)}")
        if group & seen:
            raise InvalidParameterError(f"clients listed at two stages: {sorted(group & seen)}")
        seen |= group
        out[stage] = group
    return out


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
        raise InvalidParameterError("setup_round builds masking rounds; Paillier has its own driver")
    ids = sorted(inputs)
    tm = threat_model if threat_model is not None else ThreatModel()
    if parameters is None:
        graph_kind = GraphKind.COMPLETE if name is ProtocolName.SECAGG else GraphKind.HARARY
        parameters = select_parameters(len(ids), tm, graph=graph_kind)
    elif parameters.num_clients != len(ids):
        raise InvalidParameterError(f"parameters are for {parameters.num_clients} clients, got {len(ids)}")
    lengths = {np.asarray(v).shape[0] if np.asarray(v).ndim == 1 else -1 for v in inputs.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise InvalidParameterError("every input must be a 1-D vector of the same length")
    length = lengths.pop()
    rid = round_id if round_id is not None else secrets.randbits(63)
    config = RoundConfig(round_id=rid, parameters=parameters, bits=bits, vector_length=length, prg=prg)
    keys: dict[int, IdentityKey] = {}
    pki: dict[int, bytes] = {}
    if config.signed:
        given = identities or {}
        keys = {cid: given[cid] if cid in given else IdentityKey.generate() for cid in ids}
        pki = {cid: key.public_bytes for cid, key in keys.items()}
    clients = {}
    for cid in ids:
        hard = hardening.get(cid, Hardening()) if isinstance(hardening, Mapping) else (hardening or Hardening())
        clients[cid] = SecAggClient(
            config,
            cid,
            input_vector=inputs[cid],
            identity=keys.get(cid),
            pki=pki if config.signed else None,
            model_hash=_model_hash_for(model_hash, cid),
            hardening=hard,
        )
    hardenings = list(hardening.values()) if isinstance(hardening, Mapping) else [hardening or Hardening()]
    hashes = set(model_hash.values()) if isinstance(model_hash, Mapping) else {model_hash}
    # a baseline whose clients sign weaker transcripts, or a server that sent several models,
    # cannot be checked by an honest server's verification: it relays unverified
    verifiable = len(hashes) == 1 and all(
        h.round_bound_signatures and h.model_bound_signatures and h.fresh_signatures for h in hardenings
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


_CONFIG_KEYS = {
    "threat_model",
    "encoder",
    "bits",
    "weights",
    "max_weight",
    "round_id",
    "parameters",
    "hardening",
    "model_hash",
    "graph",
    "prg",
    "wire",
    "record_view",
}


def wire_ids(updates: Mapping[Any, object]) -> dict[Any, int]:
    """User client id -> the protocol's id (also its Shamir evaluation point).

    Positive ints are kept; non-negative ints that include 0 (as Flower's ``partition-id``)
    are shifted by one; strings are numbered 1, 2, ... in sorted order.

    Raises:
        InvalidParameterError: ids of mixed or unsupported types, or out of range.
    """
    keys = list(updates)
    if keys and all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
        if any(k < 0 or k >= MAX_CLIENT_ID for k in keys):
            raise InvalidParameterError(f"integer client ids must lie in [0, 2^63 - 2], got {min(keys)}..{max(keys)}")
        shift = 1 if min(keys) == 0 else 0
        return {k: k + shift for k in keys}
    if keys and all(isinstance(k, str) for k in keys):
        return {k: i + 1 for i, k in enumerate(sorted(keys))}
    raise InvalidParameterError("client ids must be all non-negative ints or all strings")


def _member(to_wire: Mapping[Any, int], cid: object) -> object:
    if cid not in to_wire:
        raise InvalidParameterError(f"dropout id {cid!r} is not in the cohort")
    return cid


def _translate_config(config: Mapping[str, Any], to_wire: Mapping[Any, int]) -> dict[str, Any]:
    """The per-client options keyed by protocol ids."""
    out = dict(config)
    for key in ("weights", "hardening", "model_hash"):
        value = out.get(key)
        if isinstance(value, Mapping):
            out[key] = {to_wire[_member(to_wire, c)]: v for c, v in value.items()}
    return out


def _pow2_ceiling(x: float) -> float:
    """The smallest power of two ``>= x`` (1.0 for ``x <= 0``): the default encoder bound."""
    return 1.0 if x <= 0 else float(2.0 ** math.ceil(math.log2(x)))


def default_encoder(
    vectors: Iterable[npt.NDArray[np.float64]], *, bits: int, max_clients: int
) -> FixedPointEncoder:
    """The encoder a simulated round uses when none is given.

    A :class:`~secagg.encoding.FixedPointEncoder` of ``bits`` bits on ``[-B, B]``, ``B``
    the smallest power of two bounding every coordinate of ``vectors`` (the inputs as
    masked or encrypted, so already weighted), summing up to ``max_clients`` clients.
    A simulation convenience: a deployment fixes ``B`` in advance.
    """
    bound = _pow2_ceiling(max((float(np.max(np.abs(v), initial=0.0)) for v in vectors), default=0.0))
    return FixedPointEncoder.symmetric(bound, bits=bits, max_clients=max_clients)


def client_weights(weights: Mapping[int, float], ids: Iterable[int]) -> dict[int, float]:
    """Each client's weight for a weighted round, checked.

    Args:
        weights: client id -> weight.
        ids: the cohort; every id needs a weight.

    Returns:
        client id -> weight as a float, in the order of ``ids``.

    Raises:
        InvalidParameterError: a client has no weight, or a weight is not a finite,
            non-negative number.
    """
    out: dict[int, float] = {}
    for cid in ids:
        if cid not in weights:
            raise InvalidParameterError(f"no weight for client {cid}")
        try:
            w = float(weights[cid])
        except (TypeError, ValueError):
            raise InvalidParameterError(f"weights must be finite and non-negative, got {weights[cid]!r}") from None
        if not (math.isfinite(w) and w >= 0):
            raise InvalidParameterError(f"weights must be finite and non-negative, got {w}")
        out[cid] = w
    return out


def weight_encoder(
    weights: Mapping[int, float], *, max_weight: float | None, bits: int, max_clients: int
) -> FixedPointEncoder:
    """The encoder of the weight coordinate a weighted round appends to each input.

    It covers ``[0, max_weight]`` (default: the largest weight rounded up to a power of
    two) with ``bits`` bits for up to ``max_clients`` clients.

    Raises:
        InvalidParameterError: a weight exceeds ``max_weight``.
    """
    top = float(max_weight) if max_weight is not None else _pow2_ceiling(max(weights.values(), default=0.0))
    if any(w > top for w in weights.values()):
        raise InvalidParameterError(f"a weight exceeds max_weight = {top}")
    return FixedPointEncoder(bits=bits, lo=0.0, hi=top, max_clients=max_clients)


def simulate(
    updates: Mapping[int, npt.ArrayLike],
    *,
    protocol: str = "secagg+",
    dropouts: Mapping[str | Stage, Iterable[int]] | None = None,
    seed: int | None = None,
    **config: Any,
) -> SimulationResult:
    """Run one secure aggregation round in process and decode the survivors' sum.

    Args:
        updates: client id -> 1-D float vector, all the same length. Ids are non-negative
            ints (0 included) or strings (:func:`wire_ids` maps them to the protocol's ids;
            ``server_view`` and ``details`` use those, the result's survivors use yours).
        protocol: ``"secagg+"`` (default: graph and threshold derived from the threat
            model), ``"secagg"`` (complete graph) or ``"paillier"`` (dispatched to
            ``protocols.paillier.simulate_paillier`` with the same arguments).
        dropouts: stage name (``Stage`` value) -> client ids that vanish at that stage.
        seed: makes the simulation's own randomness reproducible (stochastic rounding
            of the default encoder); never any cryptographic secret.
        **config: keyword options:

            * ``threat_model`` (:class:`ThreatModel`, default ``ThreatModel()``: malicious
              server, 5 % colluders, 10 % dropouts);
            * ``encoder`` (any :class:`~secagg.encoding.VectorEncoder`; default a
              :class:`~secagg.encoding.FixedPointEncoder` on ``[-B, B]`` with ``B`` the
              smallest power of two bounding the (weighted) inputs, ``bits`` bits and
              capacity ``n`` — a simulation convenience: deployments fix ``B`` in advance);
            * ``bits`` (default 32, for the default encoder);
            * ``weights`` (client id -> non-negative weight): each client masks
              ``[w x, w]`` so that the server learns ``sum w x`` and ``sum w`` only;
              ``max_weight`` is the public bound on a weight (default: the largest
              weight rounded up to a power of two);
            * ``round_id``, ``parameters`` (explicit ``ProtocolParameters``),
              ``hardening`` (:class:`Hardening` or per-client mapping), ``model_hash``
              (32 bytes or per-client mapping), ``graph``, ``prg``;
            * ``wire`` (default True: every message goes through the binary encoding)
              and ``record_view`` (default True).

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
    try:
        name = ProtocolName(protocol)
    except ValueError:
        raise InvalidParameterError(
            f"unknown protocol {protocol!r}; choose one of {[p.value for p in ProtocolName]}"
        ) from None
    if name is ProtocolName.PAILLIER:
        from protocols import paillier  # lazy: optional module

        result: SimulationResult = paillier.simulate_paillier(updates, dropouts=dropouts, seed=seed, **config)
        if not result.protocol:
            result = replace(result, protocol=name.value)
        return result
    unknown = set(config) - _CONFIG_KEYS
    if unknown:
        raise InvalidParameterError(f"unknown simulate() options: {sorted(unknown)}")
    if not isinstance(updates, Mapping) or not updates:
        raise InvalidParameterError("updates must be a non-empty mapping of client id -> vector")
    to_wire = wire_ids(updates)
    from_wire = {w: u for u, w in to_wire.items()}
    updates = {to_wire[u]: v for u, v in updates.items()}
    config = _translate_config(config, to_wire)
    dropouts = {stage: [to_wire[_member(to_wire, c)] for c in members] for stage, members in (dropouts or {}).items()}
    ids = sorted(updates)
    vectors = {cid: np.asarray(updates[cid], dtype=np.float64) for cid in ids}
    shapes = {v.shape for v in vectors.values()}
    if len(shapes) != 1 or next(iter(shapes)).__len__() != 1:
        raise InvalidParameterError("every update must be a 1-D vector of the same length")
    n = len(ids)

    weights_cfg = config.get("weights")
    weights: dict[int, float] | None = None
    if weights_cfg is not None:
        weights = client_weights(weights_cfg, ids)
        vectors = {cid: vectors[cid] * weights[cid] for cid in ids}

    encoder: VectorEncoder | None = config.get("encoder")
    rng = np.random.default_rng(seed)
    if encoder is None:
        encoder = default_encoder(vectors.values(), bits=int(config.get("bits", DEFAULT_BITS)), max_clients=n)
    if encoder.max_clients < n:
        raise CapacityError(f"the encoder sums at most {encoder.max_clients} clients, the cohort has {n}")
    bits = encoder.bits
    d = next(iter(vectors.values())).shape[0]
    length = encoder.encoded_length(d)

    def encode(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
        if isinstance(encoder, FixedPointEncoder):
            return encoder.encode(values, rng=rng)
        return np.asarray(encoder.encode(values), dtype=np.uint64)

    weight_coder: FixedPointEncoder | None = None
    if weights is not None:
        weight_coder = weight_encoder(weights, max_weight=config.get("max_weight"), bits=bits, max_clients=n)

    inputs: dict[int, npt.NDArray[np.uint64]] = {}
    for cid in ids:
        encoded = encode(vectors[cid])
        if encoded.shape != (length,):
            raise InvalidParameterError(f"the encoder returned {encoded.shape}, expected ({length},)")
        if weight_coder is not None and weights is not None:
            encoded = np.concatenate([encoded, weight_coder.encode([weights[cid]], rng=rng)])
        inputs[cid] = encoded

    excluded: set[int] = set()
    restarts = 0
    while True:
        live = [cid for cid in ids if cid not in excluded]
        runner = setup_round(
            {cid: inputs[cid] for cid in live},
            bits=bits,
            protocol=name,
            threat_model=config.get("threat_model"),
            parameters=config.get("parameters"),
            # a restarted round is a new execution: it needs a fresh round id
            round_id=config.get("round_id") if not restarts else None,
            hardening=config.get("hardening"),
            model_hash=config.get("model_hash", bytes(MODEL_HASH_BYTES)),
            dropouts={
                stage: [c for c in members if c not in excluded]
                for stage, members in dropouts.items()
                if not restarts or stage not in (Stage.GRAPH_SEED, Stage.GRAPH_SEED.value)
            },
            graph=config.get("graph"),
            prg=config.get("prg", PrgAlgorithm.AES_256_CTR),
            wire=bool(config.get("wire", True)),
            record_view=bool(config.get("record_view", True)),
        )
        try:
            outcome = runner.run()
            break
        except RoundRestartError as exc:
            if config.get("parameters") is not None or not exc.excluded & set(live):
                raise
            excluded |= exc.excluded
            restarts += 1
    survivors = tuple(from_wire[c] for c in outcome.survivors)
    dropped = tuple(sorted(from_wire[c] for c in ids if c not in set(outcome.survivors)))
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
            "wire_ids": dict(to_wire),
        },
    )

