"""Run the app in Flower's simulation runtime (Ray backend), the way Flower recommends.

    python examples/flower_app/run_simulation.py [--clients 20] [--rounds 10] [--logs DIR]

This is ``flwr run examples/flower_app <superlink>`` against a SuperLink started here in
simulation mode (``flower-superlink --simulation``) on a free loopback port, with
``--federation-config num-supernodes=N``: the replacement Flower names for the deprecated
``flwr.simulation.run_simulation``. Identity keys for the virtual clients (with their round
logs), the PKI the server verifies against and every process' log go to ``--logs`` (default:
a new temporary directory, kept and named at the start); the ServerApp's per-round lines
(test accuracy, user-level epsilon) are forwarded while it runs and its summary is printed
at the end. Offline; one to two minutes on two cores (the default run took 64 s).

By hand, with ``[superlink.sim]``, ``address = "127.0.0.1:8000"``, ``insecure = true`` in
``$FLWR_HOME/config.toml``::

    flower-superlink --insecure --simulation --disable-runtime-dependency-installation
    flwr run examples/flower_app sim --stream --federation-config 'num-supernodes=20' \\
        --run-config 'key-dir="keys"'
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

from protocols.flower.deployment import OFFLINE_ENVIRONMENT, LocalDeployment
from protocols.flower.pki import write_identities

APP = Path(__file__).parent

#: what the ServerApp logs that is worth forwarding while the run goes on
PROGRESS_MARKERS = ("[round ", "final test accuracy", "WARNING", "ERROR", "Traceback", "Error")
#: Flower's notice that its default federation size changed (this runner always sets it)
IGNORED = ("default simulated SuperNodes changed",)
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def forward(name: str, line: str) -> None:
    """Print the run's progress lines (the ServerApp's log reaches ``flwr run --stream``)."""
    text = _COLOUR.sub("", line).strip()
    if (
        name.startswith("run-")
        and any(m in text for m in PROGRESS_MARKERS)
        and not any(m in text for m in IGNORED)
    ):
        print(f"  {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="virtual SuperNodes (default 20)")
    parser.add_argument("--rounds", type=int, default=10, help="training rounds (default 10)")
    parser.add_argument(
        "--logs", type=Path, default=None, help="keys and logs go here (default: a new temp dir)"
    )
    args = parser.parse_args()
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    workdir = (
        args.logs.resolve()
        if args.logs
        else Path(tempfile.mkdtemp(prefix="secagg-flower-simulation-"))
    )
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"keys and logs: {workdir} (kept after the run)", flush=True)
    print(
        f"{args.clients} virtual clients, {args.rounds} rounds: one to two minutes on two cores",
        flush=True,
    )
    keys = workdir / "keys"
    write_identities(keys, range(1, args.clients + 1))
    result = workdir / "result.json"
    result.unlink(missing_ok=True)
    started = time.monotonic()
    with LocalDeployment(
        APP,
        num_supernodes=args.clients,
        workdir=workdir,
        simulation=True,
        announce=lambda line: print(line, flush=True),
    ) as deployment:
        deployment.run(
            {"num-rounds": args.rounds, "key-dir": str(keys), "result-path": str(result)},
            federation_config={
                "client-resources-num-cpus": 1,
                "init-args-num-cpus": os.cpu_count() or 2,
            },
        )
        deployment.wait_for_file(result, timeout=300 + 120 * args.rounds, on_line=forward)
        deployment.wait_for_runs(60, on_line=forward)  # the log's last lines trail the result
    print(f"done in {time.monotonic() - started:.0f} s; logs in {workdir}")
    print(json.dumps(json.loads(result.read_text()), indent=2))


if __name__ == "__main__":
    main()
