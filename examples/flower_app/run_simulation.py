"""Run the app in Flower's simulation engine (Ray backend).

    python examples/flower_app/run_simulation.py [--clients 20] [--rounds 10]

Identity keys for the virtual clients, their round logs and the PKI the server verifies
against go to a temporary directory; the summary (test accuracy per round, user-level
epsilon) is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from protocols.flower.deployment import OFFLINE_ENVIRONMENT

for key, value in OFFLINE_ENVIRONMENT.items():  # before Flower is imported
    os.environ.setdefault(key, value)
sys.path.insert(0, str(Path(__file__).parent))

from flwr.simulation import run_simulation  # noqa: E402
from secagg_flower_example import client_app, server_app  # noqa: E402

from protocols.flower.pki import write_identities  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = write_identities(tmp, range(1, args.clients + 1))
        result = Path(tmp) / "result.json"
        run_simulation(
            server_app=server_app.build(num_rounds=args.rounds, result_path=str(result), pki_path=str(pki)),
            client_app=client_app.build(key_dir=tmp),
            num_supernodes=args.clients,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {"num_cpus": os.cpu_count() or 2, "include_dashboard": False},
            },
        )
        if result.exists():
            print(result.read_text())


if __name__ == "__main__":
    main()
