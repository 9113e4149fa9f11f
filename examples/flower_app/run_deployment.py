"""Run the app on a real Flower deployment on this machine: a SuperLink and N SuperNodes.

    python examples/flower_app/run_deployment.py [--supernodes 5] [--rounds R] [--logs DIR]

Every SuperNode gets its own identity key and the PKI through ``--node-config`` (and keeps
the log of the rounds it took part in beside its key); the ServerApp gets the PKI through
the run config (``pki-path``). The processes run on loopback with free ports and are
stopped at the end. Keys and every process' log go to ``--logs`` (default: a new temporary
directory), named at the start and kept after the run; each process started and each
stage and round the ServerApp logs (test accuracy, user-level epsilon) are printed as they
happen, the ServerApp's JSON summary at the end. A deployed SuperNode starts a fresh
ClientApp process for every message (six per round), so a round costs seconds per
SuperNode: the default run (five SuperNodes, four rounds) took 9.5 minutes on two cores
busy with other work (load 7 to 9), less on an idle machine; the start prints an estimate
and every round re-estimates the time left. With five clients the distributed DP noise is large next
to
the clipped updates (noise multiplier 1 on a mean of five): accuracy rises from chance
(0.1) to about 0.3 in three or four rounds and keeps rising slowly; more SuperNodes
divide the noise, at the price of slower rounds.

By hand (across machines: ``--host 0.0.0.0`` on the SuperLink, and TLS instead of
``--insecure``)::

    flower-superlink --insecure --disable-runtime-dependency-installation
    flower-supernode --insecure --superlink 127.0.0.1:8000 --port 9094 --node-config \\
        'partition-id=0 num-partitions=5 secagg-client-id=1 \\
         secagg-identity="keys/identity-1.key" secagg-pki="keys/pki.json"'
    flwr run examples/flower_app my-deployment --stream --run-config 'pki-path="keys/pki.json"'

with ``[superlink.my-deployment]``, ``address = "127.0.0.1:8000"`` and ``insecure = true``
in ``~/.flwr/config.toml``.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from protocols.flower.deployment import LocalDeployment
from protocols.flower.pki import write_identities

APP = Path(__file__).parent

#: what the ServerApp logs that is worth forwarding while the run goes on
PROGRESS_MARKERS = (
    "[round ",
    "[secagg round ",
    "final test accuracy",
    "WARNING",
    "ERROR",
    "Traceback",
    "Error",
)
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")

_ROUND_DONE = re.compile(r"\[round (\d+)\] test accuracy .*\((\d+) s\)")

#: measured on two cores busy with other work (load 7 to 9): 134 s a round with five
#: SuperNodes, 40 s to start and stop
_ROUND_S_PER_NODE = 27.0
_STARTUP_S = 40.0


class Progress:
    """Forwards the run's progress lines and re-estimates the time left after each round."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds

    def __call__(self, name: str, line: str) -> None:
        """Print the run's progress (the ServerApp's log reaches ``flwr run --stream``) and
        any error a SuperNode or the SuperLink logs."""
        text = _COLOUR.sub("", line).strip()
        if name.startswith("run-") and any(marker in text for marker in PROGRESS_MARKERS):
            print(f"  {text}", flush=True)
            done = _ROUND_DONE.search(text)
            if done is not None and 0 < int(done.group(1)) < self.rounds:
                finished, seconds = int(done.group(1)), int(done.group(2))
                left = (self.rounds - finished) * seconds / finished
                print(
                    f"  ... {seconds / finished:.0f} s a round: about {left / 60:.1f} min left",
                    flush=True,
                )
        elif not name.startswith("run-") and ("ERROR" in text or "Traceback" in text):
            print(f"  [{name}] {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # five is the smallest cohort the default threat model (malicious server, 5% colluders,
    # 10% dropouts) admits
    parser.add_argument("--supernodes", type=int, default=5, help="SuperNode processes (default 5)")
    parser.add_argument("--rounds", type=int, default=4, help="training rounds (default 4)")
    parser.add_argument(
        "--local-epochs", type=int, default=2, help="local epochs per round (default 2)"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=0.3, help="local SGD step (default 0.3)"
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="keys and logs go here (default: a new temp dir)"
    )
    args = parser.parse_args()
    workdir = (
        args.logs.resolve()
        if args.logs
        else Path(tempfile.mkdtemp(prefix="secagg-flower-deployment-"))
    )
    workdir.mkdir(parents=True, exist_ok=True)
    estimate = _STARTUP_S + _ROUND_S_PER_NODE * args.supernodes * args.rounds
    print(f"keys and logs: {workdir} (kept after the run)", flush=True)
    print(
        f"{args.supernodes} SuperNodes, {args.rounds} rounds: about {estimate / 60:.0f} min on two "
        f"busy cores "
        "(a fresh ClientApp process per message), less on an idle machine",
        flush=True,
    )
    keys = workdir / "keys"
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
    result = workdir / "result.json"
    result.unlink(missing_ok=True)
    started = time.monotonic()
    with LocalDeployment(
        APP,
        num_supernodes=args.supernodes,
        node_configs=node_configs,
        workdir=workdir,
        announce=lambda line: print(line, flush=True),
    ) as deployment:
        deployment.run(
            {
                "num-rounds": args.rounds,
                "local-epochs": args.local_epochs,
                "learning-rate": args.learning_rate,
                "result-path": str(result),
                "pki-path": str(pki),
            }
        )
        progress = Progress(args.rounds)
        deployment.wait_for_file(result, timeout=600 + 600 * args.rounds, on_line=progress)
        deployment.wait_for_runs(60, on_line=progress)  # the log's last lines trail the result
    print(f"done in {time.monotonic() - started:.0f} s; logs in {workdir}")
    print(json.dumps(json.loads(result.read_text()), indent=2))


if __name__ == "__main__":
    main()
