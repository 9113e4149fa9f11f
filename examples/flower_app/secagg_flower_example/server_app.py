"""ServerApp: securely aggregated FedAvg with a central test-set evaluation after each round.

Every round it logs one line ``[round N] test accuracy A, user-level epsilon E``, which
the runners forward while the run goes on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from protocols.flower import SecureAggregationWorkflow
from protocols.flower.pki import load_pki
from secagg.demo import evaluate, load_federated
from secagg.errors import InvalidParameterError
from secagg_flower_example import POLICY, make_model

INFO = 20


def pki_file(context: Context) -> Path:
    """The PKI the server verifies the clients' signatures against (run config).

    ``pki-path`` if set, else ``pki.json`` in ``key-dir``.
    """
    config = context.run_config
    explicit = str(config.get("pki-path", ""))
    if explicit:
        return Path(explicit)
    key_dir = str(config.get("key-dir", ""))
    if not key_dir:
        raise InvalidParameterError(
            "set pki-path (or key-dir) in the run config: the server needs the clients' PKI"
        )
    return Path(key_dir) / "pki.json"


def build(
    num_rounds: int | None = None, result_path: str | None = None, pki_path: str | None = None
) -> ServerApp:
    """The ServerApp; arguments left ``None`` come from the run config (``flwr run``)."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        import torch

        torch.set_num_threads(1)  # the evaluation is tiny; the cores belong to the clients
        rounds = num_rounds if num_rounds is not None else int(context.run_config["num-rounds"])
        path = (
            result_path
            if result_path is not None
            else str(context.run_config.get("result-path", ""))
        )
        test = load_federated(3, seed=0)  # the held-out test set does not depend on the split
        model = make_model()

        pki = load_pki(pki_path if pki_path is not None else pki_file(context))
        workflow = SecureAggregationWorkflow(POLICY, stage_timeout=120.0, pki=pki)
        started = time.monotonic()

        def accuracy(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            model.load_state_dict(arrays.to_torch_state_dict())
            value = evaluate(model, test.test_x, test.test_y)
            spent = workflow.epsilon_spent
            log(
                INFO,
                "[round %d] test accuracy %.4f, user-level epsilon %s (%.0f s)",
                server_round,
                value,
                "0" if spent is None else f"{spent:.2f}",
                time.monotonic() - started,
            )
            return MetricRecord({"accuracy": value})

        result = workflow.start(
            grid, ArrayRecord(model.state_dict()), num_rounds=rounds, evaluate_fn=accuracy
        )
        last = result.rounds[-1] if result.rounds else None
        epsilon = last.epsilon if last is not None else None
        final = result.evaluations[max(result.evaluations)]["accuracy"]
        log(
            INFO,
            "final test accuracy %.4f, user-level epsilon %s at delta %.1e",
            final,
            epsilon,
            workflow.effective_delta,
        )
        if path:
            summary = {
                "accuracy": {str(r): m["accuracy"] for r, m in result.evaluations.items()},
                "epsilon": epsilon,
                "delta": workflow.effective_delta,
                "survivors": [None if r is None else len(r.survivors) for r in result.rounds],
            }
            Path(path).write_text(json.dumps(summary, indent=2))

    return server_app


app = build()
