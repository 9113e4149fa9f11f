"""ClientApp: the secure aggregation mod in front of a train function with a known update."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from protocols.flower import SecureAggregationMod
from secagg_deploy_check import POLICY

app = ClientApp(mods=[SecureAggregationMod(POLICY)])


def known_update(partition: int, dimension: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.random.default_rng(5000 + partition).normal(0.0, 0.05, dimension)


@app.train()
def train(msg: Message, context: Context) -> Message:
    partition = int(context.node_config["partition-id"])
    results = Path(str(context.run_config["result-dir"]))
    weights = msg.content.array_records["arrays"]["w"].numpy()
    update = known_update(partition, weights.shape[0])
    record = {
        "node_id": context.node_id,
        "update": update.tolist(),
    }
    (results / f"client-{partition}.json").write_text(json.dumps(record))
    if partition == int(context.run_config["victim"]):
        # stall mid-round (keys already shared) until the test kills this SuperNode
        (results / "victim-training").write_text(str(context.node_id))
        time.sleep(3600)
    return Message(
        RecordDict({"arrays": ArrayRecord({"w": Array(weights + update)})}), reply_to=msg
    )
