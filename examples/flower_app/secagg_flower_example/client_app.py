"""ClientApp: a plain PyTorch train function behind the secure aggregation mod."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from secagg_flower_example import make_model, partition, secure_aggregation_mod


def train(msg: Message, context: Context) -> Message:
    """Two epochs of SGD from the global model; the mod turns the result into a masked update."""
    from secagg.demo import train_locally

    data, pid = partition(context)
    model = make_model()
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    rng = np.random.default_rng(int(context.node_id) % 2**32)
    train_locally(model, data.client_x[pid], data.client_y[pid], epochs=2, lr=0.3, batch_size=16, rng=rng)
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"num-examples": len(data.client_y[pid])}),
        }
    )
    return Message(content, reply_to=msg)


def build(key_dir: str | None = None) -> ClientApp:
    """The ClientApp (``key_dir``: identity keys of a simulation, see the package docstring)."""
    client_app = ClientApp(mods=[secure_aggregation_mod(key_dir)])
    client_app.train()(train)
    return client_app


app = build()
