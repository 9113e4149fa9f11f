"""Our protocol inside Flower's simulation engine (Ray backend), with dozens of virtual clients.

Every virtual SuperNode runs the real ClientApp with :class:`SecureAggregationMod`; the
ServerApp runs :class:`SecureAggregationWorkflow` over the engine's real ``Grid``. One
client crashes in its train function (a dropout at the masked-input stage, after it
shared its keys): the server must recover its masks and return exactly the mean of the
others' updates. The malicious-server variant runs, so clients sign their keys and the
survivor set, with identity keys read from files named in their configuration; the
server verifies every signature it relays against the same PKI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("ray")

from flwr.app import Array, ArrayRecord, Context, Message, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from protocols.flower import SecAggPolicy, SecureAggregationMod, SecureAggregationWorkflow  # noqa: E402
from protocols.flower.pki import load_identity, load_pki, write_identities  # noqa: E402
from secagg.primitives.encoding import FixedPointEncoder  # noqa: E402
from secagg.recipe import DPMode  # noqa: E402
from threat_models.model import ThreatModel  # noqa: E402

NUM_CLIENTS = 24
DIMENSION = 37
CRASHING = 5  # partition id whose train function fails


def client_update(partition: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.random.default_rng(7000 + partition).normal(0.0, 0.05, DIMENSION)


POLICY = SecAggPolicy(threat_model=ThreatModel(), dp=DPMode.NONE, clip_norm=None)


def build_apps(key_dir: Path, results: dict[str, Any]) -> tuple[ServerApp, ClientApp]:
    policy = POLICY
    pki_path = str(key_dir / "pki.json")
    keys = str(key_dir)

    def partition(context: Context) -> int:
        return int(context.node_config["partition-id"])

    mod = SecureAggregationMod(
        policy,
        client_id=lambda c: partition(c) + 1,
        identity=lambda c: load_identity(f"{keys}/identity-{partition(c) + 1}.key"),
        pki=lambda c: load_pki(pki_path),
    )
    client_app = ClientApp(mods=[mod])

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        pid = partition(context)
        if pid == CRASHING:
            raise RuntimeError("simulated crash in the middle of the round")
        weights = msg.content.array_records["arrays"]["w"].numpy()
        return Message(
            RecordDict({"arrays": ArrayRecord({"w": Array(weights + client_update(pid))})}),
            reply_to=msg,
        )

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        workflow = SecureAggregationWorkflow(
            policy, stage_timeout=120.0, poll_interval=0.05, pki=load_pki(pki_path)
        )
        workflow.wait_for_nodes(grid, NUM_CLIENTS, timeout=120.0)
        initial = ArrayRecord({"w": Array(np.zeros(DIMENSION))})
        results["round"] = workflow.aggregate(grid, initial, server_round=1)

    return server_app, client_app


class _WithoutRunSimulationDeprecation(logging.Filter):
    """Drops Flower's notice that ``run_simulation`` is deprecated, and only that record.

    Flower recommends ``flwr run`` against a simulation SuperLink instead (the example
    does so, and ``test_deployment.py`` runs that path); but that runs the apps from an
    app directory in other processes. This test needs its apps in-process -- closures
    that hand the round's outcome back -- and Flower has no non-deprecated in-process
    entry point, so it keeps ``run_simulation`` and silences the notice (a log record
    of the ``flwr`` logger, not a Python warning).
    """

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "The `run_simulation` function is deprecated" in record.getMessage():
            self.dropped += 1
            return False
        return True


@pytest.fixture
def without_run_simulation_deprecation() -> Iterator[_WithoutRunSimulationDeprecation]:
    flower_logger = logging.getLogger("flwr")
    quiet = _WithoutRunSimulationDeprecation()
    flower_logger.addFilter(quiet)
    try:
        yield quiet
    finally:
        flower_logger.removeFilter(quiet)


@pytest.mark.slow
def test_secure_aggregation_in_the_simulation_engine(
    tmp_path: Path, without_run_simulation_deprecation: _WithoutRunSimulationDeprecation
) -> None:
    write_identities(tmp_path, range(1, NUM_CLIENTS + 1))
    results: dict[str, Any] = {}
    server_app, client_app = build_apps(tmp_path, results)
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=NUM_CLIENTS,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False},
        },
    )
    assert "round" in results, "the ServerApp did not finish its round"
    outcome = results["round"]
    partitions = {node: cid - 1 for node, cid in outcome.client_ids.items()}
    assert sorted(partitions.values()) == list(range(NUM_CLIENTS))
    dropped = {partitions[node] for node in outcome.dropped}
    survivors = {partitions[node] for node in outcome.survivors}
    assert dropped == {CRASHING}
    assert survivors == set(range(NUM_CLIENTS)) - {CRASHING}
    expected = np.mean([client_update(p) for p in sorted(survivors)], axis=0)
    got = outcome.update["w"].numpy()
    # fixed-point encoding: each update is off by less than one quantum, so the mean too
    quantum = cast(FixedPointEncoder, POLICY.encoder(NUM_CLIENTS, DIMENSION)).quantum
    assert np.max(np.abs(got - expected)) < quantum
    assert np.allclose(outcome.arrays["w"].numpy(), got)
