"""ClientApp: a plain PyTorch train function behind the secure aggregation mod."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from secagg_flower_example import make_model, partition, secure_aggregation_mod


def train(msg: Message, context: Context) -> Message:
    """Local SGD from the global model (``local-epochs``, ``learning-rate`` of the run config).

    The mod turns the trained model into a clipped, noised, masked update.
    """
    import torch

    from secagg.demo import train_locally

    # a softmax regression gains nothing from intra-op threads, and on a machine whose
    # cores are shared by several ClientApp processes they make it several times slower
    torch.set_num_threads(1)
    data, pid = partition(context)
    model = make_model()
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    rng = np.random.default_rng(int(context.node_id) % 2**32)
    epochs = int(context.run_config.get("local-epochs", 2))
    lr = float(context.run_config.get("learning-rate", 0.3))
    train_locally(
        model, data.client_x[pid], data.client_y[pid], epochs=epochs, lr=lr, batch_size=16, rng=rng
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"num-examples": len(data.client_y[pid])}),
        }
    )
    return Message(content, reply_to=msg)


def build() -> ClientApp:
    """The ClientApp (identity keys: see :func:`secagg_flower_example.secure_aggregation_mod`)."""
    client_app = ClientApp(mods=[secure_aggregation_mod()])
    client_app.train()(train)
    return client_app


app = build()
