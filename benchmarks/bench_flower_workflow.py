"""One secure aggregation round in Flower's simulation engine against the same round in process.

    python benchmarks/bench_flower_workflow.py [--n 10 50] [--d 100000] [--reps 2] [--quick]

For each cohort size ``n`` one simulation (``flwr.simulation.run_simulation``, Ray backend,
``n`` virtual SuperNodes running the real ClientApp with :class:`SecureAggregationMod`) is
started; its ServerApp waits for every node, runs one warm-up round, then ``reps`` times,
interleaved:

* a round of :class:`SecureAggregationWorkflow` polling at a fixed 0.2 s (the behaviour
  before the adaptive back-off: ``min_poll_interval = poll_interval = 0.2``),
* a round of the workflow with its defaults (first wait 2 ms, growing while nothing
  arrives, capped at ``poll_interval = 0.2``),
* the same round in process: :func:`protocols.simulate` with the same ``n``, ``d``,
  protocol (SecAgg+ on a Harary graph, malicious-server threat model: signed keys, graph
  seed, consistency check), parameters and encoder.

Times are wall-clock seconds (a Flower round is bounded by waiting, not by this process'
work: the clients run in Ray's worker processes); the in-process round's CPU time is shown
too. The median over the repetitions is reported, and the ratios are of medians measured
in one run. The load average is printed: the machine may be shared. With
``BENCH_VERBOSE=1`` the workflow's per-stage lines (replies and seconds) are shown too.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from protocols import simulate
from protocols.flower import SecAggPolicy, SecureAggregationMod, SecureAggregationWorkflow
from protocols.flower.deployment import OFFLINE_ENVIRONMENT
from protocols.flower.pki import load_identity, load_pki, write_identities
from secagg.recipe import DPMode
from threat_models.model import ThreatModel

POLICY = SecAggPolicy(threat_model=ThreatModel(), dp=DPMode.NONE, clip_norm=None)
FIXED_POLL = 0.2


def client_update(partition: int, d: int) -> np.ndarray:
    return np.random.default_rng(5000 + partition).uniform(-1.0, 1.0, d)


def measure(n: int, d: int, reps: int, key_dir: Path) -> dict[str, list[float]]:
    """Run the interleaved rounds of one cohort size; returns the seconds of each kind."""
    write_identities(key_dir, range(1, n + 1))
    pki_path = key_dir / "pki.json"
    times: dict[str, list[float]] = {
        "fixed": [],
        "adaptive": [],
        "local_wall": [],
        "local_cpu": [],
        "warmup": [],
    }
    updates = {cid: client_update(cid - 1, d) for cid in range(1, n + 1)}
    failures: list[BaseException] = []

    def partition(context: Context) -> int:
        return int(context.node_config["partition-id"])

    mod = SecureAggregationMod(
        POLICY,
        client_id=lambda c: partition(c) + 1,
        identity=lambda c: load_identity(key_dir / f"identity-{partition(c) + 1}.key"),
        pki=lambda c: load_pki(pki_path),
    )
    client_app = ClientApp(mods=[mod])

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        weights = msg.content.array_records["arrays"]["w"].numpy()
        update = client_update(partition(context), d)
        return Message(
            RecordDict({"arrays": ArrayRecord({"w": Array(weights + update)})}), reply_to=msg
        )

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            pki = load_pki(pki_path)
            fixed = SecureAggregationWorkflow(
                POLICY,
                stage_timeout=600.0,
                poll_interval=FIXED_POLL,
                min_poll_interval=FIXED_POLL,
                pki=pki,
            )
            adaptive = SecureAggregationWorkflow(
                POLICY, stage_timeout=600.0, poll_interval=FIXED_POLL, pki=pki
            )
            adaptive.wait_for_nodes(grid, n, timeout=600.0)
            initial = ArrayRecord({"w": Array(np.zeros(d))})
            params = POLICY.parameters(n)
            encoder = POLICY.encoder(n, d)
            for workflow in (fixed, adaptive):  # each learns the nodes' client ids once
                times["warmup"].append(workflow.aggregate(grid, initial, server_round=1).seconds)
            for rep in range(reps):
                for name, workflow in (("fixed", fixed), ("adaptive", adaptive)):
                    outcome = workflow.aggregate(grid, initial, server_round=2 + rep)
                    if outcome.dropped:
                        raise RuntimeError(f"{name} round dropped nodes {outcome.dropped}")
                    times[name].append(outcome.seconds)
                wall, cpu = time.perf_counter(), time.process_time()
                simulate(
                    updates,
                    protocol="secagg+",
                    threat_model=POLICY.threat_model,
                    parameters=params,
                    encoder=encoder,
                    seed=rep,
                )
                times["local_wall"].append(time.perf_counter() - wall)
                times["local_cpu"].append(time.process_time() - cpu)
        except BaseException as exc:  # reported by the caller: the engine swallows it
            failures.append(exc)
            raise

    flower_logger = logging.getLogger("flwr")
    level = flower_logger.level
    flower_logger.setLevel(logging.INFO if os.environ.get("BENCH_VERBOSE") else logging.WARNING)
    try:
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=n,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                "init_args": {
                    "num_cpus": os.cpu_count() or 2,
                    "include_dashboard": False,
                    "log_to_driver": False,
                },
            },
        )
    finally:
        flower_logger.setLevel(level)
    if failures:
        raise failures[0]
    if len(times["adaptive"]) != reps:
        raise RuntimeError("the ServerApp did not finish its rounds")
    return times


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10, 50], help="cohort sizes")
    parser.add_argument("--d", type=int, default=100_000, help="model size (default 100k)")
    parser.add_argument("--reps", type=int, default=2, help="rounds of each kind (default 2)")
    parser.add_argument("--quick", action="store_true", help="n = 10, d = 10k, one repetition")
    args = parser.parse_args()
    if args.quick:
        args.n, args.d, args.reps = [10], 10_000, 1
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    rows = []
    for n in args.n:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="secagg-bench-flower-") as keys:
            times = measure(n, args.d, args.reps, Path(keys))
        med = {name: statistics.median(values) for name, values in times.items()}
        k = POLICY.parameters(n).degree
        rows.append(
            f"| {n} | harary | {k} | {args.d:,} | {_fmt(med['local_wall'])} "
            f"| {_fmt(med['local_cpu'])} | {_fmt(med['fixed'])} | {_fmt(med['adaptive'])} "
            f"| {med['fixed'] / med['adaptive']:.1f}x "
            f"| {med['adaptive'] / med['local_wall']:.1f}x |"
        )
        warmups = ", ".join(_fmt(t) for t in times["warmup"])
        print(
            f"n={n}: simulation of {args.reps} x 3 rounds in "
            f"{time.perf_counter() - started:.0f} s (warm-up rounds {warmups})",
            file=sys.stderr,
            flush=True,
        )
    print(
        "| n | graph | k | d | in process (wall) | in process (CPU) | Flower sim, fixed 0.2 s poll "
        "| Flower sim, adaptive | fixed / adaptive | adaptive / in process |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"\nmedians of {args.reps} round(s) of each kind, interleaved; SecAgg+ with the "
        f"malicious-server threat model, no dropouts; {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
