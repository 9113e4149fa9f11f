"""CPU time of the same simulated rounds in two source trees, interleaved in one run.

Used to check that a change of layout or of internals costs nothing: each repetition
runs every case in a fresh interpreter with ``PYTHONPATH`` set to one tree, then to the
other, and the table reports medians and their ratio (after / before).

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/compare_trees.py --before /tmp/before --after . --reps 11
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASES = r"""
import json, time
import numpy as np
from protocols import simulate

rng = np.random.default_rng(0)


def run(n, d, protocol):
    updates = {c: rng.normal(size=d) * 0.1 for c in range(1, n + 1)}
    start = time.process_time()
    simulate(updates, protocol=protocol, dropouts={"masked_input": [2]})
    return time.process_time() - start


run(8, 100, "secagg+")  # warm the imports and caches
print(json.dumps({
    "secagg+ n=30 d=100k": run(30, 100_000, "secagg+"),
    "secagg n=20 d=10k": run(20, 10_000, "secagg"),
    "secagg+ n=50 d=650": run(50, 650, "secagg+"),
}))
"""


def measure(tree: Path) -> dict[str, float]:
    """One run of every case with the modules of ``tree``."""
    env = {"PYTHONPATH": str(tree.resolve()), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run(
        [sys.executable, "-c", CASES], cwd="/", env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Print the markdown table of the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="source tree before")
    parser.add_argument("--after", type=Path, default=Path("."), help="source tree after")
    parser.add_argument("--reps", type=int, default=11, help="interleaved repetitions")
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for _ in range(args.reps):
        for side, tree in (("before", args.before), ("after", args.after)):
            for case, seconds in measure(tree).items():
                times[side].setdefault(case, []).append(seconds)
    print("| case | before (s CPU) | after (s CPU) | after / before |")
    print("| --- | --- | --- | --- |")
    for case, before in times["before"].items():
        b, a = statistics.median(before), statistics.median(times["after"][case])
        print(f"| {case} | {b:.3f} | {a:.3f} | {a / b:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
