"""The attacks on the protocol import with the core install; the attacks on data say why not.

A subprocess hides torch, scikit-learn, Opacus and matplotlib (as the core install lacks
them) and imports each module.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CORE = (
    "threat_models",
    "threat_models.attacks",
    "threat_models.attacks.aggregation",
    "threat_models.attacks.lying_server",
    "threat_models.attacks.protocol_level",
)
NEEDS_EVAL = (
    "threat_models.attacks.aggregate_membership",
    "threat_models.attacks.gradient_inversion",
    "threat_models.attacks.metrics",
    "threat_models.attacks.membership",
    "threat_models.attacks.model_level",
    "threat_models.evaluation",
)


def test_protocol_attacks_need_no_extra_and_data_attacks_name_theirs() -> None:
    script = textwrap.dedent(
        f"""
        import importlib, json, sys
        for hidden in ("torch", "sklearn", "opacus", "matplotlib"):
            sys.modules[hidden] = None
        from secagg.errors import MissingExtraError

        out = {{}}
        for name in {list(CORE + NEEDS_EVAL)!r}:
            try:
                importlib.import_module(name)
            except MissingExtraError as exc:
                out[name] = exc.extra
            else:
                out[name] = None
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    out = json.loads(done.stdout)
    assert out == {**dict.fromkeys(CORE), **dict.fromkeys(NEEDS_EVAL, "eval")}
