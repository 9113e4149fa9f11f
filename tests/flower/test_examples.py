"""The Flower example's simulation runner, run as the README gives it (fewer clients and rounds).

``examples/flower_app/run_simulation.py`` starts a simulation SuperLink and ``flwr run``s the
example app against it; the test checks the summary it prints, that Flower printed no
deprecation notice, and that the keys and logs it announced are where it said.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from protocols.flower.deployment import OFFLINE_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "examples" / "flower_app" / "run_simulation.py"


@pytest.mark.slow
def test_the_simulation_example_runs_and_prints_its_summary(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    env = {**os.environ, **OFFLINE_ENVIRONMENT}
    done = subprocess.run(
        [sys.executable, str(RUNNER), "--clients", "10", "--rounds", "2", "--logs", str(logs)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert f"keys and logs: {logs}" in output
    assert "deprecat" not in output.lower()
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert sorted(summary["accuracy"], key=int) == ["0", "1", "2"]
    assert all(0.0 <= a <= 1.0 for a in summary["accuracy"].values())
    assert summary["survivors"] == [10, 10]
    assert summary["epsilon"] > 0 and 0 < summary["delta"] < 1
    assert (logs / "superlink.log").is_file()
    # every round's line was forwarded while it ran
    for rnd in (1, 2):
        assert f"[round {rnd}] test accuracy" in output
