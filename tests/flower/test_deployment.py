"""A real Flower deployment on loopback: SuperLink and SuperNodes as separate processes.

The test starts a SuperLink and four SuperNodes, submits the app in ``deploy_app/`` with
``flwr run``, and kills one SuperNode (SIGKILL, with its ClientApp process) while that
client trains -- after it has shared its keys, in the middle of the masked-input stage.
The round must finish with the other three: the aggregate equals the plaintext mean of
the survivors' updates, which each client wrote down before sending. Every process is
stopped in all cases.
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
from secagg.errors import InvalidParameterError  # noqa: E402
from secagg.primitives.encoding import FixedPointEncoder  # noqa: E402
from secagg.recipe import DPMode  # noqa: E402
from threat_models.model import ServerClass, ThreatModel  # noqa: E402

APP_DIR = Path(__file__).parent / "deploy_app"
#: the policy of deploy_app (kept in step with deploy_app/secagg_deploy_check/__init__.py)
POLICY = SecAggPolicy(
    threat_model=ThreatModel(
        server=ServerClass.SEMI_MALICIOUS, colluding_fraction=0.0, dropout_fraction=0.25
    ),
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
    with LocalDeployment(
        APP_DIR, num_supernodes=NODES, node_configs=node_configs, workdir=tmp_path / "flwr"
    ) as deployment:
        deployment.run(
            {
                "result-dir": str(results),
                "victim": VICTIM,
                "expected-nodes": NODES,
                "train-timeout": 30.0,
            }
        )
        first = deployment.wait_for_file(
            results / "victim-training", results / "server.json", timeout=180
        )
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


def test_logs_are_followed_line_by_line_once(tmp_path: Path) -> None:
    deployment = LocalDeployment(APP_DIR, num_supernodes=2, workdir=tmp_path)
    seen: list[tuple[str, str]] = []
    (tmp_path / "superlink.log").write_text("one\ntw")
    deployment.follow_logs(lambda name, line: seen.append((name, line)))
    assert seen == [("superlink", "one")]  # "tw" is not a line yet
    with open(tmp_path / "superlink.log", "a") as log:
        log.write("o\r\nthree\n")
    (tmp_path / "run-0.log").write_text("\x1b[92mINFO\x1b[0m: [round 1]\n")
    deployment.follow_logs(lambda name, line: seen.append((name, line)))
    deployment.follow_logs(lambda name, line: seen.append((name, line)))
    assert seen == [
        ("superlink", "one"),
        ("run-0", "\x1b[92mINFO\x1b[0m: [round 1]"),
        ("superlink", "two"),
        ("superlink", "three"),
    ]


def test_simulation_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="not for a simulation"):
        LocalDeployment(
            APP_DIR, num_supernodes=2, simulation=True, node_configs=[{}, {}], workdir=tmp_path
        )
    deployment = LocalDeployment(APP_DIR, num_supernodes=2, workdir=tmp_path)
    with pytest.raises(InvalidParameterError, match="simulation=True"):
        deployment.run(federation_config={"num-supernodes": 2})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_simulation_runtime_runs_the_app_through_flwr_run(tmp_path: Path) -> None:
    """``flower-superlink --simulation`` + ``flwr run --federation-config``: Flower's
    replacement for the deprecated ``run_simulation``, with progress streamed from the logs."""
    results = tmp_path / "results"
    results.mkdir()
    nodes = NODES  # the cohort deploy_app's policy is made for
    announced: list[str] = []
    lines: list[tuple[str, str]] = []
    with LocalDeployment(
        APP_DIR,
        num_supernodes=nodes,
        workdir=tmp_path / "flwr",
        simulation=True,
        announce=announced.append,
    ) as deployment:
        deployment.run(
            {"result-dir": str(results), "victim": -1, "expected-nodes": nodes},
            federation_config={"client-resources-num-cpus": 1, "init-args-num-cpus": 2},
        )
        deployment.wait_for_file(
            results / "server.json", timeout=240, on_line=lambda n, t: lines.append((n, t))
        )
        assert deployment.wait_for_runs(60, on_line=lambda n, t: lines.append((n, t)))
        logs = deployment.logs_summary()
    assert [pid for pid in deployment.stopped_pids if process_alive(pid)] == [], logs
    assert announced[0].startswith("started superlink (pid ")
    assert any(a.startswith("started run-0 (pid ") for a in announced)
    assert not any(a.startswith("started supernode") for a in announced)  # virtual SuperNodes only
    server = json.loads((results / "server.json").read_text())
    assert "error" not in server, f"{server.get('error')}\n{logs}"
    assert server["dropped"] == [] and len(server["survivors"]) == nodes
    by_node = {
        c["node_id"]: c
        for c in (json.loads((results / f"client-{p}.json").read_text()) for p in range(nodes))
    }
    assert sorted(by_node) == sorted(server["survivors"])
    expected = np.mean([c["update"] for c in by_node.values()], axis=0)
    quantum = cast(FixedPointEncoder, POLICY.encoder(nodes, len(expected))).quantum
    assert np.max(np.abs(np.asarray(server["update"]) - expected)) < quantum
    # the ServerApp's log reached the runner line by line, and Flower printed no deprecation
    assert any(
        name == "run-0" and "[secagg round 1] stage unmasking" in text for name, text in lines
    )
    assert not [text for _, text in lines if "DEPRECATED" in text]
