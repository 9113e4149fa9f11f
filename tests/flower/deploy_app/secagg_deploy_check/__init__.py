"""Deployment check app: known client updates, one client that stalls in training."""

from __future__ import annotations

from protocols.flower import SecAggPolicy
from secagg.recipe import DPMode
from threat_models.model import ServerClass, ThreatModel

#: SecAgg+ without DP, so that the aggregate can be compared exactly. Semi-malicious server
#: (it may lie about dropouts): the clients fix the graph from committed seeds and sign the
#: survivor set with per-round keys, so no PKI is needed; the signed variant (identity keys)
#: runs in tests/flower/test_simulation.py. Each stage costs seconds here (a fresh ClientApp
#: process per message on every node). With four clients, one dropout and no colluder are
#: what a threshold can serve (t = 2 of k = 3; three survivors make the consistency quorum).
POLICY = SecAggPolicy(
    threat_model=ThreatModel(
        server=ServerClass.SEMI_MALICIOUS, colluding_fraction=0.0, dropout_fraction=0.25
    ),
    dp=DPMode.NONE,
    clip_norm=None,
)
