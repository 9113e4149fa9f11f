"""Run the app on a real Flower deployment on this machine: a SuperLink and N SuperNodes.

    python examples/flower_app/run_deployment.py [--supernodes 5] [--rounds 3]

Every SuperNode gets its own identity key and the PKI through ``--node-config`` (and keeps
the log of the rounds it took part in beside its key); the ServerApp gets the PKI through
the run config (``pki-path``). The processes run on loopback with free ports and are
stopped at the end. By hand (across
machines: ``--host 0.0.0.0`` on the SuperLink, and TLS instead of ``--insecure``)::

    flower-superlink --insecure --disable-runtime-dependency-installation
    flower-supernode --insecure --superlink 127.0.0.1:8000 --port 9094 --node-config \\
        'partition-id=0 num-partitions=5 secagg-client-id=1 \\
         secagg-identity="keys/identity-1.key" secagg-pki="keys/pki.json"'
    flwr run examples/flower_app my-deployment --run-config 'pki-path="keys/pki.json"'

with ``[superlink.my-deployment]``, ``address = "127.0.0.1:8000"`` and ``insecure = true``
in ``~/.flwr/config.toml``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from protocols.flower.deployment import LocalDeployment
from protocols.flower.pki import write_identities

APP = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # five is the smallest cohort the default threat model (malicious server, 5% colluders,
    # 10% dropouts) admits
    parser.add_argument("--supernodes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        pki = write_identities(keys, range(1, args.supernodes + 1))
        node_configs = [
            {
                "partition-id": i,
                "num-partitions": args.supernodes,
                "secagg-client-id": i + 1,
                "secagg-identity": str(keys / f"identity-{i + 1}.key"),
                "secagg-pki": str(pki),
            }
            for i in range(args.supernodes)
        ]
        result = Path(tmp) / "result.json"
        with LocalDeployment(APP, num_supernodes=args.supernodes, node_configs=node_configs) as deployment:
            print(f"SuperLink on 127.0.0.1:{deployment.superlink_port}, {args.supernodes} SuperNodes")
            deployment.run({"num-rounds": args.rounds, "result-path": str(result), "pki-path": str(pki)})
            deployment.wait_for_file(result, timeout=600 * args.rounds)
        print(json.dumps(json.loads(result.read_text()), indent=2))


if __name__ == "__main__":
    main()
