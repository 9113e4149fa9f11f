"""A real Flower deployment on loopback: SuperLink and SuperNodes as separate processes.

The test starts a SuperLink and four SuperNodes, submits the app in ``deploy_app/`` with
``flwr run``, and kills one SuperNode (SIGKILL, with its ClientApp process) while that client trains -- after
it has shared its keys, in the middle of the masked-input stage. The round must finish
with the other three: the aggregate equals the plaintext mean of the survivors' updates,
which each client wrote down before sending. Every process is stopped in all cases.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import cast

import numpy as np
import pytest

pytest.importorskip("flwr")

from protocols.flower.deployment import LocalDeployment, process_alive  # noqa: E402
from protocols.flower.policy import SecAggPolicy  # noqa: E402
from secagg.encoding import FixedPointEncoder  # noqa: E402
from secagg.recipe import DPMode  # noqa: E402
from threat_models.model import ServerClass, ThreatModel  # noqa: E402

APP_DIR = Path(__file__).parent / "deploy_app"
#: the policy of deploy_app (kept in step with deploy_app/secagg_deploy_check/__init__.py)
POLICY = SecAggPolicy(
    threat_model=ThreatModel(server=ServerClass.SEMI_MALICIOUS, colluding_fraction=0.0, dropout_fraction=0.25),
    dp=DPMode.NONE,
    clip_norm=None,
)
NODES = 4
VICTIM = 2  # partition id of the SuperNode killed mid-round


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_deployment_survives_a_supernode_killed_mid_round(tmp_path: Path) -> None:
    node_configs = [{"partition-id": i, "num-partitions": NODES} for i in range(NODES)]
    results = tmp_path / "results"
    results.mkdir()
    started = time.monotonic()
    with LocalDeployment(APP_DIR, num_supernodes=NODES, node_configs=node_configs, workdir=tmp_path / "flwr") as deployment:
        deployment.run(
            {"result-dir": str(results), "victim": VICTIM, "expected-nodes": NODES, "train-timeout": 30.0}
        )
        first = deployment.wait_for_file(results / "victim-training", results / "server.json", timeout=180)
        assert first.name == "victim-training", (first.read_text(), deployment.logs_summary())
        deployment.kill_supernode(VICTIM)
        assert not deployment.supernode_alive(VICTIM)
        deployment.wait_for_file(results / "server.json", timeout=180)
        logs = deployment.logs_summary()
        print(deployment.tail("run-0", 40))
    print(f"deployment round finished and cleaned up after {time.monotonic() - started:.0f} s")
    # nothing the deployment started (nor anything those started) outlives it
    survivors_of_teardown = [pid for pid in deployment.stopped_pids if process_alive(pid)]
    assert survivors_of_teardown == [], logs

    server = json.loads((results / "server.json").read_text())
    assert "error" not in server, f"{server.get('error')}\n{logs}"
    clients = {p: json.loads((results / f"client-{p}.json").read_text()) for p in range(NODES)}
    by_node = {c["node_id"]: c for c in clients.values()}
    victim_node = clients[VICTIM]["node_id"]
    # the killed node is out; on a loaded machine an honest straggler may be dropped too,
    # and the protocol must then still return exactly the mean of whoever survived
    assert victim_node in server["dropped"]
    assert victim_node not in server["survivors"]
    assert sorted(server["survivors"] + server["dropped"]) == sorted(by_node)
    assert len(server["survivors"]) >= 2
    expected = np.mean([by_node[n]["update"] for n in server["survivors"]], axis=0)
    got = np.asarray(server["update"])
    # fixed-point encoding: each update is off by less than one quantum, so the mean too
    quantum = cast(FixedPointEncoder, POLICY.encoder(NODES, len(expected))).quantum
    assert np.max(np.abs(got - expected)) < quantum
