"""The server workflow over an in-process grid: restarts, the PKI, the privacy ledger.

:class:`LoopbackGrid` hands every pushed message straight to the client mod of its node
(one Flower ``Context`` per node, kept between messages as a SuperNode keeps it) and
returns the replies on the next pull; a test can withhold chosen replies, the way a node
that stops answering would. The workflow and the mods are the real ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast
from uuid import uuid4

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, Context, Error, Message, RecordDict  # noqa: E402
from flwr.serverapp import Grid  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from protocols.flower import SecAggPolicy, SecureAggregationMod, SecureAggregationWorkflow  # noqa: E402
from protocols.flower.pki import load_identity, load_pki, round_log_path, write_identities  # noqa: E402
from protocols.flower.records import ARRAYS_KEY, CONFIG_KEY  # noqa: E402
from protocols.masking.messages import Stage  # noqa: E402
from protocols.masking.server import SecAggServer  # noqa: E402
from secagg.errors import InvalidParameterError, RoundRestartError  # noqa: E402
from secagg.recipe import DPMode  # noqa: E402
from threat_models.model import ServerClass, ThreatModel  # noqa: E402

N, D = 6, 5
SEMI = SecAggPolicy(
    threat_model=ThreatModel(server=ServerClass.SEMI_MALICIOUS), dp=DPMode.NONE, clip_norm=None
)
SIGNED = SecAggPolicy(threat_model=ThreatModel(), dp=DPMode.NONE, clip_norm=None)

#: (stage, node id) -> whether to withhold that node's reply
Withhold = Callable[[str, int], bool]


@pytest.fixture(autouse=True)
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower's runtime names the running task before any message is built; so do we."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)


def update_of(node: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.random.default_rng(900 + node).normal(0.0, 0.1, D)


def train(msg: Message, context: Context) -> Message:
    weights = msg.content.array_records[ARRAYS_KEY]["w"].numpy()
    update = update_of(context.node_id)
    return Message(
        RecordDict({ARRAYS_KEY: ArrayRecord({"w": Array(weights + update)})}), reply_to=msg
    )


class LoopbackGrid:
    """A ``Grid`` whose nodes run a client mod in this process (see the module docstring)."""

    def __init__(
        self,
        mod: SecureAggregationMod,
        nodes: Iterable[int],
        node_config: Callable[[int], dict[str, Any]],
    ) -> None:
        self.mod = mod
        self.contexts = {
            node: Context(
                run_id=1,
                node_id=node,
                node_config=node_config(node),
                state=RecordDict(),
                run_config={},
            )
            for node in nodes
        }
        self.withhold: Withhold = lambda stage, node: False
        self.replies: dict[str, Message] = {}
        self.stages: list[str] = []

    def get_node_ids(self) -> list[int]:
        return sorted(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            node = msg.metadata.dst_node_id
            stage = str(msg.content.config_records[CONFIG_KEY]["stage"])
            if not self.stages or self.stages[-1] != stage:
                self.stages.append(stage)
            try:
                reply = self.mod(msg, self.contexts[node], train)
            except Exception as exc:  # Flower turns a failing ClientApp into an error reply
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)
            if not self.withhold(stage, node):
                self.replies[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self.replies.pop(mid) for mid in list(message_ids) if mid in self.replies]


def grid_of(
    policy: SecAggPolicy, key_dir: Path | None = None, nodes: Iterable[int] = range(11, 11 + N)
) -> LoopbackGrid:
    """Nodes 11.. with client ids 1.. (signed policies: identity files and PKI in ``key_dir``)."""
    if key_dir is None:
        return LoopbackGrid(SecureAggregationMod(policy), nodes, lambda node: {})

    def config(node: int) -> dict[str, Any]:
        cid = node - 10
        return {
            "secagg-client-id": cid,
            "secagg-identity": str(key_dir / f"identity-{cid}.key"),
            "secagg-pki": str(key_dir / "pki.json"),
        }

    return LoopbackGrid(SecureAggregationMod(policy), nodes, config)


def workflow_of(policy: SecAggPolicy, **kwargs: Any) -> SecureAggregationWorkflow:
    return SecureAggregationWorkflow(policy, stage_timeout=0.05, poll_interval=0.001, **kwargs)


def initial() -> ArrayRecord:
    return ArrayRecord({"w": Array(np.zeros(D))})


def check_mean(outcome: Any, quantum: float) -> None:
    expected = np.mean([update_of(node) for node in outcome.survivors], axis=0)
    assert np.max(np.abs(outcome.update["w"].numpy() - expected)) < quantum


def quantum_of(policy: SecAggPolicy, cohort: int) -> float:
    return float(cast(Any, policy.encoder(cohort, D)).quantum)


def test_a_semi_malicious_round_runs_the_graph_seed_and_consistency_stages() -> None:
    grid = grid_of(SEMI)
    outcome = workflow_of(SEMI).aggregate(cast(Grid, grid), initial())
    assert grid.stages == [s.value for s in Stage]
    assert (
        outcome.survivors == tuple(range(11, 11 + N))
        and outcome.dropped == ()
        and outcome.excluded == ()
    )
    check_mean(outcome, quantum_of(SEMI, N))


def test_a_withheld_seed_reveal_restarts_the_round_without_that_node() -> None:
    grid = grid_of(SEMI)
    grid.withhold = lambda stage, node: stage == Stage.GRAPH_SEED.value and node == 13
    outcome = workflow_of(SEMI).aggregate(cast(Grid, grid), initial())
    # two executions: the second under a fresh round id, without node 13
    assert grid.stages.count(Stage.ADVERTISE_KEYS.value) == 2
    assert outcome.excluded == (13,)
    assert 13 in outcome.dropped and 13 not in outcome.survivors
    assert outcome.survivors == tuple(n for n in range(11, 11 + N) if n != 13)
    check_mean(outcome, quantum_of(SEMI, N - 1))


def test_restarts_are_bounded() -> None:
    grid = grid_of(SEMI, nodes=range(11, 11 + N + 2))
    withheld: list[int] = []

    def lowest_withholds(stage: str, node: int) -> bool:
        # in execution i (1, 2, ...) node 10 + i, the lowest one left, withholds its reveal
        if stage != Stage.GRAPH_SEED.value or node != 10 + grid.stages.count(
            Stage.ADVERTISE_KEYS.value
        ):
            return False
        withheld.append(node)
        return True

    grid.withhold = lowest_withholds
    with pytest.raises(RoundRestartError):
        workflow_of(SEMI, max_restarts=2).aggregate(cast(Grid, grid), initial())
    assert withheld == [11, 12, 13]  # the first execution and two restarts
    assert grid.stages.count(Stage.ADVERTISE_KEYS.value) == 3


def test_a_signed_policy_needs_the_pki(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError):
        SecureAggregationWorkflow(SIGNED)
    with pytest.raises(InvalidParameterError):
        SecureAggregationWorkflow(SIGNED, pki={1: b"short"})
    with pytest.raises(InvalidParameterError):
        SecureAggregationWorkflow(SEMI, max_restarts=-1)


def test_a_signed_round_verifies_against_the_pki(tmp_path: Path) -> None:
    write_identities(tmp_path, range(1, N + 2))  # node 17 claims id 7, which the server's PKI lacks
    full = load_pki(tmp_path / "pki.json")
    server_pki = {cid: key for cid, key in full.items() if cid <= N}
    grid = grid_of(SIGNED, tmp_path, nodes=range(11, 11 + N + 1))
    outcome = workflow_of(SIGNED, pki=server_pki).aggregate(cast(Grid, grid), initial())
    assert outcome.survivors == tuple(range(11, 11 + N))
    assert set(outcome.client_ids) == set(range(11, 11 + N))
    check_mean(outcome, quantum_of(SIGNED, N))
    # each client recorded the round beside its identity key
    for cid in range(1, N + 1):
        assert len(round_log_path(tmp_path / f"identity-{cid}.key").read_text().splitlines()) == 1
    assert load_identity(tmp_path / "identity-1.key").public_bytes == full[1]


def test_a_wrong_pki_entry_makes_that_client_a_dropout(tmp_path: Path) -> None:
    write_identities(tmp_path, range(1, N + 1))
    pki = load_pki(tmp_path / "pki.json")
    other = tmp_path / "other"
    write_identities(other, [2])
    pki[2] = load_pki(other / "pki.json")[2]  # the server holds another key for client 2
    grid = grid_of(SIGNED, tmp_path)
    # client 2's signed keys fail the server's check; the others reject nothing of it
    # (they never see its keys), so the round goes on without it
    outcome = workflow_of(SIGNED, pki=pki).aggregate(cast(Grid, grid), initial())
    assert 12 in outcome.dropped and 12 not in outcome.survivors
    check_mean(outcome, quantum_of(SIGNED, N))


def test_a_restarted_round_spends_the_privacy_budget_once() -> None:
    policy = SecAggPolicy(
        threat_model=ThreatModel(server=ServerClass.SEMI_MALICIOUS),
        dp=DPMode.DISTRIBUTED,
        clip_norm=1.0,
    )
    grid = grid_of(policy, nodes=range(11, 11 + 12))
    grid.withhold = lambda stage, node: stage == Stage.GRAPH_SEED.value and node == 13
    workflow = workflow_of(policy)
    outcome = workflow.aggregate(cast(Grid, grid), initial())
    assert outcome.excluded == (13,)
    assert len(workflow.ledger) == 1


def test_the_node_never_forgets_a_round_while_its_state_lives() -> None:
    grid = grid_of(SEMI)
    workflow = workflow_of(SEMI)
    for _ in range(3):
        workflow.aggregate(cast(Grid, grid), initial())
    state = grid.contexts[11].state.config_records["secagg.rounds"]
    assert len(cast(list[bytes], state["ids"])) == 3


def test_a_persistent_round_log_survives_a_lost_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = tmp_path / "node-11.rounds"
    mod = SecureAggregationMod(SEMI, round_log=lambda c: log_file if c.node_id == 11 else None)
    grid = LoopbackGrid(mod, range(11, 11 + N), lambda node: {})
    # a server that runs one round id twice
    monkeypatch.setattr("protocols.flower.workflow.secrets.randbits", lambda bits: 41)
    workflow_of(SEMI).aggregate(cast(Grid, grid), initial())
    assert log_file.read_text().split() == ["secagg", "41"]
    # every node restarts: the context states are gone, node 11's round log file is not
    for node in grid.contexts:
        grid.contexts[node] = Context(
            run_id=1, node_id=node, node_config={}, state=RecordDict(), run_config={}
        )
    outcome = workflow_of(SEMI).aggregate(cast(Grid, grid), initial())
    assert 11 in outcome.dropped and 11 not in outcome.survivors  # it refused the second execution
    check_mean(outcome, quantum_of(SEMI, N))


# -- pulling for replies: the adaptive back-off, on a fake clock ----------------------------


class FakeClock:
    """Stands in for the workflow's ``time`` module: ``sleep`` advances the clock at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


#: (stage, node id) -> seconds after the push at which the reply shows up
Delay = Callable[[str, int], float]


class DelayedGrid(LoopbackGrid):
    """A :class:`LoopbackGrid` whose replies become visible ``delay(stage, node)`` seconds
    after their request was pushed (by the fake clock); every pull is time-stamped."""

    def __init__(self, clock: FakeClock, delay: Delay, nodes: Iterable[int]) -> None:
        super().__init__(SecureAggregationMod(SEMI), nodes, lambda node: {})
        self.clock = clock
        self.delay = delay
        self.visible_at: dict[str, float] = {}
        self.pulls: list[tuple[float, int]] = []  # (time, replies returned)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        batch = list(messages)
        ids = super().push_messages(batch)
        for msg, mid in zip(batch, ids):
            stage = str(msg.content.config_records[CONFIG_KEY]["stage"])
            delay = self.delay(stage, msg.metadata.dst_node_id)
            self.visible_at[mid] = self.clock.now + delay
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        ready = [mid for mid in message_ids if self.visible_at.get(mid, math.inf) <= self.clock.now]
        out = super().pull_messages(ready)
        self.pulls.append((self.clock.now, len(out)))
        return out


def delayed_round(
    monkeypatch: pytest.MonkeyPatch, delay: Delay, clock: FakeClock | None = None, **options: Any
) -> tuple[FakeClock, DelayedGrid, Any]:
    clock = clock if clock is not None else FakeClock()
    monkeypatch.setattr("protocols.flower.workflow.time", clock)
    grid = DelayedGrid(clock, delay, range(11, 11 + N))
    workflow = SecureAggregationWorkflow(SEMI, **{"stage_timeout": 5.0, **options})
    outcome = workflow.aggregate(cast(Grid, grid), initial())
    return clock, grid, outcome


STAGES = len(Stage)  # a semi-malicious round runs every stage


def test_a_stage_ends_a_few_milliseconds_after_its_last_reply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, grid, outcome = delayed_round(monkeypatch, lambda stage, node: 0.01)
    assert outcome.dropped == ()
    check_mean(outcome, quantum_of(SEMI, N))
    # each stage ends by 1.5 times the wait for its replies plus the first wait (the
    # back-off's growth), where fixed polling would take 0.2 s
    assert STAGES * 0.01 <= clock.now <= STAGES * (1.5 * 0.01 + 0.002)
    assert max(clock.sleeps) < 0.01


def test_fixed_polling_is_the_min_equal_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, grid, outcome = delayed_round(
        monkeypatch, lambda stage, node: 0.01, poll_interval=0.2, min_poll_interval=0.2
    )
    assert outcome.dropped == ()
    assert set(clock.sleeps) == {0.2}
    assert clock.now == pytest.approx(STAGES * 0.2)


def test_waits_grow_while_nothing_arrives_up_to_the_poll_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, grid, outcome = delayed_round(
        monkeypatch, lambda stage, node: 1.0, poll_interval=0.05, min_poll_interval=0.002
    )
    assert outcome.dropped == ()
    first_stage = clock.sleeps[: next(i for i, (_, k) in enumerate(grid.pulls) if k)]
    assert first_stage[0] == pytest.approx(0.002)
    for before, after in zip(first_stage, first_stage[1:]):
        assert after == pytest.approx(min(before * 1.5, 0.05))
    assert max(clock.sleeps) == pytest.approx(0.05)
    # one pull per poll_interval once capped: the 1 s wait needs about 20 pulls more
    assert len(first_stage) < 10 + 1.0 / 0.05


def test_a_reply_starts_the_waits_again_from_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, grid, outcome = delayed_round(
        monkeypatch,
        lambda stage, node: 0.1 if node % 2 else 0.5,
        poll_interval=0.2,
        min_poll_interval=0.002,
    )
    assert outcome.dropped == ()
    pulls = [k for _, k in grid.pulls]
    first_reply = pulls.index(N // 2)  # the odd nodes answer together
    assert clock.sleeps[first_reply] == pytest.approx(0.002)
    assert clock.sleeps[first_reply - 1] > 0.002


def test_the_stage_timeout_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    late = Stage.SHARE_KEYS.value

    def delay(stage: str, node: int) -> float:
        if stage == late and node == 12:
            return 2.0 - 1e-9  # just in time: pulled at the deadline
        if stage == late and node == 13:
            return 2.0 + 1e-6  # too late: a dropout
        return 0.0

    clock, grid, outcome = delayed_round(
        monkeypatch, delay, stage_timeout=2.0, poll_interval=0.3, min_poll_interval=0.002
    )
    assert 12 in outcome.survivors
    assert 13 in outcome.dropped and 13 not in outcome.survivors
    # the share-keys stage waited exactly its timeout (the last wait cut at the deadline)
    assert clock.now == pytest.approx(2.0, abs=1e-6)
    check_mean(outcome, quantum_of(SEMI, N))


def test_the_first_wait_is_capped_by_the_poll_interval() -> None:
    workflow = SecureAggregationWorkflow(SEMI, poll_interval=0.001)
    assert workflow.min_poll_interval == 0.001
    with pytest.raises(InvalidParameterError):
        SecureAggregationWorkflow(SEMI, min_poll_interval=0.0)


def test_replies_reach_the_server_as_they_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    handled: list[tuple[str, int, float]] = []
    clock = FakeClock()
    handle = SecAggServer.handle

    def recording(self: SecAggServer, message: Any) -> Any:
        stage = self.stage
        handled.append((stage.value if stage else "", message.sender, clock.now))
        return handle(self, message)

    monkeypatch.setattr(SecAggServer, "handle", recording)
    delayed_round(monkeypatch, lambda stage, node: 0.1 if node % 2 else 0.5, clock)
    advertise = [(cid, at) for stage, cid, at in handled if stage == Stage.ADVERTISE_KEYS.value]
    # clients 1, 3, 5 (odd nodes 11, 13, 15) were handled before the others replied
    assert sorted(cid for cid, at in advertise if at < 0.5) == [1, 3, 5]
    assert sorted(cid for cid, at in advertise if at >= 0.5) == [2, 4, 6]


def test_a_reply_in_time_counts_when_handling_others_runs_past_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy = FakeClock()
    handle = SecAggServer.handle

    def slow(self: SecAggServer, message: Any) -> Any:
        if self.stage is Stage.SHARE_KEYS and message.sender == 1:
            busy.now += 2.0  # the server is busy past the stage's deadline
        return handle(self, message)

    monkeypatch.setattr(SecAggServer, "handle", slow)

    def delay(stage: str, node: int) -> float:
        return 0.5 if stage == Stage.SHARE_KEYS.value and node == 12 else 0.0

    clock, grid, outcome = delayed_round(monkeypatch, delay, busy, stage_timeout=1.0)
    assert outcome.dropped == ()  # node 12 replied at 0.5 s, within the 1 s timeout
    check_mean(outcome, quantum_of(SEMI, N))
