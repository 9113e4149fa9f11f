"""The client side: a Flower client mod that runs this library's SecAgg / SecAgg+ client.

Put it in front of an ordinary ``ClientApp`` train function::

    policy = SecAggPolicy()                      # the same policy as the server's
    app = ClientApp(mods=[SecureAggregationMod(policy)])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        ...train...
        return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                   "metrics": MetricRecord({"num-examples": n})}),
                       reply_to=msg)

Train messages that carry the ``"secagg"`` record are protocol steps; the mod answers
them itself and calls the train function only at the masked-input stage, with the global
model and the train configuration. It then turns the returned arrays into the update
(``trained - global``), clips it, encodes it -- adding this client's share of discrete
Gaussian noise under distributed DP -- masks it and replies with the masked vector only:
the trained arrays and the metrics never leave the node (``forward_metrics`` opts in to
sending the metrics).

What the client checks before it takes part (on top of every check of
:class:`~protocols.masking.client.SecAggClient`): the server's policy digest equals its own; the
announced ``k``/``t`` satisfy its own threat model; the ring and vector length follow
from its policy; the global model it is asked to train is the one whose digest it signed
(model-bound signatures, so peers detect a server that sends different models); a round
id is never accepted twice. Any failure raises, Flower returns an error reply, and the
server counts the client as dropped; the client's saved state is unchanged.

Every round the node takes part in is recorded before it replies to ``RoundStart``: in
the node's context state (for as long as that lives, without limit) and, when the mod
has a persistent :class:`~protocols.round_log.RoundLog` -- by default the file beside the
node's identity key, see :func:`protocols.flower.pki.node_round_log` -- in that file too,
so that a restarted node still refuses every round id it has used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from dp.clipping import clip_l2
from protocols.flower.pki import node_client_id, node_identity, node_pki, node_round_log
from protocols.flower.policy import SecAggPolicy, UpdateKind
from protocols.flower.records import (
    ARRAYS_KEY,
    CONFIG_KEY,
    HELLO_STAGE,
    MESSAGE_KEY,
    METRICS_KEY,
    WIRE_VERSION,
    RoundAnnouncement,
    arrays_digest,
    flatten_arrays,
    pack_message,
    unpack_message,
)
from protocols.flower.state import dump_client, load_client
from protocols.masking.client import ROUND_LOG_SCOPE, SecAggClient
from protocols.masking.config import Hardening, RoundConfig
from protocols.masking.messages import (
    ConsistencyRequest,
    KeyBroadcast,
    RoundStart,
    SeedRequest,
    ShareForward,
    UnmaskRequest,
)
from protocols.masking.messages import Message as ProtocolMessage
from protocols.round_log import RoundLog
from protocols.stages import Stage
from secagg.errors import (
    EncodingError,
    InvalidParameterError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
    StageError,
)
from secagg.primitives.signing import IdentityKey
from secagg.validation import is_int

__all__ = ["SecureAggregationMod", "STATE_KEY"]

#: Key of the round state in ``context.state.config_records``.
STATE_KEY = "secagg.client"
_ROUNDS_KEY = "secagg.rounds"
#: The server message each stage opens with.
_REQUESTS: dict[Stage, type[ProtocolMessage]] = {
    Stage.ADVERTISE_KEYS: RoundStart,
    Stage.GRAPH_SEED: SeedRequest,
    Stage.SHARE_KEYS: KeyBroadcast,
    Stage.MASKED_INPUT: ShareForward,
    Stage.CONSISTENCY_CHECK: ConsistencyRequest,
    Stage.UNMASKING: UnmaskRequest,
}

RoundLogSource = (
    RoundLog
    | str
    | os.PathLike[str]
    | Callable[[Context], "RoundLog | str | os.PathLike[str] | None"]
)


def _resolve(source: Any, context: Context) -> Any:
    return source(context) if callable(source) else source


class SecureAggregationMod:
    """Flower client mod running one side of SecAgg / SecAgg+ per round.

    Args:
        policy: must equal the server's (default ``SecAggPolicy()``).
        client_id: this node's protocol id, or ``context -> id``. Signed rounds default
            to the node config's ``secagg-client-id``; unsigned rounds to the id the
            server assigns.
        identity: the node's identity key (signed rounds), or ``context -> key``;
            default from the node config's ``secagg-identity`` file.
        pki: client id -> identity public key (signed rounds), or ``context -> dict``;
            default from the node config's ``secagg-pki`` file.
        round_log: where the node records the rounds it took part in, persistently: a
            :class:`~protocols.round_log.RoundLog`, a file path, or ``context -> either``
            (``None``: context state only). Default
            :func:`~protocols.flower.pki.node_round_log` (``secagg-round-log`` in the node
            config, else ``<secagg-identity>.rounds``). The node's context state records
            them in any case.
        hardening: the client's checks against a lying server (default: all).
        forward_metrics: also send the train function's ``MetricRecord`` (individual,
            not aggregated -- off by default).
    """

    def __init__(
        self,
        policy: SecAggPolicy | None = None,
        *,
        client_id: int | Callable[[Context], int] | None = None,
        identity: IdentityKey | Callable[[Context], IdentityKey] | None = None,
        pki: dict[int, bytes] | Callable[[Context], dict[int, bytes]] | None = None,
        round_log: RoundLogSource | None = None,
        hardening: Hardening | None = None,
        forward_metrics: bool = False,
    ) -> None:
        self.policy = policy if policy is not None else SecAggPolicy()
        if not isinstance(self.policy, SecAggPolicy):
            raise InvalidParameterError("policy must be a SecAggPolicy")
        if self.policy.signed:
            client_id = (
                client_id if client_id is not None else (lambda c: node_client_id(c.node_config))
            )
            identity = (
                identity if identity is not None else (lambda c: node_identity(c.node_config))
            )
            pki = pki if pki is not None else (lambda c: node_pki(c.node_config))
        self._client_id = client_id
        self._identity = identity
        self._pki = pki
        self._round_log: RoundLogSource = (
            round_log if round_log is not None else (lambda c: node_round_log(c.node_config))
        )
        self.hardening = hardening if hardening is not None else Hardening()
        self.forward_metrics = forward_metrics
        self._digest = self.policy.digest()

    # -- dispatch ----------------------------------------------------------------------

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if (
            msg.metadata.message_type != MessageType.TRAIN
            or CONFIG_KEY not in msg.content.config_records
        ):
            return call_next(msg, context)
        header = msg.content.config_records[CONFIG_KEY]
        if header.get("version") != WIRE_VERSION:
            raise MessageError(f"unsupported secagg envelope version {header.get('version')!r}")
        stage_name = header.get("stage")
        if stage_name == HELLO_STAGE:
            return self._reply(msg, HELLO_STAGE, self._own_id(context), None, None)
        try:
            stage = Stage(str(stage_name))
        except ValueError:
            raise MessageError(f"unknown stage {stage_name!r}") from None
        request = unpack_message(msg.content)
        if request.STAGE is not stage or not isinstance(request, _REQUESTS[stage]):
            raise MessageError(f"{type(request).__name__} sent as stage {stage.value}")
        if isinstance(request, RoundStart):
            return self._advertise(msg, context, header, request)
        client, meta = self._load(context)
        metrics: MetricRecord | None = None
        if isinstance(request, ShareForward):
            replies, metrics = self._masked_input(msg, context, client, meta, request, call_next)
        else:
            replies = client.handle(request)
        if client.finished:
            self._clear(context)
        else:
            self._save(context, client, meta)
        return self._reply(
            msg, stage.value, client.client_id, replies[0] if replies else None, metrics
        )

    # -- stages ------------------------------------------------------------------------

    def _advertise(
        self, msg: Message, context: Context, header: ConfigRecord, request: RoundStart
    ) -> Message:
        announcement = RoundAnnouncement.from_record(header)
        if announcement.policy_digest != self._digest:
            raise ProtocolAbortError("the server announced a different secure aggregation policy")
        if announcement.round_id != request.round_id:
            raise MessageError("the announcement and RoundStart name different rounds")
        seen = self._seen_rounds(context)
        if announcement.round_id in seen:
            raise ReplayError("this round id was already used")
        own = self._own_id(context)
        client_id = own if own is not None else announcement.client_id
        if client_id != announcement.client_id or client_id != request.recipient:
            raise ProtocolAbortError("the server addressed this client under another id")
        policy = self.policy
        params = policy.check_parameters(
            announcement.cohort, announcement.degree, announcement.threshold
        )
        encoder = policy.encoder(
            announcement.cohort, announcement.dimension, announcement.rotation_seed or None
        )
        if (
            encoder.bits != announcement.bits
            or policy.vector_length(encoder, announcement.dimension) != announcement.vector_length
        ):
            raise ProtocolAbortError(
                "the announced ring or vector length does not follow from the policy"
            )
        config = RoundConfig(
            round_id=announcement.round_id,
            parameters=params,
            bits=announcement.bits,
            vector_length=announcement.vector_length,
        )
        identity = _resolve(self._identity, context) if policy.signed else None
        pki = _resolve(self._pki, context) if policy.signed else None
        client = SecAggClient(
            config,
            client_id,
            identity=identity,
            pki=pki,
            model_hash=announcement.model_digest,
            hardening=self.hardening,
            round_log=self._node_round_log(context, seen),
        )
        replies = client.handle(request)  # records the round in the log before it replies
        meta = {
            "cohort": announcement.cohort,
            "dimension": announcement.dimension,
            "rotation_seed": announcement.rotation_seed.hex(),
            "model_digest": announcement.model_digest.hex(),
        }
        self._save(context, client, meta)
        self._remember_round(context, seen + [announcement.round_id])
        return self._reply(msg, Stage.ADVERTISE_KEYS.value, client_id, replies[0], None)

    def _masked_input(
        self,
        msg: Message,
        context: Context,
        client: SecAggClient,
        meta: dict[str, Any],
        request: ShareForward,
        call_next: ClientAppCallable,
    ) -> tuple[list[ProtocolMessage], MetricRecord | None]:
        content = msg.content
        if ARRAYS_KEY not in content.array_records:
            raise MessageError("the masked-input stage carries no global model")
        global_arrays = content.array_records[ARRAYS_KEY]
        if arrays_digest(global_arrays).hex() != meta["model_digest"]:
            raise ProtocolAbortError(
                "the global model differs from the one announced at the start of the round"
            )
        global_vector, layout = flatten_arrays(global_arrays)
        if layout.size != meta["dimension"]:
            raise ProtocolAbortError("the global model's size differs from the announced dimension")

        # the user's train function sees the round's content without the protocol records
        user_content = RecordDict(
            {k: v for k, v in content.items() if k not in (CONFIG_KEY, MESSAGE_KEY)}
        )
        msg.content = user_content
        try:
            trained = call_next(msg, context)
        finally:
            msg.content = content
        if trained.has_error():
            raise ProtocolAbortError(f"the train function failed: {trained.error.reason}")
        if ARRAYS_KEY in trained.content.array_records:
            returned = trained.content.array_records[ARRAYS_KEY]
        elif len(trained.content.array_records) == 1:
            returned = next(iter(trained.content.array_records.values()))
        else:
            raise EncodingError(
                f"the train function must return one ArrayRecord (named {ARRAYS_KEY!r})"
            )
        vector, returned_layout = flatten_arrays(returned)
        if not returned_layout.same_as(layout):
            raise EncodingError(
                "the train function returned arrays of another structure than the global model"
            )
        update = vector - global_vector if self.policy.update is UpdateKind.MODEL else vector
        metrics = (
            trained.content.metric_records.get(METRICS_KEY)
            if trained.content.metric_records
            else None
        )
        encoded = self._encode(update, meta, client.config.bits, metrics)
        client.set_input(encoded)
        replies = client.handle(request)
        return replies, (metrics if self.forward_metrics else None)

    def _encode(
        self,
        update: np.ndarray[Any, Any],
        meta: dict[str, Any],
        bits: int,
        metrics: MetricRecord | None,
    ) -> np.ndarray[Any, Any]:
        policy = self.policy
        cohort, dimension = int(meta["cohort"]), int(meta["dimension"])
        seed = bytes.fromhex(meta["rotation_seed"]) or None
        encoder = policy.encoder(cohort, dimension, seed)
        x = np.asarray(update, dtype=np.float64)
        if policy.clip_norm is not None:
            x = clip_l2(x, policy.clip_norm).update
        elif x.size and float(np.max(np.abs(x))) > policy.value_bound:
            raise EncodingError(f"the update exceeds the policy's value_bound {policy.value_bound}")
        weight_encoder = policy.weight_encoder(cohort, bits)
        if weight_encoder is None:
            return np.asarray(encoder.encode(x), dtype=np.uint64)
        raw_weight = metrics.get("num-examples", 0) if metrics is not None else 0
        if not isinstance(raw_weight, (int, float)) or isinstance(raw_weight, bool):
            raise EncodingError("num-examples must be a number")
        weight = float(raw_weight)
        if not 0 < weight <= policy.max_weight:
            raise EncodingError(
                f"a weighted mean needs 0 < num-examples <= {policy.max_weight}, got {weight}"
            )
        return np.concatenate(
            [
                np.asarray(encoder.encode(x * weight), dtype=np.uint64),
                weight_encoder.encode([weight]),
            ]
        )

    # -- context state -----------------------------------------------------------------

    def _own_id(self, context: Context) -> int | None:
        if self._client_id is None:
            return None
        value = _resolve(self._client_id, context)
        if not is_int(value) or not 0 < value < 1 << 63:
            raise InvalidParameterError(f"client ids are ints in [1, 2^63 - 1], got {value!r}")
        return value

    @staticmethod
    def _load(context: Context) -> tuple[SecAggClient, dict[str, Any]]:
        record = context.state.config_records.get(STATE_KEY)
        if record is None:
            raise StageError("no secure aggregation round is in progress on this node")
        client = load_client(bytes(record["client"]))  # type: ignore[arg-type]
        meta = json.loads(bytes(record["meta"]))  # type: ignore[arg-type]
        return client, meta

    @staticmethod
    def _save(context: Context, client: SecAggClient, meta: dict[str, Any]) -> None:
        context.state.config_records[STATE_KEY] = ConfigRecord(
            {"client": dump_client(client), "meta": json.dumps(meta).encode()}
        )

    @staticmethod
    def _clear(context: Context) -> None:
        if STATE_KEY in context.state.config_records:
            del context.state.config_records[STATE_KEY]

    def _node_round_log(self, context: Context, seen: list[int]) -> RoundLog:
        """The round log the client claims its round in: the persistent one, else in memory.

        The in-memory log holds the rounds of the node's context state, so that the
        client's own check refuses them too.
        """
        source = _resolve(self._round_log, context)
        if isinstance(source, RoundLog):
            return source
        if isinstance(source, (str, os.PathLike)):
            return RoundLog.at(Path(source))
        if source is not None:
            raise InvalidParameterError("round_log must give a RoundLog, a path or None")
        log = RoundLog.in_memory()
        for round_id in seen:
            log.claim(ROUND_LOG_SCOPE, round_id)
        return log

    @staticmethod
    def _seen_rounds(context: Context) -> list[int]:
        """Every round id recorded in the node's context state (oldest first)."""
        record = context.state.config_records.get(_ROUNDS_KEY)
        if record is None:
            return []
        ids = record.get("ids", [])
        if not isinstance(ids, list):
            return []
        return [int.from_bytes(r, "big") for r in ids if isinstance(r, bytes) and len(r) == 8]

    @staticmethod
    def _remember_round(context: Context, round_ids: list[int]) -> None:
        context.state.config_records[_ROUNDS_KEY] = ConfigRecord(
            {"ids": [r.to_bytes(8, "big") for r in round_ids]}
        )

    # -- replies -----------------------------------------------------------------------

    @staticmethod
    def _reply(
        msg: Message,
        stage: str,
        client_id: int | None,
        reply: ProtocolMessage | None,
        metrics: MetricRecord | None,
    ) -> Message:
        header: dict[str, Any] = {"version": WIRE_VERSION, "stage": stage}
        if client_id is not None:
            header["client-id"] = client_id
        records: dict[str, Any] = {CONFIG_KEY: ConfigRecord(header)}
        if reply is not None:
            records[MESSAGE_KEY] = pack_message(reply)
        if metrics is not None:
            records[METRICS_KEY] = metrics
        return Message(RecordDict(records), reply_to=msg)
