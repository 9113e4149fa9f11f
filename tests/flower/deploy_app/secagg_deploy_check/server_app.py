"""ServerApp: one secure aggregation round over every connected SuperNode; results to a file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp

from protocols.flower import SecureAggregationWorkflow
from secagg_deploy_check import POLICY

app = ServerApp()


def _write(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    results = Path(str(config["result-dir"]))
    workflow = SecureAggregationWorkflow(
        POLICY,
        stage_timeout=float(config["stage-timeout"]),
        train_timeout=float(config["train-timeout"]),
        poll_interval=0.2,
    )
    try:
        nodes = workflow.wait_for_nodes(grid, int(config["expected-nodes"]), timeout=120.0)
        initial = ArrayRecord({"w": Array(np.zeros(int(config["dimension"])))})
        outcome = workflow.aggregate(grid, initial, node_ids=nodes, server_round=1)
    except Exception as exc:  # report to the test instead of dying silently
        _write(results / "server.json", {"error": f"{type(exc).__name__}: {exc}"})
        raise
    _write(
        results / "server.json",
        {
            "survivors": list(outcome.survivors),
            "dropped": list(outcome.dropped),
            "client_ids": {str(k): v for k, v in outcome.client_ids.items()},
            "update": outcome.update["w"].numpy().tolist(),
            "seconds": outcome.seconds,
        },
    )
