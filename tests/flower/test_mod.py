"""The Flower client mod, the shared policy, state saving and identity files -- in process.

Messages are real Flower ``Message`` objects and the server side is the real
:class:`~protocols.masking.server.SecAggServer`; a tiny loop here plays the transport, so that the
mod's checks can be exercised message by message in seconds.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from protocols.flower import SecAggPolicy, SecureAggregationMod  # noqa: E402
from protocols.flower.mod import STATE_KEY  # noqa: E402
from protocols.flower.pki import (  # noqa: E402
    load_identity,
    load_pki,
    node_client_id,
    node_identity,
    node_pki,
    node_round_log,
    round_log_path,
    write_identities,
)
from protocols.flower.records import (  # noqa: E402
    ARRAYS_KEY,
    CONFIG_KEY,
    MESSAGE_KEY,
    WIRE_VERSION,
    RoundAnnouncement,
    arrays_digest,
    pack_message,
    unpack_message,
)
from protocols.flower.state import dump_client, load_client  # noqa: E402
from protocols.masking.config import RoundConfig  # noqa: E402
from protocols.masking.driver import setup_round  # noqa: E402
from protocols.masking.messages import Stage  # noqa: E402
from protocols.masking.server import SecAggServer  # noqa: E402
from secagg.errors import (  # noqa: E402
    InfeasibleThreatModelError,
    InvalidParameterError,
    MessageError,
    ProtocolAbortError,
    ReplayError,
)
from secagg.primitives.encoding import FixedPointEncoder  # noqa: E402
from secagg.recipe import AggregationProtocol, DPMode  # noqa: E402
from threat_models.model import ServerClass, ThreatModel  # noqa: E402

N, D = 5, 6
POLICY = SecAggPolicy(
    threat_model=ThreatModel(server=ServerClass.SEMI_MALICIOUS), dp=DPMode.NONE, clip_norm=None
)


@pytest.fixture(autouse=True)
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower's runtime names the running task before any message is built; so do we."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)


def update_of(cid: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.random.default_rng(cid).normal(0.0, 0.1, D)


def train(msg: Message, context: Context) -> Message:
    cid = int(context.node_config["cid"])
    weights = msg.content.array_records[ARRAYS_KEY]["w"].numpy()
    return Message(
        RecordDict({ARRAYS_KEY: ArrayRecord({"w": Array(weights + update_of(cid))})}), reply_to=msg
    )


class Round:
    """Server side of one round, and one Flower context per client (node id = 100 + cid)."""

    def __init__(
        self, policy: SecAggPolicy = POLICY, *, round_id: int = 99, threshold: int | None = None
    ) -> None:
        self.policy = policy
        params = policy.parameters(N)
        if threshold is not None:
            params = type(params)(
                **{
                    **{f: getattr(params, f) for f in params.__dataclass_fields__},
                    "threshold": threshold,
                }
            )
        self.seed = os.urandom(32) if policy.dp is DPMode.DISTRIBUTED else b""
        self.encoder = policy.encoder(N, D, self.seed or None)
        self.config = RoundConfig(
            round_id=round_id,
            parameters=params,
            bits=self.encoder.bits,
            vector_length=policy.vector_length(self.encoder, D),
        )
        self.server = SecAggServer(self.config, range(1, N + 1))
        self.arrays = ArrayRecord({"w": Array(np.zeros(D))})
        self.contexts = {
            cid: Context(
                run_id=1,
                node_id=100 + cid,
                node_config={"cid": cid},
                state=RecordDict(),
                run_config={},
            )
            for cid in range(1, N + 1)
        }
        self.requests = self.server.start()

    def envelope(
        self, request: Any, *, policy_digest: bytes | None = None, arrays: ArrayRecord | None = None
    ) -> Message:
        stage = self.server.stage
        assert stage is not None
        header: dict[str, Any] = {"version": WIRE_VERSION, "stage": stage.value}
        if stage is Stage.ADVERTISE_KEYS:
            header.update(
                RoundAnnouncement(
                    round_id=self.config.round_id,
                    client_id=request.recipient,
                    cohort=N,
                    degree=self.config.parameters.degree,
                    threshold=self.config.parameters.threshold,
                    bits=self.config.bits,
                    vector_length=self.config.vector_length,
                    dimension=D,
                    policy_digest=policy_digest or self.policy.digest(),
                    model_digest=arrays_digest(self.arrays),
                    rotation_seed=self.seed,
                ).to_record()
            )
        records: dict[str, Any] = {
            CONFIG_KEY: ConfigRecord(header),
            MESSAGE_KEY: pack_message(request),
        }
        if stage is Stage.MASKED_INPUT:
            records[ARRAYS_KEY] = arrays if arrays is not None else self.arrays
            records["config"] = ConfigRecord()
        return Message(
            RecordDict(records),
            dst_node_id=100 + request.recipient,
            message_type=MessageType.TRAIN,
            group_id="1",
        )

    def step(self, mod: SecureAggregationMod, **kwargs: Any) -> None:
        for request in self.requests:
            reply = mod(self.envelope(request, **kwargs), self.contexts[request.recipient], train)
            self.server.handle(unpack_message(reply.content))
        self.requests = self.server.advance()


def test_a_whole_round_through_the_mod() -> None:
    mod = SecureAggregationMod(POLICY)
    rnd = Round()
    while rnd.server.stage is not None:
        rnd.step(mod)
    result = rnd.server.result
    assert result.survivors == tuple(range(1, N + 1))
    total = rnd.encoder.decode_sum(result.ring_sum, N)
    # each client's stochastic rounding is off by less than one quantum
    tolerance = N * cast(FixedPointEncoder, rnd.encoder).quantum
    assert np.max(np.abs(total - sum(update_of(c) for c in range(1, N + 1)))) < tolerance
    # each client cleared its round state when it finished
    assert all(STATE_KEY not in c.state.config_records for c in rnd.contexts.values())


def test_distributed_dp_through_the_mod() -> None:
    policy = SecAggPolicy(
        threat_model=ThreatModel(server=ServerClass.SEMI_MALICIOUS),
        dp=DPMode.DISTRIBUTED,
        noise_multiplier=1.0,
        clip_norm=1.0,
    )
    mod = SecureAggregationMod(policy)
    rnd = Round(policy)
    while rnd.server.stage is not None:
        rnd.step(mod)
    result = rnd.server.result
    noised = rnd.encoder.decode_sum(result.ring_sum, len(result.survivors))
    exact = sum(update_of(c) for c in range(1, N + 1))
    # the clients' discrete Gaussian shares: sized so that N - dropouts - colluders honest
    # survivors reach z C; all N survived, so the noise std is a little larger
    std = cast(Any, rnd.encoder).parameters.aggregate_error_stddev(N)
    assert std > policy.noise_multiplier * 1.0
    assert 0 < np.max(np.abs(noised - exact)) < 6 * std


def test_other_messages_pass_through_untouched() -> None:
    mod = SecureAggregationMod(POLICY)
    context = Context(
        run_id=1, node_id=101, node_config={"cid": 1}, state=RecordDict(), run_config={}
    )
    msg = Message(
        RecordDict({ARRAYS_KEY: ArrayRecord({"w": Array(np.zeros(D))})}),
        dst_node_id=101,
        message_type=MessageType.TRAIN,
        group_id="1",
    )
    reply = mod(msg, context, train)
    assert np.allclose(reply.content.array_records[ARRAYS_KEY]["w"].numpy(), update_of(1))
    assert len(context.state.config_records) == 0


def test_a_round_under_another_policy_is_refused() -> None:
    mod = SecureAggregationMod(POLICY)
    rnd = Round()
    other = SecAggPolicy(
        threat_model=ThreatModel(server=ServerClass.CURIOUS), dp=DPMode.NONE, clip_norm=None
    )
    request = rnd.requests[0]
    with pytest.raises(ProtocolAbortError):
        mod(
            rnd.envelope(request, policy_digest=other.digest()),
            rnd.contexts[request.recipient],
            train,
        )
    assert STATE_KEY not in rnd.contexts[request.recipient].state.config_records


def test_a_threshold_below_the_clients_threat_model_is_refused() -> None:
    mod = SecureAggregationMod(POLICY)
    needed = POLICY.parameters(N).threshold
    rnd = Round(threshold=needed - 1)
    request = rnd.requests[0]
    with pytest.raises(InfeasibleThreatModelError):
        mod(rnd.envelope(request), rnd.contexts[request.recipient], train)


def test_a_round_id_is_never_accepted_twice() -> None:
    mod = SecureAggregationMod(POLICY)
    first = Round(round_id=5)
    request = first.requests[0]
    mod(first.envelope(request), first.contexts[request.recipient], train)
    again = Round(round_id=5)
    again.contexts = first.contexts
    with pytest.raises(ReplayError):
        mod(again.envelope(again.requests[0]), again.contexts[request.recipient], train)


def test_each_stage_accepts_only_its_own_request() -> None:
    mod = SecureAggregationMod(POLICY)
    rnd = Round()
    rnd.step(mod)  # advertise keys
    assert rnd.server.stage is Stage.GRAPH_SEED
    request = rnd.requests[0]
    context = rnd.contexts[request.recipient]
    before = bytes(cast(bytes, context.state.config_records[STATE_KEY]["client"]))
    msg = rnd.envelope(request)
    msg.content.config_records[CONFIG_KEY]["stage"] = Stage.SHARE_KEYS.value
    with pytest.raises(MessageError):
        mod(msg, context, train)
    assert bytes(cast(bytes, context.state.config_records[STATE_KEY]["client"])) == before
    rnd.step(mod)  # the graph seed, as announced
    assert rnd.server.stage is Stage.SHARE_KEYS and rnd.server.context is not None


def test_a_round_log_file_outlives_the_context(tmp_path: Path) -> None:
    log_file = tmp_path / "node.rounds"
    mod = SecureAggregationMod(POLICY, round_log=log_file)
    first = Round(round_id=5)
    request = first.requests[0]
    mod(first.envelope(request), first.contexts[request.recipient], train)
    assert log_file.read_text() == "secagg 5\n"
    again = Round(round_id=5)  # fresh contexts: the node restarted and lost its state
    with pytest.raises(ReplayError):
        mod(again.envelope(again.requests[0]), again.contexts[request.recipient], train)


def test_the_context_state_remembers_every_round() -> None:
    mod = SecureAggregationMod(POLICY)
    context = Round().contexts[1]
    for round_id in range(1, 301):
        rnd = Round(round_id=round_id)
        mod(rnd.envelope(rnd.requests[0]), context, train)
    again = Round(round_id=1)
    with pytest.raises(ReplayError):
        mod(again.envelope(again.requests[0]), context, train)


def test_a_substituted_global_model_is_detected() -> None:
    mod = SecureAggregationMod(POLICY)
    rnd = Round()
    while rnd.server.stage is not Stage.MASKED_INPUT:
        rnd.step(mod)  # advertise keys (model digest of the zeros model), graph seed, share keys
    request = rnd.requests[0]
    other = ArrayRecord({"w": Array(np.ones(D))})
    with pytest.raises(ProtocolAbortError):
        mod(rnd.envelope(request, arrays=other), rnd.contexts[request.recipient], train)


def test_client_state_survives_a_trip_through_bytes() -> None:
    inputs = {cid: np.arange(4, dtype=np.uint64) * cid for cid in range(1, 7)}
    runner = setup_round(inputs, bits=32, threat_model=ThreatModel())  # signed: identity keys too
    runner.run_until(Stage.MASKED_INPUT)
    for cid in list(runner.clients):
        runner.clients[cid] = load_client(dump_client(runner.clients[cid]))
    result = runner.run()
    assert np.array_equal(result.ring_sum, sum(inputs.values()))


def test_a_state_naming_other_callables_is_refused() -> None:
    blob = pickle.dumps(os.system)
    with pytest.raises(MessageError):
        load_client(blob)
    with pytest.raises(MessageError):
        load_client(b"not a pickle")


def test_identity_files_and_node_config(tmp_path: Path) -> None:
    pki_path = write_identities(tmp_path, [3, 7])
    pki = load_pki(pki_path)
    assert set(pki) == {3, 7}
    key = load_identity(tmp_path / "identity-7.key")
    assert key.public_bytes == pki[7]
    assert (os.stat(tmp_path / "identity-7.key").st_mode & 0o777) == 0o600
    config = {
        "secagg-client-id": 7,
        "secagg-identity": str(tmp_path / "identity-7.key"),
        "secagg-pki": str(pki_path),
    }
    assert node_client_id(config) == 7
    assert node_identity(config).public_bytes == pki[7]
    assert node_pki(config) == pki
    log = node_round_log(config)
    assert (
        log is not None
        and log.path
        == round_log_path(tmp_path / "identity-7.key")
        == tmp_path / "identity-7.key.rounds"
    )
    assert node_round_log({"secagg-round-log": str(tmp_path / "r")}).path == tmp_path / "r"  # type: ignore[union-attr]
    assert node_round_log({}) is None
    (tmp_path / "bad.json").write_text('{"1": "abcd"}')
    with pytest.raises(InvalidParameterError):
        load_pki(tmp_path / "bad.json")
    with pytest.raises(InvalidParameterError):
        node_client_id({})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "paillier"},
        {"dp": "local"},
        {"dp": "central", "clip_norm": None},
        {"dp": "none", "weighted": True, "clip_norm": None, "noise_multiplier": 0.0},
        {"dp": "central", "weighted": True},
        {"max_clients": 2},
    ],
)
def test_policy_refuses_unsupported_combinations(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError):
        SecAggPolicy(**kwargs)


def test_policy_digest_covers_every_field() -> None:
    base = SecAggPolicy()
    variants = [
        SecAggPolicy(protocol=AggregationProtocol.SECAGG),
        SecAggPolicy(noise_multiplier=1.5),
        SecAggPolicy(clip_norm=2.0),
        SecAggPolicy(threat_model=ThreatModel(dropout_fraction=0.2)),
        SecAggPolicy(dp=DPMode.CENTRAL),
    ]
    digests = {base.digest()} | {v.digest() for v in variants}
    assert len(digests) == len(variants) + 1
    assert SecAggPolicy().digest() == base.digest()
